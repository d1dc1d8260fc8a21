"""The alignment panel (cpak_cli.core.panel): JLCA, MAD and mechanical lengths against legs whose
values are known by construction, their signs on right and left legs and on mirrored films,
partly measured and degenerate legs, the normal ranges and the leg-length difference."""

from __future__ import annotations

import json
import math

import pytest

from cpak_cli.core.measurement import FLAG_GEOMETRY, FLAG_SIZE, LegMeasurement, leg_length_difference_mm, measure_leg
from cpak_cli.core.panel import (
    NORMAL_RANGES,
    NormalCheck,
    jlca_deg,
    leg_panel,
    length_difference_mm,
    mad_from_centres,
    normal_checks,
    outside_normal,
)
from tests.factories import build_leg, build_panel_leg

SP = (0.15, 0.15)


def _mad_by_construction(femur: float, tibia: float, mhka: float) -> float:
    """MAD (mm, medial positive) of a leg whose femoral axis is ``femur`` long and whose tibial
    axis (``tibia`` long) turns ``mhka`` degrees towards lateral: the knee's distance from the
    hip-ankle line is twice the triangle's area over the hip-ankle length; valgus (the ankle
    lateral) puts the line lateral of the knee, a negative MAD."""
    t = math.radians(mhka)
    hip_ankle = math.hypot(tibia * math.sin(t), femur + tibia * math.cos(t))
    return -femur * tibia * math.sin(t) / hip_ankle


def _mirror(leg: dict, width_px: float = 4000.0) -> dict:
    """The same leg seen in a mirror (image x flipped)."""
    return {n: (None if p is None else (width_px - p[0], p[1])) for n, p in leg.items()}


# ------------------------------------------------------------------ values by construction


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("right_on_left", [True, False])
@pytest.mark.parametrize("spacing", [(0.15, 0.15), (0.2, 0.12)])
@pytest.mark.parametrize("rotation", [0.0, 8.0, -13.0])
@pytest.mark.parametrize("jlca,mhka,femur,tibia", [
    (3.0, -4.0, 450.0, 380.0),   # varus knee opening laterally
    (-1.5, 5.5, 412.0, 351.0),   # valgus knee opening medially
    (0.0, 0.0, 380.0, 300.0),    # straight leg, parallel joint lines
    (1.2, -0.8, 520.0, 430.0),
])
def test_panel_matches_construction(side, right_on_left, spacing, rotation, jlca, mhka, femur, tibia):
    leg = build_panel_leg(jlca, mhka, side=side, ldfa=87.0, femur_mm=femur, tibia_mm=tibia, spacing_mm=spacing,
                          rotation_deg=rotation, patient_right_on_image_left=right_on_left)
    m = measure_leg(side, leg, spacing, patient_right_on_image_left=right_on_left)
    assert m.measured and m.flags == []
    assert m.jlca == pytest.approx(jlca, abs=0.01)
    assert m.mad_mm == pytest.approx(_mad_by_construction(femur, tibia, mhka), abs=0.01)
    assert (m.femur_mm, m.tibia_mm, m.leg_mm) == pytest.approx((femur, tibia, femur + tibia), abs=0.01)
    # the CPAK angles of the same leg are untouched: MPTA = LDFA + mHKA + JLCA by construction
    assert (m.ldfa, m.mpta, m.mhka) == pytest.approx((87.0, 87.0 + mhka + jlca, mhka), abs=0.01)


@pytest.mark.parametrize("ldfa,mpta,mhka", [(87.0, 84.0, -3.25), (90.0, 91.0, 2.5), (84.0, 92.0, 1.0), (93.0, 85.0, -9.0)])
@pytest.mark.parametrize("side", ["right", "left"])
def test_jlca_is_what_separates_mechanical_from_arithmetic_hka(ldfa, mpta, mhka, side):
    # build_leg sets LDFA, MPTA and mHKA; angles add up around the knee, so the joint lines must
    # converge by aHKA - mHKA = (MPTA - LDFA) - mHKA, medially when positive
    m = measure_leg(side, build_leg(ldfa, mpta, side=side, mhka=mhka, rotation_deg=6.0), SP)
    assert m.jlca == pytest.approx((mpta - ldfa) - mhka, abs=0.01)
    assert m.mhka == pytest.approx(m.mpta - m.ldfa - m.jlca, abs=1e-9)


