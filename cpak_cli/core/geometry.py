"""Alignment angles from landmarks, in millimetre space.

All functions are pure. Input points are pixel ``(x, y)`` (x = column, y = row) of the original
image; they are converted to mm with ``x_mm = x * col_mm`` and ``y_mm = y * row_mm`` where
``spacing_mm = (row_mm, col_mm)``. Anisotropic spacing therefore changes angles, as it must.
Angles are in degrees. ``side`` is always the patient's ("right"/"left").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cpak_cli.core.landmarks import LANDMARKS

Point = Sequence[float]

LEG_ANGLE_LANDMARKS: tuple[str, ...] = LANDMARKS  # all eight take part in the angles


def to_mm(points_xy: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Pixel ``(x, y)`` points (shape ``(..., 2)``) to mm ``(x_mm, y_mm)``; spacing is (row, col)."""
    pts = np.asarray(points_xy, dtype=np.float64)
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    return pts * np.array([col_mm, row_mm])


def to_px(points_mm: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`to_mm`: mm ``(x_mm, y_mm)`` to pixel ``(x, y)``."""
    pts = np.asarray(points_mm, dtype=np.float64)
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    return pts / np.array([col_mm, row_mm])


def signed_angle_between(u: np.ndarray, v: np.ndarray) -> float:
    """Signed angle in degrees, in (-180, 180], that turns 2-D vector ``u`` onto ``v``.

    Positive when the turn goes from +x towards +y (clockwise on screen, where image y grows
    downwards). NaN if either vector is zero or not finite.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    nu, nv = np.hypot(*u), np.hypot(*v)
    if nu == 0 or nv == 0 or not np.isfinite(nu * nv):
        return float("nan")
    # atan2 of cross and dot is accurate at all angles (acos is not near 0 and 180).
    cross = u[0] * v[1] - u[1] * v[0]
    dot = float(np.dot(u, v))
    return float(np.degrees(np.arctan2(cross, dot)))


def angle_between(u: np.ndarray, v: np.ndarray) -> float:
    """Unsigned angle in degrees, in [0, 180], between two 2-D vectors (NaN if either is zero)."""
    return abs(signed_angle_between(u, v))


def lateral_sign(side: str, patient_right_on_image_left: bool = True) -> float:
    """Image x direction of the lateral side of the patient's ``side`` leg on an upright film.

    +1.0 when lateral is towards larger image x, -1.0 when towards smaller x. With the patient's
    right on the image left (standard AP display) the right leg's lateral side is the image
    left (-1.0) and the left leg's the image right (+1.0); a mirrored film swaps both.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left' (the patient's), got {side!r}")
    return -1.0 if (side == "right") == bool(patient_right_on_image_left) else 1.0


def ankle_center(ankle_lateral: Point | np.ndarray, ankle_medial: Point | np.ndarray) -> np.ndarray:
    """Ankle centre: the mid-point of the two ankle landmarks (pixels or mm alike)."""
    return (np.asarray(ankle_lateral, dtype=np.float64) + np.asarray(ankle_medial, dtype=np.float64)) / 2.0


@dataclass(frozen=True)
class LegAngles:
    """Alignment of one leg, degrees. aHKA = MPTA - LDFA (negative = varus); JLO = MPTA + LDFA."""

    ldfa: float
    mpta: float

    @property
    def ahka(self) -> float:
        return self.mpta - self.ldfa

    @property
    def jlo(self) -> float:
        return self.mpta + self.ldfa


LDFA_LANDMARKS: tuple[str, ...] = ("femoral_head", "knee_center", "femoral_condyle_lateral", "femoral_condyle_medial")
MPTA_LANDMARKS: tuple[str, ...] = (
    "knee_center", "tibial_plateau_lateral", "tibial_plateau_medial", "ankle_lateral", "ankle_medial",
)
MHKA_LANDMARKS: tuple[str, ...] = ("femoral_head", "knee_center", "ankle_lateral", "ankle_medial")


def mm_points(landmarks_px: Mapping[str, Point | None], names: tuple[str, ...],
              spacing_mm: tuple[float, float]) -> dict[str, np.ndarray]:
    """The named pixel landmarks in mm (:func:`to_mm`); raises KeyError naming the missing ones."""
    missing = [n for n in names if landmarks_px.get(n) is None]
    if missing:
        raise KeyError(", ".join(missing))
    return {n: to_mm(np.asarray(landmarks_px[n], dtype=np.float64), spacing_mm) for n in names}


def ldfa_deg(landmarks_px: Mapping[str, Point], spacing_mm: tuple[float, float]) -> float:
    """LDFA: angle between (femoral_head - knee_center) and (condyle_lateral - condyle_medial), mm space."""
    mm = mm_points(landmarks_px, LDFA_LANDMARKS, spacing_mm)
    return angle_between(
        mm["femoral_head"] - mm["knee_center"],
        mm["femoral_condyle_lateral"] - mm["femoral_condyle_medial"],
    )


def mpta_deg(landmarks_px: Mapping[str, Point], spacing_mm: tuple[float, float]) -> float:
    """MPTA: angle between (ankle_center - knee_center) and (plateau_medial - plateau_lateral), mm
    space; ankle_center is the mid-point of ankle_lateral and ankle_medial."""
    mm = mm_points(landmarks_px, MPTA_LANDMARKS, spacing_mm)
    return angle_between(
        ankle_center(mm["ankle_lateral"], mm["ankle_medial"]) - mm["knee_center"],
        mm["tibial_plateau_medial"] - mm["tibial_plateau_lateral"],
    )


def leg_angles(landmarks_px: Mapping[str, Point], spacing_mm: tuple[float, float]) -> LegAngles:
    """LDFA and MPTA of one leg from its 8 landmarks in pixels (see :func:`ldfa_deg`, :func:`mpta_deg`).

    Both are computed in mm space and lie in [0, 180]. Works the same for a right or a left leg
    and for any image side, since medial/lateral are named anatomically. Raises KeyError naming
    the missing landmarks.
    """
    missing = [n for n in LEG_ANGLE_LANDMARKS if landmarks_px.get(n) is None]
    if missing:
        raise KeyError(", ".join(missing))
    return LegAngles(ldfa=ldfa_deg(landmarks_px, spacing_mm), mpta=mpta_deg(landmarks_px, spacing_mm))


def mhka_from_centres(
    hip_xy: Point | np.ndarray,
    knee_xy: Point | np.ndarray,
    ankle_xy: Point | np.ndarray,
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> float:
    """Mechanical HKA (mHKA) in degrees from the hip, knee and ankle centres in pixels ``(x, y)``.

    Computed in mm space (``spacing_mm = (row_mm, col_mm)``, see :func:`to_mm`): the angle by
    which the tibial mechanical axis (knee -> ankle) deviates from the line of the femoral
    mechanical axis (hip -> knee), i.e. 180 minus the angle at the knee between (hip - knee) and
    (ankle - knee). 0 = straight leg; **positive = valgus** (knee centre medial of the hip-ankle
    line), negative = varus (knee centre lateral of it). Medial/lateral follow the patient's
    ``side`` and ``patient_right_on_image_left`` (:func:`lateral_sign`); the sign is unchanged
    by an in-plane rotation of the film. NaN when two centres coincide or a point is not finite.
    """
    hip, knee, ankle = (to_mm(np.asarray(p, dtype=np.float64), spacing_mm) for p in (hip_xy, knee_xy, ankle_xy))
    # Turning the femoral axis onto the tibial axis towards lateral means the ankle lies lateral
    # of the femoral line, the knee medial of the hip-ankle line: valgus. On an upright film
    # (axis pointing +y) a turn towards +x is negative in signed_angle_between.
    turn = signed_angle_between(knee - hip, ankle - knee)
    return float(-lateral_sign(side, patient_right_on_image_left) * turn)


def mhka_deg(
    landmarks_px: Mapping[str, Point],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> float:
    """mHKA of one leg from its pixel landmarks (degrees, valgus positive, 0 = straight).

    Hip centre = femoral_head, knee centre = knee_center, ankle centre = mid-point of
    ankle_lateral and ankle_medial; see :func:`mhka_from_centres` for frame and sign. Needs only
    those four landmarks (no condyles or plateau). Raises KeyError naming missing landmarks.
    """
    missing = [n for n in MHKA_LANDMARKS if landmarks_px.get(n) is None]
    if missing:
        raise KeyError(", ".join(missing))
    return mhka_from_centres(
        landmarks_px["femoral_head"],
        landmarks_px["knee_center"],
        ankle_center(landmarks_px["ankle_lateral"], landmarks_px["ankle_medial"]),
        spacing_mm,
        side,
        patient_right_on_image_left,
    )
