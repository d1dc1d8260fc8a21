"""Per-leg measurement: angles, CPAK type and geometric quality flags from 8 landmarks.

Pure functions over pixel landmarks ``(x, y)`` and pixel spacing ``(row_mm, col_mm)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from cpak_cli.cpak import cpak_type, is_borderline
from cpak_cli.geometry import (
    LDFA_LANDMARKS,
    MHKA_LANDMARKS,
    MPTA_LANDMARKS,
    ankle_center,
    lateral_sign,
    ldfa_deg,
    leg_angles,
    mhka_deg,
    mpta_deg,
    to_mm,
)
from cpak_cli.landmarks import LANDMARKS

#: Flags a measured leg can carry (README documents each).
FLAG_BORDERLINE = "borderline"
FLAG_ANGLE_RANGE = "angle_out_of_range"
FLAG_GEOMETRY = "implausible_geometry"
FLAG_LOW_CONFIDENCE = "low_confidence"
FLAG_SPACING_UNCORRECTED = "spacing_uncorrected_magnification"
FLAG_SPACING_USER = "spacing_user_supplied"
FLAG_ORIENTATION_ASSUMED = "orientation_assumed"

PLAUSIBLE_ANGLE_DEG = (60.0, 120.0)


@dataclass
class LegMeasurement:
    """Result for one leg. Angles in degrees; None when the leg could not be measured (``error``).

    ``mhka`` is the mechanical HKA (hip-knee-ankle centres, valgus positive, 0 = straight; see
    :func:`cpak_cli.geometry.mhka_from_centres`); it is given whenever the hip, knee centre and
    both ankle points exist, even on a leg that is otherwise not measured.
    """

    side: str
    ldfa: float | None = None
    mpta: float | None = None
    ahka: float | None = None
    jlo: float | None = None
    mhka: float | None = None
    cpak: str | None = None
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def measured(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ldfa": self.ldfa,
            "mpta": self.mpta,
            "ahka": self.ahka,
            "jlo": self.jlo,
            "mhka": self.mhka,
            "cpak": self.cpak,
            "flags": list(self.flags),
            "notes": list(self.notes),
            "error": self.error,
        }


def geometry_problems(
    landmarks_px: Mapping[str, Sequence[float]],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> list[str]:
    """Reasons why a leg's landmarks are anatomically impossible (empty list when plausible).

    Checks, in mm space: femoral head above the knee and ankle below it (image y grows
    downwards); lateral landmarks on the lateral side of their medial partners (for the patient's
    right leg lateral is towards the image side that holds the patient's right); the femoral and
    tibial mechanical axes not folded back on each other.
    """
    p = {n: to_mm(np.asarray(landmarks_px[n], dtype=np.float64), spacing_mm) for n in LANDMARKS}
    problems: list[str] = []
    knee = p["knee_center"]
    ankle = ankle_center(p["ankle_lateral"], p["ankle_medial"])
    if not p["femoral_head"][1] < knee[1]:
        problems.append("femoral head not above the knee")
    if not ankle[1] > knee[1]:
        problems.append("ankle not below the knee")
    lateral_dir = lateral_sign(side, patient_right_on_image_left)  # +1 when lateral means larger image x
    for lat, med, what in (
        ("femoral_condyle_lateral", "femoral_condyle_medial", "femoral condyles"),
        ("tibial_plateau_lateral", "tibial_plateau_medial", "tibial plateau margins"),
        ("ankle_lateral", "ankle_medial", "ankle landmarks"),
    ):
        if (p[lat][0] - p[med][0]) * lateral_dir <= 0:
            problems.append(f"{what} in the wrong medial/lateral order")
    femur = p["femoral_head"] - knee
    tibia = ankle - knee
    cos = float(np.dot(femur, tibia) / (np.linalg.norm(femur) * np.linalg.norm(tibia) + 1e-12))
    if cos > math.cos(math.radians(150.0)):
        problems.append("femoral and tibial axes meet at less than 150 degrees")
    return problems


def measure_leg(
    side: str,
    landmarks_px: Mapping[str, Sequence[float] | None],
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool = True,
) -> LegMeasurement:
    """Angles, CPAK type and flags for one leg from pixel landmarks.

    A leg with missing landmarks is not measured (``error`` names them, no CPAK type), but the
    angle that its landmarks allow is still given (LDFA without an ankle, MPTA without a hip,
    mHKA without condyles or plateau). A measured leg always reports its numbers; doubts go into
    ``flags`` (with ``notes``). ``side`` is the patient's; ``patient_right_on_image_left`` sets
    which image side is lateral for the geometry checks and the sign of mHKA.
    """
    result = LegMeasurement(side=side)
    if all(landmarks_px.get(n) is not None for n in MHKA_LANDMARKS):
        mhka = mhka_deg(landmarks_px, spacing_mm, side, patient_right_on_image_left)  # type: ignore[arg-type]
        result.mhka = mhka if math.isfinite(mhka) else None
    missing = [n for n in LANDMARKS if landmarks_px.get(n) is None]
    if missing:
        # measure what is there: LDFA needs only the femur, MPTA only the tibia and ankle
        result.error = "missing landmark(s): " + ", ".join(missing)
        if all(landmarks_px.get(n) is not None for n in LDFA_LANDMARKS):
            result.ldfa = ldfa_deg(landmarks_px, spacing_mm)  # type: ignore[arg-type]
        if all(landmarks_px.get(n) is not None for n in MPTA_LANDMARKS):
            result.mpta = mpta_deg(landmarks_px, spacing_mm)  # type: ignore[arg-type]
        return result
    pts = {n: landmarks_px[n] for n in LANDMARKS}
    angles = leg_angles(pts, spacing_mm)  # type: ignore[arg-type]
    result.ldfa, result.mpta, result.ahka, result.jlo = angles.ldfa, angles.mpta, angles.ahka, angles.jlo
    if not all(math.isfinite(v) for v in (angles.ldfa, angles.mpta)):
        result.error = "degenerate landmarks (coincident points)"
        return result
    result.cpak = cpak_type(angles.ahka, angles.jlo)
    lo, hi = PLAUSIBLE_ANGLE_DEG
    if not (lo <= angles.ldfa <= hi and lo <= angles.mpta <= hi):
        result.flags.append(FLAG_ANGLE_RANGE)
        result.notes.append(f"LDFA/MPTA outside {lo:.0f}-{hi:.0f} degrees")
    problems = geometry_problems(pts, spacing_mm, side, patient_right_on_image_left)  # type: ignore[arg-type]
    if problems:
        result.flags.append(FLAG_GEOMETRY)
        result.notes.extend(problems)
    if is_borderline(angles.ahka, angles.jlo):
        result.flags.append(FLAG_BORDERLINE)
        result.notes.append("aHKA or JLO within 0.5 degrees of a CPAK boundary")
    return result
