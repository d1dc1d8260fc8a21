"""Per-leg measurement: angles, CPAK type and geometric quality flags from 8 landmarks.

Pure functions over pixel landmarks ``(x, y)`` and pixel spacing ``(row_mm, col_mm)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from cpak_cli.core.cpak import BORDERLINE_DEG, cpak_type, display_conflicts, is_borderline
from cpak_cli.core.geometry import (
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
from cpak_cli.core.landmarks import LANDMARKS
from cpak_cli.core.panel import (
    FEMUR_LANDMARKS,
    JLCA_LANDMARKS,
    TIBIA_LANDMARKS,
    NormalCheck,
    femur_length_mm,
    leg_panel,
    length_difference_mm,
    normal_checks,
    outside_normal,
    tibia_length_mm,
)

#: Flags a measured leg can carry (README documents each).
FLAG_BORDERLINE = "borderline"
FLAG_ANGLE_RANGE = "angle_out_of_range"
FLAG_GEOMETRY = "implausible_geometry"
FLAG_LOW_CONFIDENCE = "low_confidence"
FLAG_SPACING_UNCORRECTED = "spacing_uncorrected_magnification"
FLAG_SPACING_USER = "spacing_user_supplied"
FLAG_ORIENTATION_ASSUMED = "orientation_assumed"
FLAG_SIZE = "size_implausible"
FLAG_LATERALITY = "laterality_conflict"
FLAG_JOINT_DISAGREEMENT = "joint_disagreement"

#: Anatomical plausibility range of LDFA and MPTA (degrees, inclusive). Normal values are 85-90
#: for both (Paley, Principles of Deformity Correction, 2002: mLDFA 87.5 +- 2.5, MPTA 87.5 +- 2.5)
#: and the CPAK cohorts of healthy and arthritic knees (MacDessi et al., Bone Joint J 2021) keep
#: aHKA within about +-10, i.e. LDFA and MPTA rarely leave 80-100. 75-105 (a right angle +- 15,
#: some 5 SD from Paley's mean) still types severe deformities; outside it the leg is flagged
#: ``angle_out_of_range`` and gets no CPAK type (a wrong point or two joints of different legs is
#: far likelier than such a knee). The range is symmetric about 90, so it cannot see a pure
#: medial/lateral swap (x -> 180 - x); the medial/lateral order checks of
#: :func:`geometry_problems` do.
PLAUSIBLE_ANGLE_DEG = (75.0, 105.0)
#: The femoral and tibial mechanical axes of a leg meet at the knee at this angle or more
#: (180 = straight); less means folded axes (a point of another leg or a wrong joint).
AXIS_MIN_ANGLE_DEG = 150.0

#: Height of the tibial plateau margins below the femoral condyles' lowest points (mm, mean of
#: the two lines' mid-points, + = plateau lower; inclusive). It is the radiographic joint space
#: plus the margins' drop below the articular surface: about 3-10 mm (0-3 mm in a bone-on-bone
#: compartment; 1.7-12.3 mm on 1,800 phantom legs, plain and variety). A distal femoral or proximal
#: tibial growth plate taken for the joint line sits 10-25 mm from it in children and puts the
#: lines 15 mm or more apart; condyles more than 3 mm BELOW the plateau are no knee either.
KNEE_LINE_GAP_MM = (-3.0, 15.0)
#: The knee centre (intercondylar notch, between the tibial spines) lies horizontally near the
#: middle of the two condyle points (on 1,800 phantom legs within 2 mm, p90 1.3 mm). Further from
#: it than this share of the condyles' spacing, or :data:`KNEE_CENTRE_OFFSET_MIN_MM` when that is
#: more, it sits on a condyle or off the knee (a network drawn to one compartment).
KNEE_CENTRE_OFFSET_FRACTION = 0.35
KNEE_CENTRE_OFFSET_MIN_MM = 6.0

#: Size plausibility (mm, inclusive), mechanical lengths: femur = femoral head centre -> knee
#: centre, tibia = knee centre -> ankle centre. Anderson, Green & Messner (J Bone Joint Surg Am
#: 1963;45:1-14, orthoroentgenograms) give femur lengths of about 20-22 cm and tibia lengths of
#: about 16-17 cm at 3 years (mean - 2 SD a little below), and the mechanical length is some 1-2
#: cm shorter than the whole bone; tall adults reach femora of about 52-55 cm and tibiae of about
#: 44-46 cm, and a spacing not corrected for magnification adds up to 15 % (flagged on its own).
#: Hence femur 180-620 mm and tibia 140-540 mm: children from about 3 years to tall adults on an
#: uncorrected film pass; a film scaled by a factor of two or more does not.
FEMUR_MM = (180.0, 620.0)
TIBIA_MM = (140.0, 540.0)
#: Femur/tibia length ratio: about 1.2 in adults and children alike (tibia about 80-85 % of the
#: femur; Anderson et al. 1963); 0.95-1.6 leaves room for growth disorders and lets a femur or
#: tibia of another joint or leg (or a misplaced point) through only when it is close to right.
FEMUR_TIBIA_RATIO = (0.95, 1.6)
#: Width of the tibial plateau (lateral -> medial margin) over the femur length: about 0.15-0.20
#: in adults (plateau 70-85 mm, femur 400-480 mm) and a little more in young children, whose
#: epiphyses are relatively wide. Lengths alone cannot see a film whose rows were resampled while
#: the spacing stayed (rows x 0.5 leaves an adult femur of 234 mm, a 4-year-old's), but the
#: horizontal plateau keeps its width: such a film gives 0.35 or more. Outside 0.08-0.30: flagged.
PLATEAU_TO_FEMUR = (0.08, 0.30)


@dataclass
class LegMeasurement:
    """Result for one leg. Angles in degrees; None when the leg could not be measured (``error``).

    ``mhka`` is the mechanical HKA (hip-knee-ankle centres, valgus positive, 0 = straight; see
    :func:`cpak_cli.core.geometry.mhka_from_centres`); it is given whenever the hip, knee centre and
    both ankle points exist, even on a leg that is otherwise not measured. The alignment panel
    (:mod:`cpak_cli.core.panel`): ``jlca`` (degrees, positive = joint lines converging medially),
    ``mad_mm`` (mechanical axis deviation, mm, positive = medial), ``femur_mm`` and ``tibia_mm``
    (mechanical lengths, mm); each is given whenever its landmarks exist, like ``mhka``.
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
    jlca: float | None = None
    mad_mm: float | None = None
    femur_mm: float | None = None
    tibia_mm: float | None = None

    @property
    def measured(self) -> bool:
        return self.error is None

    @property
    def leg_mm(self) -> float | None:
        """Mechanical leg length in mm: femur + tibia (None unless both are given)."""
        if self.femur_mm is None or self.tibia_mm is None:
            return None
        return self.femur_mm + self.tibia_mm

    @property
    def normal(self) -> dict[str, NormalCheck]:
        """LDFA, MPTA, mHKA, JLCA and MAD against their normal ranges
        (:data:`cpak_cli.core.panel.NORMAL_RANGES`). Information about the knee, not a doubt
        about the measurement: it is not a flag and never removes the CPAK type."""
        return normal_checks({"ldfa": self.ldfa, "mpta": self.mpta, "mhka": self.mhka, "jlca": self.jlca,
                              "mad_mm": self.mad_mm})

    @property
    def outside_normal(self) -> list[str]:
        """Names of the values outside their normal range (empty when none is; see :attr:`normal`)."""
        return outside_normal({"ldfa": self.ldfa, "mpta": self.mpta, "mhka": self.mhka, "jlca": self.jlca,
                               "mad_mm": self.mad_mm})

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
            "jlca": self.jlca,
            "mad_mm": self.mad_mm,
            "femur_mm": self.femur_mm,
            "tibia_mm": self.tibia_mm,
            "leg_mm": self.leg_mm,
            "outside_normal": self.outside_normal,
            "normal": {name: check.to_json() for name, check in self.normal.items()},
        }


