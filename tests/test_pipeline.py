"""Pipeline helpers: re-centring detector boxes on the joint the landmarks found."""

from __future__ import annotations

import math

from cpak_cli.inference import LandmarkPrediction
from cpak_cli.pipeline import recentred_boxes


def _pred(name, x, y, found=True):
    return LandmarkPrediction(name, x, y, x * 0.5, y * 0.4, found, 0.9, 0.9, 50)


def test_box_moves_onto_the_found_joint_centre_anisotropic():
    sp = (0.4, 0.5)  # (row_mm, col_mm)
    boxes = {"right": {"ankle": (100.0, 200.0, 280.0, 425.0)}}  # 90 mm square: 180 cols, 225 rows
    # ankle centre = mid-point of the two ankle points = (200, 320): 10 cols (5 mm) right, 7.5 rows (3 mm) down
    preds = {"right": {"ankle_lateral": _pred("ankle_lateral", 180.0, 320.0), "ankle_medial": _pred("ankle_medial", 220.0, 320.0)}}
    moved = recentred_boxes(boxes, preds, sp, min_shift_mm=4.0)
    x0, y0, x1, y1 = moved["right"]["ankle"]
    assert (x0 + x1) / 2 == 200.0 and (y0 + y1) / 2 == 320.0
    assert math.isclose(x1 - x0, 180.0) and math.isclose(y1 - y0, 225.0)  # same size


def test_small_shift_missing_points_and_far_points_leave_the_box():
    sp = (0.5, 0.5)
    boxes = {"right": {"ankle": (0.0, 0.0, 180.0, 180.0)}}
    near = {"right": {"ankle_lateral": _pred("ankle_lateral", 85.0, 92.0), "ankle_medial": _pred("ankle_medial", 97.0, 92.0)}}
    assert recentred_boxes(boxes, near, sp, min_shift_mm=4.0) == {}  # 1.1 mm from the centre
    lost = {"right": {"ankle_lateral": _pred("ankle_lateral", 10.0, 10.0, found=False),
                      "ankle_medial": _pred("ankle_medial", 20.0, 10.0)}}
    assert recentred_boxes(boxes, lost, sp) == {}
    far = {"right": {"ankle_lateral": _pred("ankle_lateral", 179.0, 179.0), "ankle_medial": _pred("ankle_medial", 179.0, 179.0)}}
    assert recentred_boxes(boxes, far, sp) == {}  # 63 mm away: more than half the 90 mm side
