"""The alignment panel of one leg beyond the CPAK angles: JLCA, MAD, mechanical lengths and the
normal ranges of the panel's values.

Pure functions in millimetre space, like :mod:`cpak_cli.core.geometry`: input points are pixel
``(x, y)`` (x = column, y = row, image y grows downwards), converted with ``spacing_mm = (row_mm,
col_mm)`` (:func:`cpak_cli.core.geometry.to_mm`), so anisotropic spacing is honoured. Angles are
in degrees, lengths in mm. ``side`` is the patient's; medial/lateral follow it and
``patient_right_on_image_left`` (:func:`cpak_cli.core.geometry.lateral_sign`). Signs are
unchanged by an in-plane rotation of the film. The mechanical HKA (mHKA) lives in
:mod:`cpak_cli.core.geometry` and is not repeated here.

Definitions (Paley, *Principles of Deformity Correction*, Springer 2002, chapter 1; Paley &
Tetsworth, Clin Orthop Relat Res 1992;280:48-64):

* **JLCA** (joint line convergence angle): the angle between the femoral condylar line
  (femoral_condyle_medial -> femoral_condyle_lateral) and the tibial plateau line
  (tibial_plateau_medial -> tibial_plateau_lateral). **Positive when the lines converge
  medially** (they meet on the medial side: the joint is wider laterally, the configuration that
  adds varus), negative when they converge laterally. With this sign and the knee centre shared by
  both mechanical axes, ``mHKA = MPTA - LDFA - JLCA`` exactly (mHKA valgus positive, aHKA =
  MPTA - LDFA): JLCA is what separates the mechanical from the arithmetic HKA. Normal 0-2 degrees.
* **MAD** (mechanical axis deviation): the perpendicular distance from the knee centre to the
  line from the femoral head centre to the ankle centre, in mm. **Positive = medial**: the
  mechanical axis passes medial to the knee centre (varus); negative = lateral (valgus). Its
  sign is always opposite to that of mHKA.
* **Mechanical lengths**: femur = femoral head centre -> knee centre, tibia = knee centre ->
  ankle centre (mid-point of the two ankle landmarks); the leg is their sum (a bent knee does not
  shorten it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cpak_cli.core.geometry import MHKA_LANDMARKS, ankle_center, lateral_sign, mm_points, signed_angle_between, to_mm

PointOrNone = Sequence[float] | None

JLCA_LANDMARKS: tuple[str, ...] = (
    "femoral_condyle_lateral", "femoral_condyle_medial", "tibial_plateau_lateral", "tibial_plateau_medial",
)
MAD_LANDMARKS: tuple[str, ...] = MHKA_LANDMARKS
FEMUR_LANDMARKS: tuple[str, ...] = ("femoral_head", "knee_center")
TIBIA_LANDMARKS: tuple[str, ...] = ("knee_center", "ankle_lateral", "ankle_medial")

#: Normal ranges (inclusive) of the panel's values: degrees, except ``mad_mm`` (mm, medial
#: positive). mLDFA and MPTA 85-90 and JLCA 0-2 (converging medially): Paley 2002.
#: MAD 0-15 mm medial: Paley & Tetsworth 1992 (about 8 +- 7 mm medial). mHKA -3..+3 (valgus
#: positive): the neutral band of +-3 degrees around a straight mechanical axis used for knee
#: alignment since Jeffery, Morris & Denham (J Bone Joint Surg Br 1991;73:709-714); healthy
#: adults average about 1.3 +- 2 degrees of varus (Moreland, Bassett & Hanker, J Bone Joint Surg
#: Am 1987;69:745-749), so some normal knees lie just outside it.
NORMAL_RANGES: dict[str, tuple[float, float]] = {
    "ldfa": (85.0, 90.0),
    "mpta": (85.0, 90.0),
    "mhka": (-3.0, 3.0),
    "jlca": (0.0, 2.0),
    "mad_mm": (0.0, 15.0),
}


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def jlca_deg(
    landmarks_px: Mapping[str, PointOrNone],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> float:
    """JLCA in degrees from the two condyles and the two plateau margins (pixels), in mm space.

    The signed angle from the femoral condylar line (medial -> lateral) to the tibial plateau line
    (medial -> lateral): positive when the lines converge medially (the lateral side of the joint
    is wider), negative when they converge laterally; see the module docstring. NaN when a pair of
    points coincides. Raises KeyError naming missing landmarks."""
    mm = mm_points(landmarks_px, JLCA_LANDMARKS, spacing_mm)
    femoral = mm["femoral_condyle_lateral"] - mm["femoral_condyle_medial"]
    tibial = mm["tibial_plateau_lateral"] - mm["tibial_plateau_medial"]
    # On an upright film a turn towards +y (down) of a line pointing to +x opens the joint on
    # the +x side; lateral_sign turns "the +x side" into "the lateral side".
    return float(lateral_sign(side, patient_right_on_image_left) * signed_angle_between(femoral, tibial))


def _mad_in_mm(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, side: str, patient_right_on_image_left: bool) -> float:
    axis = ankle - hip
    length = float(np.hypot(*axis))
    if not (length > 0 and math.isfinite(length)):
        return float("nan")
    rel = knee - hip
    # cross(axis, rel) / |axis| is the knee's distance from the line, positive towards -x when
    # the axis points down the film (+y); the knee lying lateral of the line is a medial MAD.
    cross = float(axis[0] * rel[1] - axis[1] * rel[0])
    return float(-lateral_sign(side, patient_right_on_image_left) * cross / length)


def mad_from_centres(
    hip_xy: Sequence[float] | np.ndarray,
    knee_xy: Sequence[float] | np.ndarray,
    ankle_xy: Sequence[float] | np.ndarray,
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> float:
    """MAD in mm from the hip, knee and ankle centres in pixels ``(x, y)``.

    The perpendicular distance, in mm space, from the knee centre to the line hip centre -> ankle
    centre; positive when that line passes medial to the knee centre (varus), negative when it
    passes lateral (valgus). NaN when the hip and ankle centres coincide or a point is not finite."""
    hip, knee, ankle = (to_mm(np.asarray(p, dtype=np.float64), spacing_mm) for p in (hip_xy, knee_xy, ankle_xy))
    return _mad_in_mm(hip, knee, ankle, side, patient_right_on_image_left)


def mad_mm(
    landmarks_px: Mapping[str, PointOrNone],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> float:
    """MAD (mm, medial positive) of one leg from its pixel landmarks: hip centre = femoral_head,
    knee centre = knee_center, ankle centre = mid-point of the ankle landmarks (see
    :func:`mad_from_centres`). Raises KeyError naming missing landmarks."""
    mm = mm_points(landmarks_px, MAD_LANDMARKS, spacing_mm)
    ankle = ankle_center(mm["ankle_lateral"], mm["ankle_medial"])
    return _mad_in_mm(mm["femoral_head"], mm["knee_center"], ankle, side, patient_right_on_image_left)


def femur_length_mm(landmarks_px: Mapping[str, PointOrNone], spacing_mm: tuple[float, float]) -> float:
    """Femoral mechanical length in mm: femoral_head -> knee_center. Raises KeyError when missing."""
    mm = mm_points(landmarks_px, FEMUR_LANDMARKS, spacing_mm)
    return float(np.hypot(*(mm["femoral_head"] - mm["knee_center"])))


def tibia_length_mm(landmarks_px: Mapping[str, PointOrNone], spacing_mm: tuple[float, float]) -> float:
    """Tibial mechanical length in mm: knee_center -> ankle centre (mid-point of the two ankle
    landmarks). Raises KeyError when missing."""
    mm = mm_points(landmarks_px, TIBIA_LANDMARKS, spacing_mm)
    return float(np.hypot(*(ankle_center(mm["ankle_lateral"], mm["ankle_medial"]) - mm["knee_center"])))


def mechanical_lengths_mm(
    landmarks_px: Mapping[str, PointOrNone], spacing_mm: tuple[float, float]
) -> tuple[float | None, float | None]:
    """``(femur_mm, tibia_mm)``: each mechanical length the landmarks allow (None when a point it
    needs is missing or the length is not finite); see :func:`femur_length_mm`, :func:`tibia_length_mm`."""
    have = [all(landmarks_px.get(n) is not None for n in names) for names in (FEMUR_LANDMARKS, TIBIA_LANDMARKS)]
    femur = _finite_or_none(femur_length_mm(landmarks_px, spacing_mm)) if have[0] else None
    tibia = _finite_or_none(tibia_length_mm(landmarks_px, spacing_mm)) if have[1] else None
    return femur, tibia


@dataclass(frozen=True)
class Panel:
    """JLCA (degrees), MAD (mm, medial positive) and the mechanical lengths (mm) of one leg; each
    None when a landmark it needs is missing or the points are degenerate (not finite)."""

    jlca: float | None = None
    mad_mm: float | None = None
    femur_mm: float | None = None
    tibia_mm: float | None = None


def leg_panel(
    landmarks_px: Mapping[str, PointOrNone],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> Panel:
    """Every panel value the leg's landmarks allow (missing or None points leave only the values
    that need them empty): JLCA needs the condyles and plateau margins, MAD the hip, knee centre
    and ankle points, the femur the hip and knee centre, the tibia the knee centre and ankle."""

    def have(names: tuple[str, ...]) -> bool:
        return all(landmarks_px.get(n) is not None for n in names)

    orient = patient_right_on_image_left
    femur, tibia = mechanical_lengths_mm(landmarks_px, spacing_mm)
    return Panel(
        jlca=_finite_or_none(jlca_deg(landmarks_px, spacing_mm, side, orient)) if have(JLCA_LANDMARKS) else None,
        mad_mm=_finite_or_none(mad_mm(landmarks_px, spacing_mm, side, orient)) if have(MAD_LANDMARKS) else None,
        femur_mm=femur,
        tibia_mm=tibia,
    )


@dataclass(frozen=True)
class NormalCheck:
    """One value against its normal range (inclusive): ``outside`` is None when there is no value."""

    value: float | None
    low: float
    high: float

    @property
    def outside(self) -> bool | None:
        if self.value is None or not math.isfinite(self.value):
            return None
        return not self.low <= self.value <= self.high

    def to_json(self) -> dict[str, object]:
        return {"range": [self.low, self.high], "outside": self.outside}


def normal_checks(values: Mapping[str, float | None]) -> dict[str, NormalCheck]:
    """Each value of :data:`NORMAL_RANGES` (keys ``ldfa, mpta, mhka, jlca, mad_mm``; absent =
    None) against its normal range, at full precision, in the order of :data:`NORMAL_RANGES`."""
    return {name: NormalCheck(values.get(name), lo, hi) for name, (lo, hi) in NORMAL_RANGES.items()}


def outside_normal(values: Mapping[str, float | None]) -> list[str]:
    """Names of the given values that lie outside their normal range (:func:`normal_checks`)."""
    return [name for name, check in normal_checks(values).items() if check.outside]


def length_difference_mm(right_leg_mm: float | None, left_leg_mm: float | None) -> float | None:
    """Leg-length difference in mm: the patient's right leg minus the left (positive = right
    longer); None unless both lengths are given and finite."""
    if right_leg_mm is None or left_leg_mm is None:
        return None
    return _finite_or_none(right_leg_mm - left_leg_mm)
