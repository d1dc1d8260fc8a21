"""Alignment angles from landmarks, in millimetre space.

All functions are pure. Input points are pixel ``(x, y)`` (x = column, y = row) of the original
image; they are converted to mm with ``x_mm = x * col_mm`` and ``y_mm = y * row_mm`` where
``spacing_mm = (row_mm, col_mm)``. Anisotropic spacing therefore changes angles, as it must.
Angles are in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cpak_cli.landmarks import LANDMARKS

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


def angle_between(u: np.ndarray, v: np.ndarray) -> float:
    """Unsigned angle in degrees, in [0, 180], between two 2-D vectors (NaN if either is zero)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    nu, nv = np.hypot(*u), np.hypot(*v)
    if nu == 0 or nv == 0 or not np.isfinite(nu * nv):
        return float("nan")
    # atan2 of cross and dot is accurate at all angles (acos is not near 0 and 180).
    cross = u[0] * v[1] - u[1] * v[0]
    dot = float(np.dot(u, v))
    return float(np.degrees(np.arctan2(abs(cross), dot)))


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


def _mm_points(landmarks_px: Mapping[str, Point], names: tuple[str, ...], spacing_mm: tuple[float, float]) -> dict[str, np.ndarray]:
    missing = [n for n in names if landmarks_px.get(n) is None]
    if missing:
        raise KeyError(", ".join(missing))
    return {n: to_mm(np.asarray(landmarks_px[n], dtype=np.float64), spacing_mm) for n in names}


def ldfa_deg(landmarks_px: Mapping[str, Point], spacing_mm: tuple[float, float]) -> float:
    """LDFA: angle between (femoral_head - knee_center) and (condyle_lateral - condyle_medial), mm space."""
    mm = _mm_points(landmarks_px, LDFA_LANDMARKS, spacing_mm)
    return angle_between(
        mm["femoral_head"] - mm["knee_center"],
        mm["femoral_condyle_lateral"] - mm["femoral_condyle_medial"],
    )


def mpta_deg(landmarks_px: Mapping[str, Point], spacing_mm: tuple[float, float]) -> float:
    """MPTA: angle between (ankle_center - knee_center) and (plateau_medial - plateau_lateral), mm
    space; ankle_center is the mid-point of ankle_lateral and ankle_medial."""
    mm = _mm_points(landmarks_px, MPTA_LANDMARKS, spacing_mm)
    ankle_center = (mm["ankle_lateral"] + mm["ankle_medial"]) / 2.0
    return angle_between(
        ankle_center - mm["knee_center"],
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