# ------------------------------------------------------------------ signs, written out by hand


def _right_leg_varus_opening_laterally() -> dict:
    """A right leg on a standard film (patient's right on the image left: lateral = small x),
    mm = pixels (spacing 1). The ankle centre lies 10 mm medial (larger x) of the hip over 750 mm:
    the knee lies lateral of the hip-ankle line (varus). The condylar line is level; the plateau
    line drops 2 mm from medial to lateral over 60 mm: the lateral gap (7 mm) is wider than the
    medial (5 mm), the lines converge medially."""
    return {
        "femoral_head": (100.0, 0.0), "knee_center": (100.0, 400.0),
        "femoral_condyle_medial": (130.0, 405.0), "femoral_condyle_lateral": (70.0, 405.0),
        "tibial_plateau_medial": (130.0, 410.0), "tibial_plateau_lateral": (70.0, 412.0),
        "ankle_medial": (125.0, 750.0), "ankle_lateral": (95.0, 750.0),
    }


def test_signs_written_out_for_a_right_leg_and_its_mirror_image():
    leg = _right_leg_varus_opening_laterally()
    jlca = math.degrees(math.atan2(2.0, 60.0))
    mad = 10.0 * 400.0 / math.hypot(10.0, 750.0)  # |cross(ankle - hip, knee - hip)| / |ankle - hip|
    femur, tibia = 400.0, math.hypot(10.0, 350.0)
    for side, pts, right_on_left in (
        ("right", leg, True),               # standard film
        ("left", _mirror(leg), True),       # the left leg is the mirror image of the right
        ("right", _mirror(leg), False),     # a film displayed the other way round
        ("left", leg, False),
    ):
        m = measure_leg(side, pts, (1.0, 1.0), patient_right_on_image_left=right_on_left)
        assert m.measured and FLAG_GEOMETRY not in m.flags, (side, right_on_left, m.notes)
        assert m.jlca == pytest.approx(jlca, abs=0.01) and m.jlca > 0  # converging medially
        assert m.mad_mm == pytest.approx(mad, abs=0.01) and m.mad_mm > 0  # axis medial of the knee
        assert m.mhka is not None and m.mhka < 0  # varus: MAD and mHKA have opposite signs
        assert (m.femur_mm, m.tibia_mm) == pytest.approx((femur, tibia), abs=0.01)


def test_lateral_convergence_and_valgus_are_negative():
    leg = _right_leg_varus_opening_laterally()
    # the plateau drops medially instead; the ankle 10 mm lateral: valgus
    leg.update(tibial_plateau_medial=(130.0, 412.0), tibial_plateau_lateral=(70.0, 410.0),
               ankle_medial=(105.0, 750.0), ankle_lateral=(75.0, 750.0))
    for side, pts in (("right", leg), ("left", _mirror(leg))):
        m = measure_leg(side, pts, (1.0, 1.0))
        assert m.jlca == pytest.approx(-math.degrees(math.atan2(2.0, 60.0)), abs=0.01)
        assert m.mad_mm == pytest.approx(-10.0 * 400.0 / math.hypot(10.0, 750.0), abs=0.01)
        assert m.mhka is not None and m.mhka > 0


def test_the_sign_follows_the_patient_side_not_the_image():
    leg = _right_leg_varus_opening_laterally()
    # the same points called the other leg: medial and lateral swap, and so do both signs
    assert jlca_deg(leg, (1.0, 1.0), "left") == pytest.approx(-jlca_deg(leg, (1.0, 1.0), "right"), abs=1e-12)
    hip, knee, ankle = leg["femoral_head"], leg["knee_center"], (110.0, 750.0)
    assert mad_from_centres(hip, knee, ankle, (1.0, 1.0), "left") == pytest.approx(
        -mad_from_centres(hip, knee, ankle, (1.0, 1.0), "right"), abs=1e-12)


def test_mm_space_with_anisotropic_spacing():
    # rows 0.2 mm, columns 0.1 mm: 100 px across are 10 mm, 100 px down are 20 mm
    leg = _right_leg_varus_opening_laterally()
    m = measure_leg("right", leg, (0.2, 0.1))
    assert m.femur_mm == pytest.approx(400.0 * 0.2, abs=1e-9)
    assert m.tibia_mm == pytest.approx(math.hypot(10.0 * 0.1, 350.0 * 0.2), abs=1e-9)
    assert m.jlca == pytest.approx(math.degrees(math.atan2(2.0 * 0.2, 60.0 * 0.1)), abs=1e-9)
    assert m.mad_mm == pytest.approx(1.0 * 80.0 / math.hypot(1.0, 150.0), abs=1e-9)


