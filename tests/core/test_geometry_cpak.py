import math

import numpy as np
import pytest

from cpak_cli.core.cpak import cpak_type, is_borderline
from cpak_cli.core.geometry import (
    angle_between,
    lateral_sign,
    leg_angles,
    mhka_deg,
    mhka_from_centres,
    signed_angle_between,
    to_mm,
    to_px,
)
from cpak_cli.core.measurement import FLAG_BORDERLINE, FLAG_GEOMETRY, geometry_problems, measure_leg
from tests.factories import build_leg


def test_angle_between_basic():
    assert angle_between(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(90.0)
    assert angle_between(np.array([1.0, 0.0]), np.array([-1.0, 1e-9])) == pytest.approx(180.0)
    assert angle_between(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(45.0)
    assert math.isnan(angle_between(np.array([0.0, 0.0]), np.array([1.0, 0.0])))


def test_mm_round_trip_uses_row_col_order():
    pts = np.array([[10.0, 20.0]])
    mm = to_mm(pts, (0.2, 0.1))  # row 0.2, col 0.1
    assert mm.tolist() == [[1.0, 4.0]]
    assert np.allclose(to_px(mm, (0.2, 0.1)), pts)


def test_neutral_knee_is_90_90_0_180():
    leg = {
        "femoral_head": (100, 0), "knee_center": (100, 1000),
        "femoral_condyle_lateral": (60, 1010), "femoral_condyle_medial": (140, 1010),
        "tibial_plateau_lateral": (60, 1020), "tibial_plateau_medial": (140, 1020),
        "ankle_lateral": (80, 2000), "ankle_medial": (120, 2000),
    }
    a = leg_angles(leg, (0.1, 0.1))
    assert (a.ldfa, a.mpta, a.ahka, a.jlo) == pytest.approx((90, 90, 0, 180))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("spacing", [(0.15, 0.15), (0.2, 0.12), (0.11, 0.19)])
@pytest.mark.parametrize("rotation", [0.0, 7.5, -12.0])
@pytest.mark.parametrize("ldfa,mpta", [(87.0, 86.0), (92.3, 84.1), (85.0, 93.7)])
def test_leg_angles_match_construction(side, spacing, rotation, ldfa, mpta):
    leg = build_leg(ldfa, mpta, side=side, spacing_mm=spacing, rotation_deg=rotation)
    a = leg_angles(leg, spacing)
    assert a.ldfa == pytest.approx(ldfa, abs=0.01)
    assert a.mpta == pytest.approx(mpta, abs=0.01)
    assert a.ahka == pytest.approx(mpta - ldfa, abs=0.01)
    assert a.jlo == pytest.approx(mpta + ldfa, abs=0.01)


def test_anisotropic_spacing_changes_angles_when_ignored():
    spacing = (0.2, 0.1)
    leg = build_leg(85.0, 92.0, spacing_mm=spacing)
    wrong = leg_angles(leg, (0.15, 0.15))
    assert abs(wrong.ldfa - 85.0) > 0.5  # isotropic assumption would be wrong


def test_missing_landmark_raises_keyerror():
    leg = build_leg(87, 87)
    del leg["knee_center"]
    with pytest.raises(KeyError, match="knee_center"):
        leg_angles(leg, (0.1, 0.1))


@pytest.mark.parametrize(
    "ahka,jlo,expected",
    [
        (-5, 170, "I"), (0, 170, "II"), (5, 170, "III"),
        (-5, 180, "IV"), (0, 180, "V"), (5, 180, "VI"),
        (-5, 190, "VII"), (0, 190, "VIII"), (5, 190, "IX"),
        (-2.0, 177.0, "V"), (2.0, 183.0, "V"),  # inclusive neutral ranges
        (-2.0001, 176.9999, "I"), (2.0001, 183.0001, "IX"),
    ],
)
def test_cpak_types(ahka, jlo, expected):
    assert cpak_type(ahka, jlo) == expected


def test_cpak_rejects_nan_and_borderline():
    with pytest.raises(ValueError):
        cpak_type(float("nan"), 180)
    assert is_borderline(-2.4, 180)
    assert is_borderline(0, 183.5)
    assert not is_borderline(0, 180)


def test_measure_leg_flags_and_errors():
    leg = build_leg(91.0, 89.2, side="right")  # aHKA -1.8, JLO 180.2 -> V, borderline
    m = measure_leg("right", leg, (0.15, 0.15))
    assert m.cpak == "V" and FLAG_BORDERLINE in m.flags and FLAG_GEOMETRY not in m.flags
    left = build_leg(88.0, 93.0, side="left")  # aHKA 5, JLO 181 -> VI
    m = measure_leg("left", left, (0.15, 0.15))
    assert m.cpak == "VI" and m.flags == []
    # swapped condyles are anatomically impossible
    bad = dict(leg)
    bad["femoral_condyle_lateral"], bad["femoral_condyle_medial"] = leg["femoral_condyle_medial"], leg["femoral_condyle_lateral"]
    m = measure_leg("right", bad, (0.15, 0.15))
    assert FLAG_GEOMETRY in m.flags and m.ldfa is not None
    partial = dict(leg)
    partial["ankle_medial"] = None
    m = measure_leg("right", partial, (0.15, 0.15))
    assert not m.measured and "ankle_medial" in m.error and m.cpak is None


def test_partial_leg_reports_the_angle_its_landmarks_allow():
    leg = build_leg(86.0, 88.0)
    no_ankle = {**leg, "ankle_lateral": None, "ankle_medial": None}
    m = measure_leg("right", no_ankle, (0.15, 0.15))
    assert not m.measured and m.cpak is None and m.mpta is None and m.ahka is None
    assert m.ldfa == pytest.approx(86.0, abs=0.01)
    no_hip = {**leg, "femoral_head": None}
    m = measure_leg("right", no_hip, (0.15, 0.15))
    assert m.ldfa is None and m.mpta == pytest.approx(88.0, abs=0.01) and "femoral_head" in m.error


# --- mechanical HKA -------------------------------------------------------------------------


def test_signed_angle_between_sign_and_range():
    # +x turned towards +y (downwards on the image) is positive
    assert signed_angle_between(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(90.0)
    assert signed_angle_between(np.array([1.0, 0.0]), np.array([0.0, -1.0])) == pytest.approx(-90.0)
    assert signed_angle_between(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(180.0)
    assert math.isnan(signed_angle_between(np.array([0.0, 0.0]), np.array([1.0, 0.0])))


def test_lateral_sign_follows_side_and_display():
    assert lateral_sign("right", True) == -1.0  # standard AP: right leg's lateral is the image left
    assert lateral_sign("left", True) == 1.0
    assert lateral_sign("right", False) == 1.0  # mirrored film
    assert lateral_sign("left", False) == -1.0
    with pytest.raises(ValueError):
        lateral_sign("image_left")


def _hand_leg(ankle_x_px, spacing=(0.1, 0.1)):
    """Hip (500, 0), knee (500, 4000) px; ankle centre (ankle_x_px, 7000) px from two points."""
    return {
        "femoral_head": (500.0, 0.0), "knee_center": (500.0, 4000.0),
        "ankle_lateral": (ankle_x_px - 30.0, 7000.0), "ankle_medial": (ankle_x_px + 30.0, 7000.0),
    }


def test_mhka_hand_computed_both_sides_and_flipped_film():
    # ankle centre 300 px = 30 mm towards smaller x over 300 mm below the knee
    expected = math.degrees(math.atan(30.0 / 300.0))  # 5.7106 deg
    leg = _hand_leg(200.0)
    # right leg, standard display: smaller x is lateral -> ankle lateral -> knee medial -> valgus
    assert mhka_deg(leg, (0.1, 0.1), "right") == pytest.approx(expected, abs=1e-9)
    # the same points as a left leg (smaller x is medial there): varus
    assert mhka_deg(leg, (0.1, 0.1), "left") == pytest.approx(-expected, abs=1e-9)
    # mirrored film swaps medial and lateral
    assert mhka_deg(leg, (0.1, 0.1), "right", patient_right_on_image_left=False) == pytest.approx(-expected, abs=1e-9)
    assert mhka_deg(leg, (0.1, 0.1), "left", patient_right_on_image_left=False) == pytest.approx(expected, abs=1e-9)
    # straight leg
    assert mhka_deg(_hand_leg(500.0), (0.1, 0.1), "right") == pytest.approx(0.0, abs=1e-12)
    assert mhka_from_centres((500, 0), (500, 4000), (500, 7000), (0.1, 0.1), "left") == pytest.approx(0.0, abs=1e-12)


def test_mhka_uses_mm_space_with_anisotropic_spacing():
    spacing = (0.2, 0.1)  # row 0.2 mm, col 0.1 mm
    # hip (500, 0), knee (500, 2000) px; ankle (200, 3500) px: 30 mm lateral over 300 mm
    got = mhka_from_centres((500.0, 0.0), (500.0, 2000.0), (200.0, 3500.0), spacing, "right")
    assert got == pytest.approx(math.degrees(math.atan(30.0 / 300.0)), abs=1e-9)
    # treating the pixels as square would give atan(300/1500) = 11.3 deg
    assert abs(mhka_from_centres((500.0, 0.0), (500.0, 2000.0), (200.0, 3500.0), (0.1, 0.1), "right") - got) > 5


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("right_on_left", [True, False])
@pytest.mark.parametrize("spacing", [(0.15, 0.15), (0.2, 0.12)])
@pytest.mark.parametrize("rotation", [0.0, 9.0, -14.0])
@pytest.mark.parametrize("mhka", [0.0, 4.5, -6.2])
def test_mhka_matches_construction(side, right_on_left, spacing, rotation, mhka):
    leg = build_leg(87.0, 85.5, side=side, spacing_mm=spacing, rotation_deg=rotation,
                    patient_right_on_image_left=right_on_left, mhka=mhka)
    assert mhka_deg(leg, spacing, side, right_on_left) == pytest.approx(mhka, abs=0.01)
    m = measure_leg(side, leg, spacing, patient_right_on_image_left=right_on_left)
    assert m.measured and m.mhka == pytest.approx(mhka, abs=0.01)
    assert m.to_json()["mhka"] == m.mhka
    # mHKA does not disturb the other angles of the constructed leg
    assert (m.ldfa, m.mpta) == pytest.approx((87.0, 85.5), abs=0.01)
    assert FLAG_GEOMETRY not in m.flags


def test_mhka_default_factory_leg_is_slightly_valgus():
    # build_leg without mhka puts the ankle centre 12 mm lateral, 380 mm below the knee
    for side in ("right", "left"):
        m = measure_leg(side, build_leg(88.0, 88.0, side=side), (0.15, 0.15))
        assert m.mhka == pytest.approx(math.degrees(math.atan(12.0 / 380.0)), abs=0.01)


def test_mhka_on_partial_legs_and_degenerate_input():
    leg = build_leg(86.0, 88.0, mhka=-3.0)
    no_condyles = {**leg, "femoral_condyle_lateral": None, "femoral_condyle_medial": None}
    m = measure_leg("right", no_condyles, (0.15, 0.15))
    assert not m.measured and m.ldfa is None and m.cpak is None
    assert m.mhka == pytest.approx(-3.0, abs=0.01) and m.to_json()["mhka"] == m.mhka
    no_plateau = {**leg, "tibial_plateau_lateral": None}
    assert measure_leg("right", no_plateau, (0.15, 0.15)).mhka == pytest.approx(-3.0, abs=0.01)
    no_ankle = {**leg, "ankle_medial": None}
    assert measure_leg("right", no_ankle, (0.15, 0.15)).mhka is None
    with pytest.raises(KeyError, match="femoral_head"):
        mhka_deg({**leg, "femoral_head": None}, (0.15, 0.15), "right")
    assert math.isnan(mhka_from_centres((10, 10), (10, 10), (10, 900), (0.1, 0.1), "right"))
    coincident = {**leg, "knee_center": leg["femoral_head"]}
    m = measure_leg("right", coincident, (0.15, 0.15))
    assert m.mhka is None and m.to_json()["mhka"] is None


def test_geometry_problems_uses_the_same_lateral_side_on_a_mirrored_film():
    leg = build_leg(87.0, 87.0, side="right", patient_right_on_image_left=False)
    assert geometry_problems(leg, (0.15, 0.15), "right", patient_right_on_image_left=False) == []
    wrong = geometry_problems(leg, (0.15, 0.15), "right", patient_right_on_image_left=True)
    assert any("medial/lateral order" in p for p in wrong)


# --- borderline margin and the independent CPAK truth table -----------------------------------


def test_borderline_margin_is_half_a_degree_inclusive():
    # exactly 0.5 from a boundary (exact in binary floating point): borderline (<=, not <)
    for ahka, jlo in ((-2.5, 180.0), (-1.5, 180.0), (1.5, 180.0), (2.5, 180.0),
                      (0.0, 176.5), (0.0, 177.5), (0.0, 182.5), (0.0, 183.5)):
        assert is_borderline(ahka, jlo), (ahka, jlo)
    # 0.6-0.9 from every boundary: not borderline (a 1.0 margin would say so)
    for ahka, jlo in ((-2.6, 180.0), (-1.4, 180.0), (1.1, 180.0), (2.9, 180.0),
                      (0.0, 176.2), (0.0, 177.7), (0.0, 182.1), (0.0, 183.8), (-5.0, 170.0)):
        assert not is_borderline(ahka, jlo), (ahka, jlo)


#: (LDFA, MPTA) -> CPAK type, worked out by hand from MacDessi's table (aHKA = MPTA - LDFA,
#: JLO = MPTA + LDFA; aHKA < -2 varus, > 2 valgus; JLO < 177 apex distal, > 183 apex proximal).
HAND_TABLE = [
    (90.0, 85.0, "I"),      # aHKA -5,   JLO 175
    (88.0, 88.0, "II"),     # aHKA 0,    JLO 176
    (85.0, 90.0, "III"),    # aHKA +5,   JLO 175
    (93.0, 88.0, "IV"),     # aHKA -5,   JLO 181
    (90.0, 90.0, "V"),      # aHKA 0,    JLO 180
    (88.0, 93.0, "VI"),     # aHKA +5,   JLO 181
    (96.0, 91.0, "VII"),    # aHKA -5,   JLO 187
    (92.0, 92.0, "VIII"),   # aHKA 0,    JLO 184
    (90.0, 95.0, "IX"),     # aHKA +5,   JLO 185
    (89.0, 87.0, "II"),     # aHKA -2 exactly (neutral, inclusive), JLO 176
    (88.5, 88.5, "V"),      # JLO 177 exactly (neutral, inclusive)
    (91.5, 91.5, "V"),      # JLO 183 exactly
    (89.0, 91.0, "V"),      # aHKA +2 exactly
    (88.25, 86.0, "I"),     # aHKA -2.25
    (84.75, 87.0, "III"),   # aHKA +2.25, JLO 171.75
]


@pytest.mark.parametrize("ldfa,mpta,expected", HAND_TABLE)
def test_cpak_hand_table_through_measure_leg(ldfa, mpta, expected):
    assert cpak_type(mpta - ldfa, mpta + ldfa) == expected
    m = measure_leg("right", build_leg(ldfa, mpta), (0.15, 0.15))
    if ldfa + mpta in (177.0, 183.0) or abs(mpta - ldfa) == 2.0:  # constructed within ~1e-13 of the edge
        assert m.cpak in (expected, None) or FLAG_BORDERLINE in m.flags
    else:
        assert m.cpak == expected


def _independent_type(ahka: float, jlo: float) -> str:
    """CPAK type by a literal lookup table, written without cpak_cli.core.cpak."""
    col = 0 if ahka < -2.0 else (2 if ahka > 2.0 else 1)
    row = 0 if jlo < 177.0 else (2 if jlo > 183.0 else 1)
    return [["I", "II", "III"], ["IV", "V", "VI"], ["VII", "VIII", "IX"]][row][col]


def test_phantom_cpak_truth_against_an_independent_table():
    from cpak_cli.phantom import make_case

    seen = set()
    for i in range(27):
        case = make_case(5, i)
        for side, t in case.angles.items():
            # the truth's angles are the construction's, and its type the table's
            assert t["ahka"] == pytest.approx(t["mpta"] - t["ldfa"], abs=1e-9)
            assert t["jlo"] == pytest.approx(t["mpta"] + t["ldfa"], abs=1e-9)
            assert t["cpak"] == _independent_type(t["ahka"], t["jlo"]) == case.params["legs"][side]["target_cpak"]
            seen.add(t["cpak"])
    assert seen == {"I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"}
    for ldfa, mpta, expected in HAND_TABLE:
        assert _independent_type(mpta - ldfa, mpta + ldfa) == expected