def leg_length_difference_mm(legs: Mapping[str, LegMeasurement]) -> float | None:
    """Film-level leg-length difference in mm: the patient's right mechanical leg length minus the
    left (:attr:`LegMeasurement.leg_mm`; positive = right longer); None unless both are given."""
    right, left = legs.get("right"), legs.get("left")
    return length_difference_mm(right.leg_mm if right else None, left.leg_mm if left else None)


def geometry_problems(
    landmarks_px: Mapping[str, Sequence[float] | None],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool = True,
) -> list[str]:
    """Reasons why a leg's landmarks are anatomically impossible (empty list when plausible).

    Checks, in mm space: femoral head above the knee and ankle below it (image y grows
    downwards); lateral landmarks on the lateral side of their medial partners (for the patient's
    right leg lateral is towards the image side that holds the patient's right); the femoral and
    tibial mechanical axes not folded back on each other (they must meet at 150 degrees or more);
    the tibial plateau margins :data:`KNEE_LINE_GAP_MM` below the femoral condyles (a growth plate
    taken for the joint line fails it); the knee centre horizontally near the middle of the
    condyles (:data:`KNEE_CENTRE_OFFSET_FRACTION`).
    Landmarks that are missing (None or absent) skip only the checks that need them, so a partly
    measured leg gets every check its points allow.
    """
    p = {n: to_mm(np.asarray(landmarks_px[n], dtype=np.float64), spacing_mm)
         for n in LANDMARKS if landmarks_px.get(n) is not None}
    problems: list[str] = []
    knee = p.get("knee_center")
    ankle = (ankle_center(p["ankle_lateral"], p["ankle_medial"])
             if "ankle_lateral" in p and "ankle_medial" in p else None)
    hip = p.get("femoral_head")
    if hip is not None and knee is not None and not hip[1] < knee[1]:
        problems.append("femoral head not above the knee")
    if ankle is not None and knee is not None and not ankle[1] > knee[1]:
        problems.append("ankle not below the knee")
    lateral_dir = lateral_sign(side, patient_right_on_image_left)  # +1 when lateral means larger image x
    for lat, med, what in (
        ("femoral_condyle_lateral", "femoral_condyle_medial", "femoral condyles"),
        ("tibial_plateau_lateral", "tibial_plateau_medial", "tibial plateau margins"),
        ("ankle_lateral", "ankle_medial", "ankle landmarks"),
    ):
        if lat in p and med in p and (p[lat][0] - p[med][0]) * lateral_dir <= 0:
            problems.append(f"{what} in the wrong medial/lateral order")
    cl, cm, tl, tm = JLCA_LANDMARKS  # condyles lateral, medial; plateau lateral, medial
    if all(n in p for n in JLCA_LANDMARKS):
        gap = float((p[tl][1] + p[tm][1]) - (p[cl][1] + p[cm][1])) / 2.0
        lo, hi = KNEE_LINE_GAP_MM
        if gap > hi:
            problems.append(f"tibial plateau {gap:.0f} mm below the femoral condyles (more than {hi:.0f} mm: "
                            "a growth plate taken for the joint line?)")
        elif gap < lo:
            problems.append(f"femoral condyles {-gap:.0f} mm below the tibial plateau")
    if knee is not None and cl in p and cm in p:
        mid_x = float(p[cl][0] + p[cm][0]) / 2.0
        limit = max(KNEE_CENTRE_OFFSET_FRACTION * abs(float(p[cl][0] - p[cm][0])), KNEE_CENTRE_OFFSET_MIN_MM)
        off = abs(float(knee[0]) - mid_x)
        if off > limit:
            problems.append(f"knee centre {off:.0f} mm from the middle of the femoral condyles (more than {limit:.0f} mm)")
    if hip is not None and knee is not None and ankle is not None:
        femur = hip - knee
        tibia = ankle - knee
        cos = float(np.dot(femur, tibia) / (np.linalg.norm(femur) * np.linalg.norm(tibia) + 1e-12))
        if cos > math.cos(math.radians(AXIS_MIN_ANGLE_DEG)):
            problems.append(f"femoral and tibial axes meet at less than {AXIS_MIN_ANGLE_DEG:.0f} degrees")
    return problems


