import numpy as np
import pytest

from cpak_cli.crops import image_to_crop
from cpak_cli.detector import (
    DETECTOR_CHANNELS, boxes_from_detections, decode_detections, detector_frame, detector_input,
    detector_targets, joint_centres,
)


@pytest.mark.parametrize("prl", [True, False])
@pytest.mark.parametrize("spacing", [(0.15, 0.15), (0.2, 0.1)])
def test_frame_maps_film_isotropically_and_back(prl, spacing):
    shape = (3000, 1200)
    f = detector_frame(shape, spacing, prl, width=96, height=256)
    corners = np.array([[0.0, 0.0], [1199.0, 2999.0]])
    uv = image_to_crop(corners, f.matrix)
    assert np.all(uv >= -0.5) and np.all(uv[:, 0] <= 95.5) and np.all(uv[:, 1] <= 255.5)
    # isotropic in mm: one frame pixel is the same number of mm along both axes
    m = f.matrix
    assert abs(m[0, 0]) * spacing[1] == pytest.approx(abs(m[1, 1]) * spacing[0])
    # a film shown the other way round is mirrored so that the patient's right is on the left
    assert (m[0, 0] < 0) == (not prl)


def test_targets_and_decoding_round_trip():
    spacing = (0.15, 0.15)
    f = detector_frame((4000, 1600), spacing, True, width=96, height=256)
    legs = {
        "right": {"femoral_head": (400.0, 600.0), "femoral_condyle_lateral": (380, 2000), "femoral_condyle_medial": (520, 2000),
                  "tibial_plateau_lateral": (380, 2050), "tibial_plateau_medial": (520, 2050), "knee_center": (450, 2030),
                  "ankle_lateral": (430, 3600), "ankle_medial": (510, 3600)},
        "left": {"femoral_head": (1200.0, 610.0)},
    }
    centres = joint_centres(legs)
    assert set(centres["right"]) == {"hip", "knee", "ankle"} and set(centres["left"]) == {"hip"}
    assert centres["right"]["knee"] == pytest.approx((450.0, 2026.0))
    t = detector_targets(centres, f)
    assert t.shape == (6, 256, 96) and t[DETECTOR_CHANNELS.index("left_knee")].sum() == 0
    dets = decode_detections(t, f, spacing)
    assert set(dets["right"]) == {"hip", "knee", "ankle"} and set(dets["left"]) == {"hip"}
    c = dets["right"]["knee"].center
    assert c[0] == pytest.approx(450.0, abs=3 * f.mm_per_px / 0.15) and c[1] == pytest.approx(2026.0, abs=3 * f.mm_per_px / 0.15)
    box = boxes_from_detections(dets)["right"]["knee"]
    assert (box[2] - box[0]) * 0.15 == pytest.approx(135.0)


def test_detector_input_is_normalised_and_shaped():
    img = np.random.default_rng(0).random((500, 200)).astype(np.float32)
    f = detector_frame(img.shape, (0.2, 0.2), True, width=64, height=128)
    x = detector_input(img, f)
    assert x.shape == (128, 64) and x.max() == pytest.approx(1.0) and x.min() >= 0


def test_a_joint_both_channels_see_goes_to_the_right_leg():
    """Both knee channels fire on both knees (the network confuses sides): positions decide."""
    spacing = (0.15, 0.15)
    f = detector_frame((4000, 1600), spacing, True, width=96, height=256)
    centres = {"right": {"knee": (450.0, 2000.0)}, "left": {"knee": (1150.0, 2010.0)}}
    t = detector_targets(centres, f)
    k_r, k_l = DETECTOR_CHANNELS.index("right_knee"), DETECTOR_CHANNELS.index("left_knee")
    both = np.maximum(t[k_r], t[k_l])
    t[k_r], t[k_l] = both * 0.6, both  # the left channel is stronger on BOTH knees
    dets = decode_detections(t, f, spacing)
    assert dets["right"]["knee"].center[0] == pytest.approx(450.0, abs=20)
    assert dets["left"]["knee"].center[0] == pytest.approx(1150.0, abs=20)
    # a single knee (single-leg film) is named by the channel that holds more of it
    t1 = detector_targets({"left": {"knee": (800.0, 2000.0)}}, f)
    assert set(decode_detections(t1, f, spacing)) == {"left"}


def test_single_leg_film_by_laterality_keeps_one_side():
    spacing = (0.15, 0.15)
    f = detector_frame((4000, 1000), spacing, True, width=64, height=256)
    t = detector_targets({"right": {"hip": (500.0, 600.0), "knee": (520.0, 2000.0), "ankle": (530.0, 3600.0)}}, f)
    # the network also fires, weaker, for the other side's ankle at a different place
    t[DETECTOR_CHANNELS.index("left_ankle")] = np.roll(t[DETECTOR_CHANNELS.index("right_ankle")], 20, axis=1) * 0.9
    dets = decode_detections(t, f, spacing, single_side="right")
    assert set(dets) == {"right"} and set(dets["right"]) == {"hip", "knee", "ankle"}
    assert dets["right"]["ankle"].center[0] == pytest.approx(530.0, abs=30)
