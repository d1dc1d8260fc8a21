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


def test_joint_disagreement_catches_a_joint_line_far_from_the_detected_knee():
    from cpak_cli.pipeline import joint_disagreements

    sp = (0.5, 0.5)
    det = {"knee": (0.0, 0.0, 270.0, 270.0), "ankle": (500.0, 500.0, 680.0, 680.0)}  # centres (135, 135), (590, 590)
    names = ["femoral_condyle_lateral", "femoral_condyle_medial", "tibial_plateau_lateral", "tibial_plateau_medial", "knee_center"]

    def knee_at(y, x=135.0):
        return {n: _pred(n, x + dx, y) for n, dx in zip(names, (-40.0, 40.0, -50.0, 50.0, 0.0))}

    assert joint_disagreements(det, knee_at(150.0), sp) == []  # 7.5 mm below: fine
    (msg,) = joint_disagreements(det, knee_at(165.0), sp)  # 15 mm below the detected knee
    assert "knee landmarks 15 mm below" in msg and "growth plate" in msg
    assert joint_disagreements(det, knee_at(135.0, x=200.0), sp) == []  # 32 mm to one side: not checked for the knee
    ankle = {"ankle_lateral": _pred("ankle_lateral", 560.0, 640.0), "ankle_medial": _pred("ankle_medial", 580.0, 640.0)}
    (msg,) = joint_disagreements(det, ankle, sp)  # centre (570, 640): 26.9 mm away
    assert msg.startswith("ankle landmarks 27 mm from")


def test_disagreeing_leg_is_flagged_and_untyped_through_the_measurer(monkeypatch):
    """A detector box far from where the landmarks put the knee: the leg keeps its angles, gets
    the flag and no CPAK type."""
    import numpy as np

    from cpak_cli import pipeline
    from cpak_cli.dicom_io import LoadedImage
    from tests.conftest import build_leg

    sp = (0.5, 0.5)
    pts = build_leg(88.0, 88.0, "right", spacing_mm=sp)
    preds = {"right": {n: _pred(n, x, y) for n, (x, y) in pts.items()}}

    def fake_detect(images, boxes, spacings, models, **kw):
        return [preds]

    monkeypatch.setattr(pipeline, "detect_landmarks", fake_detect)
    kx, ky = pts["knee_center"]
    boxes = {"right": {"hip": (pts["femoral_head"][0] - 120, pts["femoral_head"][1] - 120, pts["femoral_head"][0] + 120, pts["femoral_head"][1] + 120),
                       "knee": (kx - 135, ky - 135 - 60, kx + 135, ky + 135 - 60),  # detector knee 30 mm higher
                       "ankle": (pts["ankle_lateral"][0] - 90, pts["ankle_lateral"][1] - 90, pts["ankle_lateral"][0] + 90, pts["ankle_lateral"][1] + 90)}}
    det = pipeline.DetectorModel(module=None, width=160, height=384)
    m = pipeline.Measurer(models={}, detector=det, need_detector=False, recentre=False)
    monkeypatch.setattr(m, "detect_boxes", lambda images: [boxes])
    img = LoadedImage.__new__(LoadedImage)
    for k, v in dict(path="x.dcm", pixels=np.zeros((4000, 1000), np.float32), spacing_mm=sp, spacing_source="PixelSpacing",
                     patient_right_on_image_left=True, assumed_orientation=False).items():
        object.__setattr__(img, k, v)
    leg = m.measure(img).legs["right"]
    assert pipeline.FLAG_JOINT_DISAGREEMENT in leg.flags and leg.cpak is None
    assert leg.ldfa is not None and any("knee landmarks" in n for n in leg.notes)