def size_problems(
    landmarks_px: Mapping[str, Sequence[float] | None],
    spacing_mm: tuple[float, float],
) -> list[str]:
    """Why a leg's size in mm is not a human leg's (empty when plausible); each note gives the
    lengths. Femur (head centre -> knee centre) against :data:`FEMUR_MM`, tibia (knee centre ->
    ankle centre) against :data:`TIBIA_MM`, their ratio against :data:`FEMUR_TIBIA_RATIO` and the
    tibial plateau width over the femur length against :data:`PLATEAU_TO_FEMUR` (the last catches
    rows or columns resampled while the spacing stayed). Missing points skip only the checks
    that need them."""
    p = {n: to_mm(np.asarray(landmarks_px[n], dtype=np.float64), spacing_mm)
         for n in LANDMARKS if landmarks_px.get(n) is not None}
    def have(names: tuple[str, ...]) -> bool:
        return all(landmarks_px.get(n) is not None for n in names)

    # raw lengths: a length that is not finite must fail the check, not skip it
    femur = femur_length_mm(landmarks_px, spacing_mm) if have(FEMUR_LANDMARKS) else None
    tibia = tibia_length_mm(landmarks_px, spacing_mm) if have(TIBIA_LANDMARKS) else None
    out: list[str] = []
    for name, v, (lo, hi) in (("femur", femur, FEMUR_MM), ("tibia", tibia, TIBIA_MM)):
        if v is not None and not lo <= v <= hi:
            out.append(f"{name} length {v:.0f} mm outside {lo:.0f}-{hi:.0f} mm (not a leg from about 3 years "
                       "to a tall adult: spacing or image size wrong?)")
    if femur is not None and tibia is not None and tibia > 0:
        lo, hi = FEMUR_TIBIA_RATIO
        if not lo <= femur / tibia <= hi:
            out.append(f"femur {femur:.0f} mm / tibia {tibia:.0f} mm = {femur / tibia:.2f} outside {lo:g}-{hi:g}")
    if femur and "tibial_plateau_lateral" in p and "tibial_plateau_medial" in p:
        width = float(np.linalg.norm(p["tibial_plateau_lateral"] - p["tibial_plateau_medial"]))
        lo, hi = PLATEAU_TO_FEMUR
        if not lo <= width / femur <= hi:
            out.append(f"tibial plateau {width:.0f} mm wide for a {femur:.0f} mm femur (ratio {width / femur:.2f} "
                       f"outside {lo:g}-{hi:g}: rows or columns resampled while the spacing stayed?)")
    return out


