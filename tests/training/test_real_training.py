"""Training samples from films with three-point labels (partial supervision)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from cpak_cli.core.landmarks import JOINTS
from cpak_cli.networks.detector import DETECTOR_CHANNELS
from cpak_cli.training.pointlabels import head_centre_from_top, read_point_labels
from cpak_cli.training.real import (
    ANKLE_WIDTH_MM,
    HIP_VERTICAL_WEIGHT,
    KNEE_BANDS_MM,
    KNEE_CENTRE_BETWEEN_MM,
    leg_supervision,
    real_film_sample,
    real_leg_samples,
    training_labels,
)
from cpak_cli.training.supervision import constraint_errors_mm
from tests.factories import point_label_folder

PTS = {"hip": (100.0, 40.0), "knee": (110.0, 500.0), "ankle": (105.0, 900.0)}


def test_ankle_label_constrains_the_mid_point_of_both_channels():
    points, cons, centre = leg_supervision("ankle", JOINTS["ankle"], PTS, (0.8, 0.8), lateral_dir=-1.0)
    assert np.isnan(points).all() and centre == PTS["ankle"]
    (c, _) = cons
    assert c.channels == (0, 1) and c.xy == PTS["ankle"] and c.weights == (1.0, 1.0) and not c.relative


@pytest.mark.parametrize("lateral_dir", [-1.0, 1.0])
def test_ankle_points_must_lie_a_talar_dome_apart_on_the_legs_lateral_side(lateral_dir):
    """Both points on the plafond centre (what the mid-point constraint alone taught) or in the
    wrong order violate the width band; points a dome's width apart in the lateral direction do not."""
    sp = (0.8, 0.5)  # anisotropic: the width is along the image's columns
    _, cons, _ = leg_supervision("ankle", JOINTS["ankle"], PTS, sp, lateral_dir=lateral_dir)
    (band,) = [c for c in cons if c.relative]
    assert band.channels == (0, 1) and band.channel_weights == (1.0, -1.0) and band.weights == (1.0, 0.0)
    assert band.tolerance_mm == ANKLE_WIDTH_MM[1]
    sample = SimpleNamespace(constraints=(band,), spacing_mm=sp)
    ax, ay = PTS["ankle"]

    def error(width_mm):  # lateral point width_mm lateral of the medial one (negative: swapped)
        half = lateral_dir * width_mm / 2 / sp[1]
        return constraint_errors_mm(np.array([[ax + half, ay], [ax - half, ay]]), sample)[0]

    assert error(ANKLE_WIDTH_MM[0]) == 0.0 and error(20.0) == 0.0 and error(34.0) == 0.0
    assert error(0.0) == pytest.approx(ANKLE_WIDTH_MM[0] - ANKLE_WIDTH_MM[1])  # collapsed onto one point
    assert error(-25.0) == pytest.approx(50.0 - ANKLE_WIDTH_MM[1])  # medial/lateral swapped
    assert error(45.0) == pytest.approx(45.0 - sum(ANKLE_WIDTH_MM))


def test_hip_label_is_the_head_top_so_the_centre_lies_below_it():
    points, cons, centre = leg_supervision("hip", JOINTS["hip"], PTS, (0.8, 0.8), lateral_dir=-1.0)
    (c,) = cons
    assert np.isnan(points).all() and c.channels == (0,)
    assert c.xy == head_centre_from_top(PTS["hip"], PTS["knee"], (0.8, 0.8)) == centre
    assert c.xy[0] == PTS["hip"][0] and c.xy[1] > PTS["hip"][1]
    assert c.weights == (1.0, HIP_VERTICAL_WEIGHT)
    assert leg_supervision("hip", JOINTS["hip"], {"hip": PTS["hip"]}, (0.8, 0.8), lateral_dir=-1.0) is None  # needs the knee


def test_knee_label_gives_only_height_bands_of_the_knee_channels():
    points, cons, centre = leg_supervision("knee", JOINTS["knee"], PTS, (0.8, 0.8), lateral_dir=-1.0)
    assert np.isnan(points).all() and centre == PTS["knee"]
    names = JOINTS["knee"]
    rel = [c for c in cons if c.relative]
    assert len(rel) == 1
    by_channel = {names[c.channels[0]]: c for c in cons if not c.relative}
    assert set(by_channel) == set(KNEE_BANDS_MM) and "knee_center" not in by_channel
    for name, c in by_channel.items():
        offset_mm, half_mm = KNEE_BANDS_MM[name]
        assert len(c.channels) == 1 and c.weights == (0.0, 1.0)  # the label's x is not used
        assert c.xy == pytest.approx((PTS["knee"][0], PTS["knee"][1] + offset_mm / 0.8))
        assert c.tolerance_mm == half_mm
    # condyles above the label's row, plateau margins below it
    assert by_channel["femoral_condyle_lateral"].xy[1] < PTS["knee"][1] < by_channel["tibial_plateau_medial"].xy[1]
    # the knee centre: horizontally midway between the condyle points, within a band; never a position
    (c,) = rel
    assert [names[i] for i in c.channels] == ["knee_center", "femoral_condyle_lateral", "femoral_condyle_medial"]
    assert c.channel_weights == (1.0, -0.5, -0.5) and c.xy == (0.0, 0.0) and c.weights == (1.0, 0.0)
    assert c.tolerance_mm == KNEE_CENTRE_BETWEEN_MM
    assert leg_supervision("knee", JOINTS["knee"], {"hip": PTS["hip"]}, (0.8, 0.8), lateral_dir=-1.0) is None


def test_real_leg_samples_and_film_samples(tmp_path):
    root, rows = point_label_folder(tmp_path / "set", ids=("f1",))
    (lab,) = read_point_labels(root)
    samples, skipped = real_leg_samples((lab, "ankle", JOINTS["ankle"], 64, 1.5))
    assert skipped == 0 and {s.side for s in samples} == {"right", "left"}
    right = next(s for s in samples if s.side == "right")
    assert right.image_id == "real-f1" and not right.mirror and right.constraints
    for s in samples:  # the width band points to each leg's own lateral side (image left for the right leg)
        (band,) = [c for c in s.constraints if c.relative]
        assert np.sign(band.xy[0]) == (-1.0 if s.side == "right" else 1.0)
    mirrored, _ = real_leg_samples((replace(lab, patient_right_on_image_left=False), "ankle", JOINTS["ankle"], 64, 1.5))
    for s in mirrored:  # patient's right on the image right: its lateral side is the image right
        (band,) = [c for c in s.constraints if c.relative]
        assert np.sign(band.xy[0]) == (1.0 if s.side == "right" else -1.0)
    cx = (right.box[0] + right.box[2]) / 2
    assert cx == pytest.approx(rows[0]["imgleft_ankle_x"])  # box centred on the patient's right ankle
    fs = real_film_sample((lab, 384, 160))
    assert fs.frame.shape == (384, 160)
    k = DETECTOR_CHANNELS.index("right_knee")
    assert np.isfinite(fs.centres).all()
    assert fs.centres[k, 0] < fs.centres[DETECTOR_CHANNELS.index("left_knee"), 0]  # right on the frame's left


def test_held_out_films_never_become_samples(tmp_path):
    from cpak_cli.training.pointlabels import is_held_out

    ids = [f"id{i}" for i in range(40)]
    held = [i for i in ids if is_held_out(i)]
    assert held, "the fixture needs at least one held-out id"
    root, _ = point_label_folder(tmp_path / "set", ids=tuple(ids), size=(64, 128))
    used = {lab.image_id for lab in training_labels(root)}
    assert used == set(ids) - set(held)
