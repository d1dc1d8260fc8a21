"""cpak_cli.evaluation.points on hand-made points (values known by construction) and the side matching of
benchmarks/evaluate_real.py."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cpak_cli.evaluation.points import (
    LegEval,
    angle_differences,
    box_centre,
    distance_mm,
    error_summary,
    evaluate_leg,
    fmt_mm,
    horizontal_distance_mm,
    joint_line_height_error_mm,
    jsonable,
    map_points_between_grids,
    midpoint,
    pred_side_for,
    quantile,
    share_within,
    summarize_legs,
    worst_legs,
)
from cpak_cli.training.pointlabels import HEAD_RADIUS_FRACTION

INF = math.inf
ALL_ANGLES = {"ldfa": 87.0, "mpta": 86.0, "ahka": -1.0, "jlo": 173.0, "mhka": 2.0}


# ----------------------------------------------------------------------------- points


def test_distance_mm_scales_columns_and_rows_separately():
    # dx = 3 px * col 1 mm = 3 mm, dy = 2 px * row 2 mm = 4 mm -> 5 mm (swapping the spacing gives 6.7)
    assert distance_mm((13.0, 22.0), (10.0, 20.0), (2.0, 1.0)) == pytest.approx(5.0)
    assert distance_mm((13.0, 22.0), (10.0, 20.0), (1.0, 2.0)) == pytest.approx(math.hypot(6.0, 2.0))


def test_distance_mm_miss_is_inf_and_no_label_is_nan():
    assert distance_mm(None, (1.0, 1.0), (1.0, 1.0)) == INF
    assert distance_mm((math.nan, 1.0), (1.0, 1.0), (1.0, 1.0)) == INF
    assert math.isnan(distance_mm((1.0, 1.0), None, (1.0, 1.0)))
    assert horizontal_distance_mm((14.0, 99.0), (10.0, 0.0), (3.0, 0.5)) == pytest.approx(2.0)
    assert horizontal_distance_mm(None, (10.0, 0.0), (1.0, 1.0)) == INF


def test_midpoint_and_box_centre():
    assert midpoint((0.0, 10.0), (4.0, 14.0)) == (2.0, 12.0)
    assert midpoint((0.0, 10.0), None) is None
    assert box_centre((10.0, 20.0, 30.0, 60.0)) == (20.0, 40.0)
    assert box_centre(None) is None


def test_map_points_between_grids_pixel_centres():
    # halving 4x4 -> 2x2: coarse pixel 0 covers fine pixels 0 and 1, its centre is fine x = 0.5
    fine = np.array([[0.5, 0.5], [2.5, 2.5]])
    coarse = map_points_between_grids(fine, (4, 4), (2, 2))
    np.testing.assert_allclose(coarse, [[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(map_points_between_grids(coarse, (2, 2), (4, 4)), fine)
    # rows and columns scale independently
    np.testing.assert_allclose(map_points_between_grids(np.array([1.5, 3.5]), (8, 4), (4, 8)), [3.5, 1.5])


def test_pred_side_for_swaps_only_on_orientation_mismatch():
    assert pred_side_for("right", True, True) == "right"
    assert pred_side_for("left", False, False) == "left"
    assert pred_side_for("right", False, True) == "left"
    assert pred_side_for("left", True, False) == "right"
    with pytest.raises(ValueError):
        pred_side_for("both", True, True)


# ----------------------------------------------------------------------------- quantiles


def test_quantile_matches_numpy_on_finite_values():
    v = np.random.default_rng(0).normal(size=37)
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile(v, q) == pytest.approx(np.percentile(v, 100 * q))


def test_quantile_counts_misses_as_infinitely_wrong():
    assert quantile([1.0, 2.0, 3.0, INF], 0.5) == pytest.approx(2.5)
    assert quantile([1.0, INF, INF], 0.5) == INF
    ten = [float(k) for k in range(9)] + [INF]
    assert quantile(ten, 0.5) == pytest.approx(4.5)
    assert quantile(ten, 0.9) == INF  # between 8 and the miss
    assert quantile([1.0, math.nan, 3.0], 0.5) == pytest.approx(2.0)
    assert math.isnan(quantile([math.nan], 0.5))
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_error_summary_and_share_within():
    s = error_summary([0.5, 1.5, 2.5, INF, math.nan])
    assert (s["n"], s["missed"]) == (4, 1)
    assert s["found_pct"] == pytest.approx(75.0)
    assert s["median"] == pytest.approx(2.0)          # of 0.5, 1.5, 2.5, inf
    assert s["p90"] == INF
    assert s["median_found"] == pytest.approx(1.5)
    assert s["p90_found"] == pytest.approx(2.3)       # 1.5 + 0.8 * (2.5 - 1.5)
    w = share_within([0.5, 1.5, 2.5, INF, math.nan], (1.0, 2.0, 3.0))
    assert w == pytest.approx({"within_1": 25.0, "within_2": 50.0, "within_3": 75.0})
    empty = error_summary([])
    assert empty["n"] == 0 and math.isnan(empty["median"])


def test_angle_differences():
    d = angle_differences({"ldfa": 88.0, "mpta": None, "ahka": None, "jlo": 170.0, "mhka": -1.0},
                          {"ldfa": 86.5, "mpta": 90.0, "ahka": None, "jlo": 170.0, "mhka": 2.0})
    assert d["ldfa"] == pytest.approx(1.5)
    assert d["mpta"] == INF
    assert math.isnan(d["ahka"])
    assert d["jlo"] == 0.0
    assert d["mhka"] == pytest.approx(3.0)


# ----------------------------------------------------------------------------- one leg


HIP_TOP, KNEE, ANKLE = (100.0, 100.0), (100.0, 500.0), (100.0, 900.0)
HEAD_R = HEAD_RADIUS_FRACTION * 400.0  # px at 1 mm: head centre lies this far below the top
LABELS = {"hip": HIP_TOP, "knee": KNEE, "ankle": ANKLE}
CENTRES = {"hip": (100.0, 100.0 + HEAD_R), "knee": KNEE, "ankle": ANKLE}


def pred_leg() -> dict[str, tuple[float, float] | None]:
    return {
        "femoral_head": (100.0, 100.0 + HEAD_R),      # exactly the estimated head centre
        "knee_center": (103.0, 504.0),               # 5 mm off
        "ankle_lateral": (90.0, 900.0),
        "ankle_medial": (110.0, 906.0),              # mid-point (100, 903): 3 mm off
    }


def test_evaluate_leg_errors_by_construction():
    leg = evaluate_leg("f1", "right", LABELS, CENTRES, (1.0, 1.0), True, pred_leg(), ALL_ANGLES, None, ["borderline"],
                       detected_centres={"hip": (100.0, 100.0 + HEAD_R), "ankle": (100.0, 890.0)})
    assert leg.measured_all
    assert leg.knee_error_mm == pytest.approx(5.0)
    assert leg.ankle_error_mm == pytest.approx(3.0)
    assert leg.hip_found and leg.hip_error_mm == pytest.approx(0.0, abs=1e-9)
    assert leg.hip_dx_top_mm == pytest.approx(0.0)
    assert leg.mhka_label == pytest.approx(0.0, abs=1e-9)  # straight labelled leg
    assert leg.mhka_error_deg == pytest.approx(2.0)
    assert leg.det_found == {"hip": True, "knee": False, "ankle": True}
    assert leg.det_error_mm == pytest.approx({"hip": 0.0, "knee": INF, "ankle": 10.0})
    row = leg.row()
    assert row["knee_error_mm"] == 5.0 and row["det_knee_found"] == 0 and row["det_knee_error_mm"] == ""
    assert row["flags"] == "borderline" and row["error"] == ""


def test_evaluate_leg_label_mhka_sign_and_spacing():
    # ankle 400*tan(5 deg) px lateral of the femoral line; right leg on the image left: lateral = -x -> valgus +5
    off = 400.0 * math.tan(math.radians(5.0))
    labels = {"hip": HIP_TOP, "knee": KNEE, "ankle": (100.0 - off, 900.0)}
    leg = evaluate_leg("f", "right", labels, {}, (1.0, 1.0), True, {}, {}, None)
    assert leg.mhka_label == pytest.approx(5.0, abs=1e-6)
    # the same picture for the patient's left leg (lateral = +x there) is varus
    assert evaluate_leg("f", "left", labels, {}, (1.0, 1.0), True, {}, {}).mhka_label == pytest.approx(-5.0, abs=1e-6)
    # angles are taken in mm: rows twice as long make the femur/tibia steeper (smaller angle)
    aniso = evaluate_leg("f", "right", labels, {}, (2.0, 1.0), True, {}, {})
    assert aniso.mhka_label == pytest.approx(math.degrees(math.atan(off / 800.0)), abs=1e-6)


def test_evaluate_leg_misses_and_partial_legs():
    pts = pred_leg()
    pts["ankle_medial"] = None
    pts["femoral_head"] = None
    angles = {"ldfa": None, "mpta": 86.0, "ahka": None, "jlo": None, "mhka": None}
    leg = evaluate_leg("f", "left", LABELS, CENTRES, (1.0, 1.0), True, pts, angles, "landmark(s) not found: x")
    assert not leg.measured_all
    assert leg.knee_error_mm == pytest.approx(5.0)
    assert leg.ankle_error_mm == INF and leg.hip_error_mm == INF and leg.hip_dx_top_mm == INF
    assert not leg.hip_found
    assert leg.mhka_error_deg == INF and leg.mhka_pred is None
    assert leg.det_found is None and leg.det_error_mm is None
    # all five angles but an error: not "measured with all angles"; one angle NaN: neither
    assert not evaluate_leg("f", "left", LABELS, CENTRES, (1.0, 1.0), True, pred_leg(), ALL_ANGLES, "err").measured_all
    nan_jlo = dict(ALL_ANGLES, jlo=math.nan)
    assert not evaluate_leg("f", "left", LABELS, CENTRES, (1.0, 1.0), True, pred_leg(), nan_jlo).measured_all
    # no ankle label: no label mHKA, the mHKA error is not applicable (NaN), not a miss
    no_ankle = evaluate_leg("f", "left", {"hip": HIP_TOP, "knee": KNEE}, CENTRES, (1.0, 1.0), True, pred_leg(), ALL_ANGLES)
    assert no_ankle.mhka_label is None and math.isnan(no_ankle.mhka_error_deg) and math.isnan(no_ankle.ankle_error_mm)


def test_joint_line_height_error_compares_rows_only():
    # condyles 4 px above, plateau margins 2 px below the label row: mean row 1 px above it
    pts = {"femoral_condyle_lateral": (70.0, 496.0), "femoral_condyle_medial": (130.0, 496.0),
           "tibial_plateau_lateral": (60.0, 502.0), "tibial_plateau_medial": (140.0, 502.0)}
    assert joint_line_height_error_mm(pts, KNEE, (1.0, 1.0)) == pytest.approx(1.0)
    # a label 20 px to one side of the knee changes nothing; rows of 0.5 mm halve it
    assert joint_line_height_error_mm(pts, (KNEE[0] + 20.0, KNEE[1]), (0.5, 1.0)) == pytest.approx(0.5)
    # a joint line on a growth plate 18 px above the joint
    plate = {n: (x, y - 18.0) for n, (x, y) in pts.items()}
    assert joint_line_height_error_mm(plate, KNEE, (1.0, 1.0)) == pytest.approx(19.0)
    assert joint_line_height_error_mm(dict(pts, tibial_plateau_medial=None), KNEE, (1.0, 1.0)) == INF
    assert math.isnan(joint_line_height_error_mm(pts, None, (1.0, 1.0)))
    leg = evaluate_leg("f", "right", LABELS, CENTRES, (1.0, 1.0), True, {**pred_leg(), **pts}, ALL_ANGLES, cpak="II")
    assert leg.knee_line_dy_mm == pytest.approx(1.0) and leg.row()["knee_line_dy_mm"] == 1.0
    assert leg.typed and leg.row()["typed"] == 1
    # all angles but the type withheld (a flag), or a type with an error: not typed
    assert not evaluate_leg("f", "right", LABELS, CENTRES, (1.0, 1.0), True, pts, ALL_ANGLES, cpak=None).typed
    assert not evaluate_leg("f", "right", LABELS, CENTRES, (1.0, 1.0), True, pts, ALL_ANGLES, "err", cpak="II").typed


# ----------------------------------------------------------------------------- many legs


def _legs() -> list[LegEval]:
    good = evaluate_leg("a", "right", LABELS, CENTRES, (1.0, 1.0), True, pred_leg(), ALL_ANGLES, cpak="V")
    half = evaluate_leg("a", "left", LABELS, CENTRES, (1.0, 1.0), True, pred_leg(), dict(ALL_ANGLES, mhka=-3.5))
    missed = evaluate_leg("b", "right", LABELS, CENTRES, (1.0, 1.0), True, {}, {}, "joint(s) not found on the film: hip")
    unlabelled = evaluate_leg("b", "left", {"knee": KNEE}, {"knee": KNEE}, (1.0, 1.0), True, pred_leg(), ALL_ANGLES)
    return [good, half, missed, unlabelled]


def test_summarize_legs():
    s = summarize_legs(_legs())
    assert s["legs"] == 4
    assert s["all_angles"] == {"count": 3, "pct": 75.0}
    assert s["typed"] == {"count": 1, "pct": 25.0}
    assert (s["knee_line"]["n"], s["knee_line"]["missed"]) == (4, 4)  # no condyle or plateau point given
    assert (s["knee"]["n"], s["knee"]["missed"]) == (4, 1)
    assert s["knee"]["median"] == pytest.approx(5.0)
    assert s["knee"]["p90"] == INF
    assert s["ankle"]["n"] == 3  # the unlabelled ankle is not counted
    m = s["mhka"]
    assert (m["n"], m["missed"]) == (3, 1)
    assert m["median"] == pytest.approx(3.5)            # 2.0, 3.5, inf
    assert m["within_1"] == 0.0
    assert m["within_2"] == pytest.approx(100 / 3)
    assert m["within_3"] == pytest.approx(100 / 3)
    assert m["bias_found"] == pytest.approx(-0.75)      # median of +2.0 and -3.5
    assert m["spread_found"] == pytest.approx(2.75)     # |2.0 + 0.75| and |-3.5 + 0.75|
    assert s["detector"] is None
    json.dumps(jsonable(s), allow_nan=False)


def test_summarize_legs_detector_rates():
    det = evaluate_leg("a", "right", LABELS, CENTRES, (1.0, 1.0), True, {}, {}, "x",
                       detected_centres={"knee": (100.0, 520.0)})
    s = summarize_legs([det, evaluate_leg("a", "left", LABELS, CENTRES, (1.0, 1.0), True, {}, {}, "x",
                                          detected_centres={"knee": (100.0, 510.0), "hip": CENTRES["hip"]})])
    assert s["detector"]["knee"]["found_pct"] == 100.0
    assert s["detector"]["knee"]["median"] == pytest.approx(15.0)
    assert s["detector"]["hip"]["found_pct"] == 50.0
    assert s["detector"]["ankle"]["missed"] == 2


def test_worst_legs_puts_misses_first_and_unlabelled_last():
    legs = _legs()
    order = [(leg.image_id, leg.side) for leg in worst_legs(legs, 4)]
    assert order == [("b", "right"), ("a", "left"), ("a", "right"), ("b", "left")]
    assert len(worst_legs(legs, 2)) == 2 and worst_legs(legs, 0) == []


def test_jsonable_and_fmt():
    assert jsonable({"a": INF, "b": [math.nan, -INF], "c": np.float32(1.5), "d": (1, 2)}) == \
        {"a": "inf", "b": [None, "-inf"], "c": 1.5, "d": [1, 2]}
    assert fmt_mm(INF) == "miss" and fmt_mm(math.nan) == "-" and fmt_mm(3.14159, "deg", 2) == "3.14 deg"


# ----------------------------------------------------------------------------- evaluate_real side matching


def _load_script(name: str):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("labels_right_on_left", [True, False])
def test_evaluate_real_matches_legs_by_image_half(tmp_path, labels_right_on_left):
    """Labels with the patient's right on the image RIGHT against a PNG the tool reads the other
    way round: the leg on the image left is still compared with the leg on the image left."""
    from cpak_cli.core.measurement import LegMeasurement
    from cpak_cli.input.loader import LoadedImage
    from cpak_cli.networks.inference import LandmarkPrediction
    from cpak_cli.pipeline.result import ScanResult
    from cpak_cli.training.pointlabels import PointLabels

    er = _load_script("evaluate_real")
    left_half = {"hip": (100.0, 100.0), "knee": (100.0, 500.0), "ankle": (100.0, 900.0)}
    right_half = {"hip": (400.0, 100.0), "knee": (400.0, 500.0), "ankle": (400.0, 900.0)}
    on_left = "right" if labels_right_on_left else "left"
    on_right = "left" if labels_right_on_left else "right"
    lab = PointLabels("f", tmp_path / "f.png", (1.0, 1.0), (1000, 500), labels_right_on_left,
                      {on_left: left_half, on_right: right_half})
    image = LoadedImage(np.zeros((1000, 500), np.float32), (1.0, 1.0), "user", True, True, None, "f.png")

    def lp(name: str, x: float, y: float) -> LandmarkPrediction:
        return LandmarkPrediction(name, x, y, x, y, True, 0.9, 0.9, 10)

    # the tool (patient's right on the image left) calls the image-left leg "right"; knee 2 px off there, 7 px on the right
    res = ScanResult("f.png", image,
                     legs={"right": LegMeasurement("right", error="x"), "left": LegMeasurement("left", error="y")},
                     landmarks={"right": {"knee_center": lp("knee_center", 102.0, 500.0)},
                                "left": {"knee_center": lp("knee_center", 407.0, 500.0)}},
                     boxes={"right": {"knee": (90.0, 490.0, 110.0, 510.0)}}, box_source="detector")
    legs = {leg.side: leg for leg in er.evaluate_film(lab, res, None)}
    assert legs[on_left].knee_error_mm == pytest.approx(2.0)
    assert legs[on_right].knee_error_mm == pytest.approx(7.0)
    assert legs[on_left].error == "x" and legs[on_right].error == "y"
    assert legs[on_left].det_error_mm["knee"] == pytest.approx(0.0)
    assert legs[on_right].det_found["knee"] is False
    # label boxes go under the tool's side names, around the labelled centres
    boxes = er.label_boxes(lab, True).boxes
    assert box_centre(boxes["right"]["knee"]) == pytest.approx(left_half["knee"])
    assert box_centre(boxes["left"]["ankle"]) == pytest.approx(right_half["ankle"])