# ------------------------------------------------------------------ partly measured and degenerate legs


@pytest.mark.parametrize("drop,none", [
    (("femoral_condyle_lateral",), {"jlca"}),
    (("tibial_plateau_medial", "tibial_plateau_lateral"), {"jlca"}),
    (("ankle_medial",), {"mad_mm", "tibia_mm"}),
    (("femoral_head",), {"mad_mm", "femur_mm"}),
    (("knee_center",), {"mad_mm", "femur_mm", "tibia_mm"}),
    (("femoral_head", "ankle_lateral", "femoral_condyle_medial"), {"jlca", "mad_mm", "femur_mm", "tibia_mm"}),
])
def test_partial_legs_give_what_their_landmarks_allow(drop, none):
    full_leg = build_panel_leg(1.5, -2.0, side="left", femur_mm=430.0, tibia_mm=360.0)
    full = measure_leg("left", full_leg, SP)
    m = measure_leg("left", {**full_leg, **{n: None for n in drop}}, SP)
    assert not m.measured and m.cpak is None
    for name in ("jlca", "mad_mm", "femur_mm", "tibia_mm"):
        if name in none:
            assert getattr(m, name) is None, name
        else:  # never a different number: what is given equals the full leg's value
            assert getattr(m, name) == getattr(full, name), name
    assert (m.leg_mm is None) == bool({"femur_mm", "tibia_mm"} & none)


def test_degenerate_points_give_none_never_nan():
    leg = build_panel_leg(1.0, 0.0)
    coincident = {**leg, "femoral_condyle_lateral": leg["femoral_condyle_medial"]}
    m = measure_leg("right", coincident, SP)
    assert m.jlca is None and m.ldfa is None and m.ahka is None and m.jlo is None
    assert m.error == "degenerate landmarks (coincident points)"
    assert m.mad_mm is not None and m.femur_mm == pytest.approx(450.0, abs=0.01)
    json.dumps(m.to_json(), allow_nan=False)  # no NaN anywhere in the JSON
    hip_on_ankle = leg_panel({**leg, "femoral_head": leg["ankle_lateral"], "ankle_medial": leg["ankle_lateral"]},
                             SP, "right")
    assert hip_on_ankle.mad_mm is None


def test_flagged_legs_keep_their_panel_like_their_angles():
    # the same rule as the angles: given whenever the landmarks exist, with the flags that doubt them
    tall = measure_leg("right", build_panel_leg(1.0, -1.0, femur_mm=900.0, tibia_mm=700.0), SP)
    assert FLAG_SIZE in tall.flags and tall.cpak is None
    assert (tall.femur_mm, tall.tibia_mm) == pytest.approx((900.0, 700.0), abs=0.01)
    swapped = build_panel_leg(1.0, -1.0, side="left")
    swapped["ankle_lateral"], swapped["ankle_medial"] = swapped["ankle_medial"], swapped["ankle_lateral"]
    m = measure_leg("left", swapped, SP)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None and m.jlca == pytest.approx(1.0, abs=0.01)


# ------------------------------------------------------------------ normal ranges


def test_normal_ranges_are_the_documented_ones():
    assert NORMAL_RANGES == {"ldfa": (85.0, 90.0), "mpta": (85.0, 90.0), "mhka": (-3.0, 3.0),
                             "jlca": (0.0, 2.0), "mad_mm": (0.0, 15.0)}


@pytest.mark.parametrize("name", list(NORMAL_RANGES))
def test_normal_checks_are_inclusive_and_skip_missing_values(name):
    lo, hi = NORMAL_RANGES[name]
    assert NormalCheck(lo, lo, hi).outside is False and NormalCheck(hi, lo, hi).outside is False
    assert NormalCheck(lo - 0.001, lo, hi).outside is True and NormalCheck(hi + 0.001, lo, hi).outside is True
    assert NormalCheck(None, lo, hi).outside is None and NormalCheck(float("nan"), lo, hi).outside is None
    assert outside_normal({name: hi + 0.5}) == [name]
    assert outside_normal({name: (lo + hi) / 2}) == [] and outside_normal({}) == []
    assert normal_checks({name: hi + 0.5})[name].to_json() == {"range": [lo, hi], "outside": True}


