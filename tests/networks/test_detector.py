import math

import numpy as np
import pytest

from cpak_cli.core.landmarks import JOINTS as JOINTS_
from cpak_cli.networks.crops import image_to_crop
from cpak_cli.networks.detector import (
    DETECTOR_CHANNELS,
    boxes_from_detections,
    decode_detections,
    detector_frame,
    detector_input,
    detector_targets,
    joint_centres,
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


def test_touching_knees_count_as_two_when_hips_and_ankles_show_both_legs():
    """Knock-kneed knees 36 mm apart (less than the 40 mm two joints normally need) are two knees
    on a film whose hips and ankles show both legs, and one knee where nothing else shows two or
    where both blobs are the right knee's (a split blob, not the left knee)."""
    spacing = (0.15, 0.15)
    f = detector_frame((4000, 1600), spacing, True, width=96, height=256)
    knees = {"right": (680.0, 2000.0), "left": (920.0, 2005.0)}  # 240 px = 36 mm apart
    both_legs = {"right": {"hip": (450.0, 600.0), "knee": knees["right"], "ankle": (500.0, 3600.0)},
                 "left": {"hip": (1150.0, 600.0), "knee": knees["left"], "ankle": (1100.0, 3600.0)}}
    dets = decode_detections(detector_targets(both_legs, f), f, spacing)
    for side in ("right", "left"):
        assert dets[side]["knee"].center[0] == pytest.approx(knees[side][0], abs=15)
    only_knees = {side: {"knee": xy} for side, xy in knees.items()}
    dets = decode_detections(detector_targets(only_knees, f), f, spacing)
    assert sum("knee" in joints for joints in dets.values()) == 1  # no other joint shows two legs
    # the left knee missed and the right knee's blob split in two (both in the right channel): no left knee
    split_legs = {"right": dict(both_legs["right"]), "left": {j: both_legs["left"][j] for j in ("hip", "ankle")}}
    t = detector_targets(split_legs, f)
    k = DETECTOR_CHANNELS.index("right_knee")
    t[k] = np.maximum(t[k], 0.8 * detector_targets({"right": {"knee": knees["left"]}}, f)[k])
    dets = decode_detections(t, f, spacing)
    assert "knee" not in dets["left"] and dets["right"]["knee"].center[0] == pytest.approx(knees["right"][0], abs=15)


def test_single_leg_film_by_laterality_keeps_one_side():
    spacing = (0.15, 0.15)
    f = detector_frame((4000, 1000), spacing, True, width=64, height=256)
    t = detector_targets({"right": {"hip": (500.0, 600.0), "knee": (520.0, 2000.0), "ankle": (530.0, 3600.0)}}, f)
    # the network also fires, weaker, for the other side's ankle at a different place
    t[DETECTOR_CHANNELS.index("left_ankle")] = np.roll(t[DETECTOR_CHANNELS.index("right_ankle")], 20, axis=1) * 0.9
    dets = decode_detections(t, f, spacing, single_side="right")
    assert set(dets) == {"right"} and set(dets["right"]) == {"hip", "knee", "ankle"}
    assert dets["right"]["ankle"].center[0] == pytest.approx(530.0, abs=30)


# ------------------------------------------------------------------ laterality from the image (issue 9)

from cpak_cli.networks.detector import CHAIN_MAX_TILT_DEG, chain_problems, decode_film  # noqa: E402

SP2 = (0.5, 0.5)
RIGHT = {"hip": (300.0, 200.0), "knee": (330.0, 1100.0), "ankle": (340.0, 1860.0)}  # image left: patient's right
LEFT = {"hip": (700.0, 205.0), "knee": (670.0, 1105.0), "ankle": (660.0, 1865.0)}


def _film(centres, shape=(2100, 1000), sp=SP2):
    f = detector_frame(shape, sp, True, width=96, height=256)
    return f, detector_targets(centres, f)


def _conflicts(film, side):
    return [n for fl, n in film.problems.get(side, []) if fl == "laterality_conflict"]


@pytest.mark.parametrize("tag", ["R", "L"])
def test_both_legs_tagged_one_side_are_paired_by_position_and_flagged(tag):
    """Review case: a bilateral film tagged R (or L) paired the left hip with the right knee.
    Now both legs are decoded by position and the tag raises laterality_conflict."""
    f, t = _film({"right": RIGHT, "left": LEFT})
    film = decode_film(t, f, SP2, tag)
    assert film.legs_on_film == 2 and set(film.joints) == {"right", "left"}
    for side, truth in (("right", RIGHT), ("left", LEFT)):
        for joint, (x, y) in truth.items():
            c = film.joints[side][joint].center
            assert c == pytest.approx((x, y), abs=12.0)
        assert _conflicts(film, side) and film.laterality_conflict
        assert not [n for fl, n in film.problems[side] if fl == "implausible_geometry"]
    assert any("shows both" in n for n in film.notes)
    # the same film tagged B or untagged: no conflict
    for ok in ("B", None):
        assert not decode_film(t, f, SP2, ok).problems
    # the legacy wrapper with single_side no longer takes one blob per joint on a bilateral film
    dets = decode_detections(t, f, SP2, single_side="right")
    assert dets["left"]["hip"].center[0] == pytest.approx(700.0, abs=12.0)
    assert dets["right"]["hip"].center[0] == pytest.approx(300.0, abs=12.0)


def test_single_leg_tag_against_the_side_channels():
    """Review case: the image's left half (patient's right leg) tagged L. The side channels say
    right: the leg is the right one and the tag raises laterality_conflict."""
    f, t = _film({"right": RIGHT}, shape=(2100, 400))  # 200 mm wide: no midline evidence
    film = decode_film(t, f, SP2, "L")
    assert set(film.joints) == {"right"} and film.legs_on_film == 1
    assert film.evidence == {"channels": "right"}
    (note,) = _conflicts(film, "right")
    assert "ImageLaterality L" in note and "shows the right" in note
    assert not decode_film(t, f, SP2, "R").problems  # tag agrees
    assert not decode_film(t, f, SP2, None).problems  # no tag: the image decides alone


def test_single_leg_with_mute_channels_is_named_by_the_tag_but_flagged():
    f, t = _film({"right": RIGHT}, shape=(2100, 400))
    for j in JOINTS_:
        r, l_ = DETECTOR_CHANNELS.index(f"right_{j}"), DETECTOR_CHANNELS.index(f"left_{j}")
        t[l_] = t[r] * 0.9  # both channels see the leg: 53 % right, below SIDE_EVIDENCE_SHARE
    film = decode_film(t, f, SP2, "L")
    assert film.evidence == {} and set(film.joints) == {"left"}
    (note,) = _conflicts(film, "left")  # the side is unconfirmed: flagged all the same
    assert "does not tell" in note and "ImageLaterality L" in note
    film = decode_film(t, f, SP2, None)
    assert set(film.joints) == {"right"} and "stronger channel" in _conflicts(film, "right")[0]


def test_single_leg_midline_evidence_on_a_wide_film():
    """A single leg far on the input's left of a bilateral-width film is the patient's right."""
    f, t = _film({"right": RIGHT})  # 500 mm wide, leg about 180 mm left of the centre
    film = decode_film(t, f, SP2, "L", film_width_mm=500.0)
    assert film.evidence == {"channels": "right", "midline": "right"} and _conflicts(film, "right")
    # the channels say left, the position says right: the evidence disagrees -> conflict
    tl = t[[3, 4, 5, 0, 1, 2]]
    film = decode_film(tl, f, SP2, None, film_width_mm=500.0)
    assert film.evidence == {"channels": "left", "midline": "right"}
    (note,) = _conflicts(film, "left")
    assert "disagrees" in note
    # a narrow film has no midline evidence
    assert "midline" not in decode_film(t, f, SP2, None, film_width_mm=250.0).evidence


def test_a_joint_of_the_other_leg_breaks_the_chain():
    """One joint never pairs silently with another leg's: the left hip with the right knee and
    ankle (one leg on the film, e.g. the other leg's hip alone visible) is refused."""
    f, t = _film({"right": {"hip": LEFT["hip"], "knee": RIGHT["knee"], "ankle": RIGHT["ankle"]}})
    film = decode_film(t, f, SP2, None)
    (fl, note), = film.problems["right"]
    assert fl == "implausible_geometry" and "hip and knee not on one vertical chain" in note


def test_chain_tolerance():
    from cpak_cli.networks.detector import DetectedJoint

    def leg(hx):
        pts = {"hip": (hx, 0.0), "knee": (0.0, 900.0), "ankle": (20.0, 1660.0)}  # 0.5 mm: femur 450 mm
        return {j: DetectedJoint("right", j, c, 1.0, (0, 0, 1, 1)) for j, c in pts.items()}

    limit_px = 900.0 * math.tan(math.radians(CHAIN_MAX_TILT_DEG))
    assert chain_problems(leg(limit_px - 2), SP2) == []
    assert len(chain_problems(leg(limit_px + 2), SP2)) == 1
    assert chain_problems(leg(-(limit_px - 2)), SP2) == []
    upside = {j: d for j, d in leg(0.0).items()}
    upside["ankle"] = type(upside["ankle"])("right", "ankle", (0.0, 100.0), 1.0, (0, 0, 1, 1))
    assert any("knee and ankle" in n for n in chain_problems(upside, SP2))  # ankle above the knee
