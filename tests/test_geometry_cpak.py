import math

import numpy as np
import pytest

from cpak_cli.cpak import cpak_type, is_borderline
from cpak_cli.geometry import angle_between, leg_angles, to_mm, to_px
from cpak_cli.measurement import FLAG_BORDERLINE, FLAG_GEOMETRY, measure_leg
from tests.conftest import build_leg


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
