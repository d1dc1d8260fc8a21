"""The safety layer of a measured leg: plausibility range, geometry checks (both film
orientations, partly measured legs), no CPAK type for implausible legs, borderline and its
display note, and the flags :func:`cpak_cli.pipeline.result.assemble_leg` attaches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpak_cli.core.landmarks import LANDMARKS
from cpak_cli.core.measurement import (
    AXIS_MIN_ANGLE_DEG,
    FLAG_ANGLE_RANGE,
    FLAG_BORDERLINE,
    FLAG_GEOMETRY,
    FLAG_LOW_CONFIDENCE,
    FLAG_ORIENTATION_ASSUMED,
    FLAG_SPACING_UNCORRECTED,
    KNEE_LINE_GAP_MM,
    PLAUSIBLE_ANGLE_DEG,
    geometry_problems,
    measure_leg,
)
from cpak_cli.input.loader import LoadedImage
from cpak_cli.networks.inference import LandmarkPrediction
from cpak_cli.pipeline.result import assemble_leg
from tests.factories import build_leg

SP = (0.15, 0.15)


def _swap(leg: dict, a: str, b: str) -> dict:
    out = dict(leg)
    out[a], out[b] = leg[b], leg[a]
    return out


# ------------------------------------------------------------------ plausibility range


def test_range_is_75_to_105_inclusive():
    assert PLAUSIBLE_ANGLE_DEG == (75.0, 105.0)


@pytest.mark.parametrize("ldfa,mpta", [(74.0, 88.0), (88.0, 74.5), (105.6, 88.0), (88.0, 106.0), (70.0, 110.0)])
def test_angle_outside_the_range_is_flagged_and_not_typed(ldfa, mpta):
    m = measure_leg("right", build_leg(ldfa, mpta), SP)
    assert m.measured and (m.ldfa, m.mpta) == pytest.approx((ldfa, mpta), abs=0.01)  # numbers still reported
    assert FLAG_ANGLE_RANGE in m.flags and m.cpak is None
    assert FLAG_GEOMETRY not in m.flags
    assert any("75-105" in n for n in m.notes)
    assert m.to_json()["cpak"] is None


@pytest.mark.parametrize("ldfa,mpta,cpak", [(75.5, 80.0, "III"), (104.5, 98.0, "VII"), (76.0, 104.0, "VI")])
def test_severe_but_plausible_deformity_is_typed(ldfa, mpta, cpak):
    m = measure_leg("left", build_leg(ldfa, mpta, side="left"), SP)
    assert m.cpak == cpak and FLAG_ANGLE_RANGE not in m.flags and FLAG_GEOMETRY not in m.flags


def test_range_applies_to_a_partly_measured_leg():
    no_ankle = {**build_leg(72.0, 88.0), "ankle_lateral": None, "ankle_medial": None}
    m = measure_leg("right", no_ankle, SP)
    assert not m.measured and m.ldfa == pytest.approx(72.0, abs=0.01)
    assert FLAG_ANGLE_RANGE in m.flags and m.cpak is None


# ------------------------------------------------------------------ medial/lateral order


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("right_on_left", [True, False])
@pytest.mark.parametrize("pair,what", [
    (("femoral_condyle_lateral", "femoral_condyle_medial"), "femoral condyles"),
    (("tibial_plateau_lateral", "tibial_plateau_medial"), "tibial plateau margins"),
    (("ankle_lateral", "ankle_medial"), "ankle landmarks"),
])
def test_each_swapped_pair_is_caught_on_both_orientations(side, right_on_left, pair, what):
    leg = build_leg(87.0, 84.0, side=side, patient_right_on_image_left=right_on_left)
    assert geometry_problems(leg, SP, side, right_on_left) == []
    ok = measure_leg(side, leg, SP, patient_right_on_image_left=right_on_left)
    assert ok.cpak == "I" and ok.flags == []
    bad = _swap(leg, *pair)
    problems = geometry_problems(bad, SP, side, right_on_left)
    assert problems == [f"{what} in the wrong medial/lateral order"]
    m = measure_leg(side, bad, SP, patient_right_on_image_left=right_on_left)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None and m.ldfa is not None and m.mpta is not None
    assert f"{what} in the wrong medial/lateral order" in m.notes


def _moved(leg: dict, names: tuple[str, ...], dy_mm: float) -> dict:
    return {**leg, **{n: (leg[n][0], leg[n][1] + dy_mm / SP[0]) for n in names}}


CONDYLES = ("femoral_condyle_lateral", "femoral_condyle_medial")
PLATEAU = ("tibial_plateau_lateral", "tibial_plateau_medial")


def _gap_mm(leg: dict) -> float:
    return (sum(leg[n][1] for n in PLATEAU) - sum(leg[n][1] for n in CONDYLES)) / 2 * SP[0]


@pytest.mark.parametrize("side", ["right", "left"])
def test_condyles_on_a_growth_plate_above_the_joint_are_caught(side):
    leg = build_leg(87.0, 84.0, side=side)
    assert KNEE_LINE_GAP_MM[0] <= _gap_mm(leg) <= KNEE_LINE_GAP_MM[1]
    # condyle points moved up onto a distal femoral physis 18 mm above the joint line
    plate = _moved(leg, CONDYLES, -18.0)
    problems = geometry_problems(plate, SP, side)
    assert len(problems) == 1 and "growth plate taken for the joint line" in problems[0]
    m = measure_leg(side, plate, SP)
    assert m.measured and m.ldfa is not None and FLAG_GEOMETRY in m.flags and m.cpak is None
    # plateau points moved down onto a proximal tibial physis: the same
    assert "growth plate" in geometry_problems(_moved(leg, PLATEAU, 16.0), SP, side)[0]
    # condyles well below the plateau
    low = _moved(leg, CONDYLES, _gap_mm(leg) + 5.0)
    assert geometry_problems(low, SP, side) == ["femoral condyles 5 mm below the tibial plateau"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_knee_centre_on_a_condyle_is_caught(side):
    leg = build_leg(87.0, 84.0, side=side)  # centre midway between condyles 76 mm apart (limit 26.6 mm)
    kx, ky = leg["knee_center"]

    def shifted(mm: float) -> dict:
        return {**leg, "knee_center": (kx + mm / SP[1], ky)}

    assert geometry_problems(shifted(26.0), SP, side) == []
    assert geometry_problems(shifted(-26.0), SP, side) == []
    problems = geometry_problems(shifted(30.0), SP, side)
    assert problems == ["knee centre 30 mm from the middle of the femoral condyles (more than 27 mm)"]
    m = measure_leg(side, shifted(-30.0), SP)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None and m.ldfa is not None
    # condyles close together: at least 6 mm is allowed
    lat = 3.0 if side == "left" else -3.0
    close = {**leg, "femoral_condyle_lateral": (kx + lat / SP[1], leg["femoral_condyle_lateral"][1]),
             "femoral_condyle_medial": (kx - lat / SP[1], leg["femoral_condyle_medial"][1])}
    assert not any("knee centre" in p for p in geometry_problems({**close, "knee_center": (kx + 5.9 / SP[1], ky)}, SP, side))
    assert any("knee centre" in p for p in geometry_problems({**close, "knee_center": (kx + 6.1 / SP[1], ky)}, SP, side))


def test_joint_line_gap_limits_are_inclusive_and_need_all_four_points():
    leg = build_leg(87.0, 84.0)
    g = _gap_mm(leg)
    assert geometry_problems(_moved(leg, CONDYLES, g - KNEE_LINE_GAP_MM[1] + 0.01), SP, "right") == []
    assert geometry_problems(_moved(leg, CONDYLES, g - KNEE_LINE_GAP_MM[1] - 0.01), SP, "right") != []
    assert geometry_problems(_moved(leg, CONDYLES, g - KNEE_LINE_GAP_MM[0] - 0.01), SP, "right") == []
    one_missing = {**_moved(leg, CONDYLES, -30.0), "tibial_plateau_medial": None}
    assert geometry_problems(one_missing, SP, "right") == []


def test_ankle_swap_alone_keeps_ldfa_and_mpta_in_range():
    # swapping only the ankle points moves neither LDFA nor MPTA (the ankle centre is their
    # mid-point): only the ankle order check can see it
    leg = build_leg(86.0, 84.0)
    bad = _swap(leg, "ankle_lateral", "ankle_medial")
    m = measure_leg("right", bad, SP)
    assert (m.ldfa, m.mpta) == pytest.approx((86.0, 84.0), abs=1e-6)
    assert m.flags == [FLAG_GEOMETRY] and m.cpak is None


@pytest.mark.parametrize("side", ["right", "left"])
def test_fully_swapped_labels_give_no_type(side):
    # every medial/lateral pair swapped: the angles become 180 - x (87/83 -> 93/97, type I -> IX)
    leg = build_leg(87.0, 83.0, side=side)
    bad = leg
    for a, b in (("femoral_condyle_lateral", "femoral_condyle_medial"),
                 ("tibial_plateau_lateral", "tibial_plateau_medial"), ("ankle_lateral", "ankle_medial")):
        bad = _swap(bad, a, b)
    m = measure_leg(side, bad, SP)
    assert (m.ldfa, m.mpta) == pytest.approx((93.0, 97.0), abs=0.01)
    assert FLAG_GEOMETRY in m.flags and FLAG_ANGLE_RANGE not in m.flags and m.cpak is None


def test_a_mirrored_film_read_as_standard_is_caught():
    leg = build_leg(88.0, 86.0, side="left", patient_right_on_image_left=False)
    assert measure_leg("left", leg, SP, patient_right_on_image_left=False).cpak == "II"
    m = measure_leg("left", leg, SP, patient_right_on_image_left=True)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None
    assert sum("medial/lateral order" in n for n in m.notes) == 3


# ------------------------------------------------------------------ joints above/below, folded axes


def _bent_leg(knee_angle_deg: float, side: str = "right") -> dict:
    """Hip straight above the knee; tibia turned so the axes meet at ``knee_angle_deg`` (180 =
    straight), towards lateral; condyles, plateau and ankle points in the right order."""
    lat = -1.0 if side == "right" else 1.0
    t = math.radians(180.0 - knee_angle_deg)
    knee = np.array([200.0, 450.0])
    ankle = knee + 380.0 * np.array([lat * math.sin(t), math.cos(t)])
    mm = {
        "femoral_head": (200.0, 0.0), "knee_center": tuple(knee),
        "femoral_condyle_lateral": (200.0 + 38 * lat, 456.0), "femoral_condyle_medial": (200.0 - 38 * lat, 456.0),
        "tibial_plateau_lateral": (200.0 + 36 * lat, 460.0), "tibial_plateau_medial": (200.0 - 36 * lat, 460.0),
        "ankle_lateral": tuple(ankle + [14 * lat, 0.0]), "ankle_medial": tuple(ankle - [14 * lat, 0.0]),
    }
    return {n: (x / SP[1], y / SP[0]) for n, (x, y) in mm.items()}


FOLD = f"femoral and tibial axes meet at less than {AXIS_MIN_ANGLE_DEG:.0f} degrees"


@pytest.mark.parametrize("side", ["right", "left"])
def test_axis_fold_threshold_is_150_degrees(side):
    assert AXIS_MIN_ANGLE_DEG == 150.0
    assert FOLD not in geometry_problems(_bent_leg(152.0, side), SP, side)
    assert FOLD in geometry_problems(_bent_leg(148.0, side), SP, side)
    assert FOLD in geometry_problems(_bent_leg(125.0, side), SP, side)
    m = measure_leg(side, _bent_leg(148.0, side), SP)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None


def test_hip_below_knee_and_ankle_above_knee():
    leg = build_leg(87.0, 86.0)
    up = _swap(leg, "femoral_head", "knee_center")
    assert "femoral head not above the knee" in geometry_problems(up, SP, "right")
    k = leg["knee_center"]
    high = {**leg, "ankle_lateral": (leg["ankle_lateral"][0], k[1] - 5), "ankle_medial": (leg["ankle_medial"][0], k[1] - 5)}
    assert "ankle not below the knee" in geometry_problems(high, SP, "right")


def test_geometry_checks_on_a_partly_measured_leg():
    leg = build_leg(87.0, 86.0)
    no_ankle = {**leg, "ankle_lateral": None, "ankle_medial": None}
    assert geometry_problems(no_ankle, SP, "right") == []
    bad = _swap(no_ankle, "femoral_condyle_lateral", "femoral_condyle_medial")
    m = measure_leg("right", bad, SP)
    assert not m.measured and m.ldfa is not None and FLAG_GEOMETRY in m.flags
    assert m.notes == ["femoral condyles in the wrong medial/lateral order"]
    one_ankle = {**leg, "ankle_medial": None}  # ankle order needs both points: not checked
    assert geometry_problems(one_ankle, SP, "right") == []
    no_hip = _swap({**leg, "femoral_head": None}, "ankle_lateral", "ankle_medial")
    assert geometry_problems(no_hip, SP, "right") == ["ankle landmarks in the wrong medial/lateral order"]


# ------------------------------------------------------------------ borderline and the 0.1 display


@pytest.mark.parametrize("ldfa,mpta,cpak,name,shown", [
    (88.04, 86.00, "I", "aHKA", "-2.0"),   # aHKA -2.04: varus, prints -2.0 (neutral)
    (88.48, 88.48, "II", "JLO", "177.0"),  # JLO 176.96: apex distal, prints 177.0 (neutral)
    (86.00, 88.04, "III", "aHKA", "2.0"),  # aHKA 2.04 valgus
    (91.52, 91.52, "VIII", "JLO", "183.0"),  # JLO 183.04 apex proximal
])
def test_display_that_reads_as_another_class_is_noted(ldfa, mpta, cpak, name, shown):
    m = measure_leg("right", build_leg(ldfa, mpta), SP)
    assert m.cpak == cpak and FLAG_BORDERLINE in m.flags
    note = [n for n in m.notes if n.startswith(f"{name} prints as {shown} ")]
    assert len(note) == 1 and "full value" in note[0]


def test_borderline_without_display_conflict_has_no_such_note():
    m = measure_leg("right", build_leg(88.3, 86.0), SP)  # aHKA -2.3: prints -2.3, still varus
    assert m.cpak == "I" and FLAG_BORDERLINE in m.flags and not any("prints as" in n for n in m.notes)
    m = measure_leg("right", build_leg(89.0, 86.0), SP)  # aHKA -3, JLO 175: 2 degrees from both
    assert m.cpak == "I" and m.flags == []


# ------------------------------------------------------------------ assemble_leg: flags on every leg


def _image(spacing_source="PixelSpacing", assumed=False, right_on_left=True) -> LoadedImage:
    return LoadedImage(pixels=np.zeros((8, 8), np.float32), spacing_mm=SP, spacing_source=spacing_source,
                       patient_right_on_image_left=right_on_left, assumed_orientation=assumed, laterality=None,
                       path="film.dcm")


def _preds(leg: dict, conf: float = 0.9, low=(), drop=()) -> dict:
    return {n: LandmarkPrediction(n, x, y, x * SP[1], y * SP[0], True, 0.2 if n in low else conf, 0.95, 200)
            for n, (x, y) in leg.items() if n not in drop and (x, y) is not None}


def test_assemble_leg_full_leg_clean_film():
    leg = build_leg(87.0, 84.0)
    m = assemble_leg("right", _preds(leg), _image(), [], 0.5)
    assert m.measured and m.cpak == "I" and m.flags == []


def test_low_confidence_flag_on_full_and_partial_legs():
    leg = build_leg(87.0, 84.0)
    m = assemble_leg("right", _preds(leg, low=("knee_center",)), _image(), [], 0.5)
    assert m.cpak == "I" and m.flags == [FLAG_LOW_CONFIDENCE] and "low confidence: knee_center" in m.notes
    m = assemble_leg("right", _preds(leg, low=("femoral_head",), drop=("ankle_lateral", "ankle_medial")), _image(),
                     ["ankle"], 0.5)
    assert not m.measured and FLAG_LOW_CONFIDENCE in m.flags and "low confidence: femoral_head" in m.notes
    # the threshold is the caller's
    assert FLAG_LOW_CONFIDENCE not in assemble_leg("right", _preds(leg, conf=0.6), _image(), [], 0.5).flags
    assert FLAG_LOW_CONFIDENCE in assemble_leg("right", _preds(leg, conf=0.6), _image(), [], 0.7).flags


@pytest.mark.parametrize("partial", [False, True])
def test_scan_flags_reach_full_and_partial_legs(partial):
    leg = build_leg(87.0, 84.0)
    drop = ("ankle_lateral", "ankle_medial") if partial else ()
    missing = ["ankle"] if partial else []
    img = _image(spacing_source="ImagerPixelSpacing", assumed=True)
    m = assemble_leg("right", _preds(leg, drop=drop), img, missing, 0.5)
    assert m.measured is not partial
    assert FLAG_SPACING_UNCORRECTED in m.flags and FLAG_ORIENTATION_ASSUMED in m.flags
    clean = assemble_leg("right", _preds(leg, drop=drop), _image(), missing, 0.5)
    assert FLAG_SPACING_UNCORRECTED not in clean.flags and FLAG_ORIENTATION_ASSUMED not in clean.flags
    if partial:
        assert clean.ldfa == pytest.approx(87.0, abs=0.01) and clean.cpak is None
        assert clean.error == "joint(s) not found on the film: ankle"


def test_assemble_leg_checks_geometry_on_the_films_orientation():
    leg = build_leg(87.0, 84.0, side="right", patient_right_on_image_left=False)
    mirrored = _image(right_on_left=False)
    m = assemble_leg("right", _preds(leg), mirrored, [], 0.5)
    assert m.cpak == "I" and FLAG_GEOMETRY not in m.flags
    m = assemble_leg("right", _preds(leg), _image(right_on_left=True), [], 0.5)
    assert FLAG_GEOMETRY in m.flags and m.cpak is None
    # ... and on a partly measured leg (ankles off the film): the condyles still tell
    no_ankle = _preds(leg, drop=("ankle_lateral", "ankle_medial"))
    assert FLAG_GEOMETRY not in assemble_leg("right", no_ankle, mirrored, ["ankle"], 0.5).flags
    m = assemble_leg("right", no_ankle, _image(right_on_left=True), ["ankle"], 0.5)
    assert FLAG_GEOMETRY in m.flags and m.ldfa is not None and not m.measured


def test_not_found_landmark_is_an_error_and_keeps_flags():
    leg = build_leg(87.0, 84.0)
    preds = _preds(leg)
    p = preds["tibial_plateau_medial"]
    preds["tibial_plateau_medial"] = LandmarkPrediction(p.name, math.nan, math.nan, math.nan, math.nan, False,
                                                        0.0, 0.1, 0)
    m = assemble_leg("right", preds, _image(assumed=True), [], 0.5)
    assert m.error == "landmark(s) not found: tibial_plateau_medial" and m.cpak is None
    assert FLAG_ORIENTATION_ASSUMED in m.flags and FLAG_LOW_CONFIDENCE not in m.flags  # not found is not "low"
    assert m.ldfa == pytest.approx(87.0, abs=0.01) and m.mpta is None
    assert set(LANDMARKS) - set(preds) == set()


# ------------------------------------------------------------------ size plausibility (issue 9 item 4)

from cpak_cli.core.measurement import FEMUR_MM, FEMUR_TIBIA_RATIO, FLAG_SIZE, PLATEAU_TO_FEMUR, TIBIA_MM, size_problems  # noqa: E402


def _scaled(leg: dict, fy: float, fx: float = 1.0) -> dict:
    return {n: (x * fx, y * fy) for n, (x, y) in leg.items()}


def test_size_ranges_are_the_documented_ones():
    assert FEMUR_MM == (180.0, 620.0) and TIBIA_MM == (140.0, 540.0)
    assert FEMUR_TIBIA_RATIO == (0.95, 1.6) and PLATEAU_TO_FEMUR == (0.08, 0.30)


@pytest.mark.parametrize("factor", [0.45, 1.0, 1.3])  # a 3-4-year-old (femur 202 mm) .. a tall adult on an uncorrected film
def test_children_and_tall_adults_are_plausible_and_typed(factor):
    leg = build_leg(87.0, 86.0)  # femur 450 mm, tibia 380 mm at SP
    m = measure_leg("right", leg, (SP[0] * factor, SP[1] * factor))
    assert FLAG_SIZE not in m.flags and m.cpak is not None


def test_half_height_resampled_film_is_flagged_and_untyped():
    """Review case: rows x 0.5 with the spacing kept (an adult femur of 225 mm, a child's length):
    the plateau keeps its width, so the shape check catches it; the note gives the lengths."""
    m = measure_leg("right", _scaled(build_leg(87.0, 86.0), 0.5), SP)
    assert FLAG_SIZE in m.flags and m.cpak is None and m.ldfa is not None
    assert any("225 mm femur" in n and "resampled" in n for n in m.notes)
    assert not [n for n in m.notes if n.startswith("femur length")]  # the length alone passes


@pytest.mark.parametrize("factor,needle", [(2.0, "femur length 900 mm"), (0.3, "femur length 135 mm")])
def test_leg_far_outside_the_length_ranges(factor, needle):
    m = measure_leg("right", build_leg(87.0, 86.0), (SP[0] * factor, SP[1] * factor))
    assert FLAG_SIZE in m.flags and m.cpak is None
    assert any(needle in n for n in m.notes) and any(n.startswith("tibia length") for n in m.notes)


def test_femur_tibia_ratio_and_partial_legs():
    leg = build_leg(87.0, 86.0)
    # femoral head moved up 300 mm: femur 750 mm, ratio 1.97
    far = dict(leg, femoral_head=(leg["femoral_head"][0], leg["femoral_head"][1] - 300.0 / SP[0]))
    probs = size_problems(far, SP)
    assert any("femur length 750 mm" in p for p in probs) and any("= 1.97 outside" in p for p in probs)
    # ratio alone: femur 450, tibia 250 mm (ankle centre moved up 130 mm): 1.80
    ax = {n: (leg[n][0], leg[n][1] - 130.0 / SP[0]) for n in ("ankle_lateral", "ankle_medial")}
    (p,) = size_problems(dict(leg, **ax), SP)
    assert p.startswith("femur 450 mm / tibia 250 mm = 1.80")
    # a leg without its ankle still gets the femur checks
    part = dict(_scaled(build_leg(87.0, 86.0), 0.5), ankle_lateral=None, ankle_medial=None)
    m = measure_leg("right", part, SP)
    assert not m.measured and FLAG_SIZE in m.flags and m.cpak is None
    assert size_problems({"knee_center": (0, 0)}, SP) == []