def _range_problem(ldfa: float | None, mpta: float | None) -> str | None:
    """Note when a given LDFA or MPTA lies outside :data:`PLAUSIBLE_ANGLE_DEG` (None if inside)."""
    lo, hi = PLAUSIBLE_ANGLE_DEG
    bad = [f"{name} {v:.1f}" for name, v in (("LDFA", ldfa), ("MPTA", mpta))
           if v is not None and math.isfinite(v) and not lo <= v <= hi]
    return f"{' and '.join(bad)} outside the anatomical range {lo:.0f}-{hi:.0f} degrees" if bad else None


def measure_leg(
    side: str,
    landmarks_px: Mapping[str, Sequence[float] | None],
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool = True,
) -> LegMeasurement:
    """Angles, CPAK type and flags for one leg from pixel landmarks.

    A leg with missing landmarks is not measured (``error`` names them, no CPAK type), but the
    angle that its landmarks allow is still given (LDFA without an ankle, MPTA without a hip,
    mHKA without condyles or plateau), with the range and geometry checks its points allow. A
    measured leg always reports its numbers; doubts go into ``flags`` (with ``notes``). A leg
    with LDFA or MPTA outside :data:`PLAUSIBLE_ANGLE_DEG` (``angle_out_of_range``) or with
    implausible geometry (``implausible_geometry``: medial/lateral order, joints above/below each
    other, folded axes) or an implausible size in mm (``size_implausible``, :func:`size_problems`)
    gets no CPAK type. The type is decided on full precision; ``borderline``
    marks a type within :data:`cpak_cli.core.cpak.BORDERLINE_DEG` of a boundary, with a note when the
    0.1-degree display would read as the other class. ``side`` is the patient's;
    ``patient_right_on_image_left`` sets which image side is lateral for the geometry checks and
    the signs of mHKA, JLCA and MAD. The alignment panel (JLCA, MAD, mechanical lengths;
    :func:`cpak_cli.core.panel.leg_panel`) follows the rule of mHKA: every value whose landmarks
    exist is given (None only when they are missing or degenerate), whatever the flags say; the
    flags tell how far to trust it. Normal ranges (:attr:`LegMeasurement.normal`) are no flag.
    """
    result = LegMeasurement(side=side)
    if all(landmarks_px.get(n) is not None for n in MHKA_LANDMARKS):
        mhka = mhka_deg(landmarks_px, spacing_mm, side, patient_right_on_image_left)  # type: ignore[arg-type]
        result.mhka = mhka if math.isfinite(mhka) else None
    panel = leg_panel(landmarks_px, spacing_mm, side, patient_right_on_image_left)
    result.jlca, result.mad_mm, result.femur_mm, result.tibia_mm = panel.jlca, panel.mad_mm, panel.femur_mm, panel.tibia_mm
    missing = [n for n in LANDMARKS if landmarks_px.get(n) is None]
    if missing:
        # measure what is there: LDFA needs only the femur, MPTA only the tibia and ankle
        result.error = "missing landmark(s): " + ", ".join(missing)
        if all(landmarks_px.get(n) is not None for n in LDFA_LANDMARKS):
            ldfa = ldfa_deg(landmarks_px, spacing_mm)  # type: ignore[arg-type]
            result.ldfa = ldfa if math.isfinite(ldfa) else None
        if all(landmarks_px.get(n) is not None for n in MPTA_LANDMARKS):
            mpta = mpta_deg(landmarks_px, spacing_mm)  # type: ignore[arg-type]
            result.mpta = mpta if math.isfinite(mpta) else None
        _add_checks(result, landmarks_px, spacing_mm, side, patient_right_on_image_left)
        return result
    pts = {n: landmarks_px[n] for n in LANDMARKS}
    angles = leg_angles(pts, spacing_mm)  # type: ignore[arg-type]
    result.ldfa, result.mpta, result.ahka, result.jlo = angles.ldfa, angles.mpta, angles.ahka, angles.jlo
    if not all(math.isfinite(v) for v in (angles.ldfa, angles.mpta)):
        result.error = "degenerate landmarks (coincident points)"
        result.ldfa = angles.ldfa if math.isfinite(angles.ldfa) else None
        result.mpta = angles.mpta if math.isfinite(angles.mpta) else None
        result.ahka = result.jlo = None  # never a NaN in the outputs
        return result
    if _add_checks(result, pts, spacing_mm, side, patient_right_on_image_left):
        result.notes.append("no CPAK type: the angles come from implausible landmarks")
        return result
    result.cpak = cpak_type(angles.ahka, angles.jlo)
    conflicts = display_conflicts(angles.ldfa, angles.mpta)
    if is_borderline(angles.ahka, angles.jlo) or conflicts:
        result.flags.append(FLAG_BORDERLINE)
        result.notes.append(f"aHKA or JLO within {BORDERLINE_DEG:g} degrees of a CPAK boundary")
        result.notes.extend(conflicts)
    return result


def _add_checks(
    result: LegMeasurement,
    landmarks_px: Mapping[str, Sequence[float] | None],
    spacing_mm: tuple[float, float],
    side: str,
    patient_right_on_image_left: bool,
) -> bool:
    """Add ``angle_out_of_range`` / ``implausible_geometry`` / ``size_implausible`` (with notes)
    for what the leg's angles and landmarks allow; True when any applies (no CPAK type then)."""
    bad = False
    rng = _range_problem(result.ldfa, result.mpta)
    if rng:
        result.flags.append(FLAG_ANGLE_RANGE)
        result.notes.append(rng)
        bad = True
    problems = geometry_problems(landmarks_px, spacing_mm, side, patient_right_on_image_left)
    if problems:
        result.flags.append(FLAG_GEOMETRY)
        result.notes.extend(problems)
        bad = True
    sizes = size_problems(landmarks_px, spacing_mm)
    if sizes:
        result.flags.append(FLAG_SIZE)
        result.notes.extend(sizes)
        bad = True
    return bad