def test_outside_normal_names_the_values_and_keeps_the_cpak_type():
    # LDFA 88 (normal), JLCA 5 (outside), mHKA -6 (outside), MPTA 88 - 6 + 5 = 87 (normal)
    leg = build_panel_leg(5.0, -6.0, side="right", ldfa=88.0)
    m = measure_leg("right", leg, SP)
    mad = _mad_by_construction(450.0, 380.0, -6.0)
    assert mad > 15.0  # the knee some 25 mm lateral of the mechanical axis
    assert m.outside_normal == ["mhka", "jlca", "mad_mm"]
    assert m.cpak == "II" and m.flags == []  # information, not a doubt: no flag, the type stays
    normal = m.to_json()["normal"]
    assert normal["jlca"] == {"range": [0.0, 2.0], "outside": True}
    assert normal["mpta"]["outside"] is False and normal["ldfa"]["outside"] is False
    inside = measure_leg("left", build_panel_leg(1.0, -1.0, side="left", ldfa=87.5), SP)
    assert inside.outside_normal == [] and 0.0 < inside.mad_mm <= 15.0


def test_flags_that_remove_the_type_still_do_alongside_outside_normal():
    swapped = build_panel_leg(4.0, -6.0, side="right")
    swapped["femoral_condyle_lateral"], swapped["femoral_condyle_medial"] = (
        swapped["femoral_condyle_medial"], swapped["femoral_condyle_lateral"])
    m = measure_leg("right", swapped, SP)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None and m.outside_normal


def test_partly_measured_leg_checks_only_its_values():
    m = measure_leg("right", {**build_panel_leg(4.0, -6.0), "ankle_lateral": None}, SP)
    checks = m.normal
    assert checks["mhka"].outside is None and checks["mad_mm"].outside is None and checks["mpta"].outside is None
    assert m.outside_normal == ["jlca"]


# ------------------------------------------------------------------ JSON and the leg-length difference


def test_leg_json_carries_the_panel():
    m = measure_leg("left", build_panel_leg(1.5, -2.0, side="left", femur_mm=430.0, tibia_mm=360.0), SP)
    j = json.loads(json.dumps(m.to_json(), allow_nan=False))
    assert j["jlca"] == m.jlca and j["mad_mm"] == m.mad_mm
    assert (j["femur_mm"], j["tibia_mm"], j["leg_mm"]) == (m.femur_mm, m.tibia_mm, m.leg_mm)
    assert j["leg_mm"] == pytest.approx(790.0, abs=0.01)
    assert list(j["normal"]) == ["ldfa", "mpta", "mhka", "jlca", "mad_mm"] and j["outside_normal"] == []
    assert j["normal"]["mad_mm"]["range"] == [0.0, 15.0]
    # the earlier keys keep their meaning
    assert (j["ldfa"], j["mpta"], j["mhka"], j["cpak"]) == (m.ldfa, m.mpta, m.mhka, m.cpak)


def test_leg_length_difference_is_right_minus_left():
    right = measure_leg("right", build_panel_leg(1.0, 0.0, femur_mm=452.0, tibia_mm=371.0), SP)
    left = measure_leg("left", build_panel_leg(1.0, 0.0, side="left", femur_mm=440.5, tibia_mm=374.0), SP)
    assert leg_length_difference_mm({"right": right, "left": left}) == pytest.approx(
        (452.0 + 371.0) - (440.5 + 374.0), abs=0.01)
    assert leg_length_difference_mm({"right": left, "left": right}) == pytest.approx(-8.5, abs=0.01)
    assert leg_length_difference_mm({"right": right}) is None
    no_ankle = measure_leg("left", {**build_panel_leg(1.0, 0.0, side="left"), "ankle_medial": None}, SP)
    assert leg_length_difference_mm({"right": right, "left": no_ankle}) is None
    assert leg_length_difference_mm({"right": right, "left": LegMeasurement("left", error="x")}) is None
    assert length_difference_mm(None, 800.0) is None and length_difference_mm(801.5, 800.0) == 1.5
