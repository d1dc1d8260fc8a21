"""The three-point label format: reading, patient sides, head centre, held-out split."""

from __future__ import annotations

import csv
import hashlib
import math

import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.training.pointlabels import (
    HEAD_RADIUS_FRACTION,
    HOLDOUT_FRACTION,
    HOLDOUT_SEED,
    head_centre_from_top,
    holdout_split,
    is_held_out,
    joint_centres,
    load_pixels,
    read_point_labels,
)
from tests.factories import point_label_folder


def test_read_maps_image_sides_to_patient_sides(tmp_path):
    root, rows = point_label_folder(tmp_path / "set")
    labels = read_point_labels(root)
    assert [lab.image_id for lab in labels] == ["a1", "b2", "c3"]
    lab = labels[1]
    assert lab.spacing_mm == (0.9, 0.9) and lab.shape == (320, 160) and lab.patient_right_on_image_left
    # display convention: the leg on the image's left is the patient's right
    assert lab.legs["right"]["hip"] == (rows[1]["imgleft_hip_x"], rows[1]["imgleft_hip_y"])
    assert lab.legs["left"]["ankle"] == (rows[1]["imgright_ankle_x"], rows[1]["imgright_ankle_y"])
    px = load_pixels(lab)
    assert px.shape == (320, 160) and px.max() == pytest.approx(1.0)


def test_flipped_column_and_missing_points(tmp_path):
    root, rows = point_label_folder(tmp_path / "set", ids=("x",))
    rows[0]["patient_right_on_image_left"] = 0
    rows[0]["imgright_ankle_x"] = ""
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lab = read_point_labels(root)[0]
    assert not lab.patient_right_on_image_left
    assert lab.legs["left"]["hip"][0] == rows[0]["imgleft_hip_x"]  # image left = patient's left now
    assert "ankle" not in lab.legs["right"] and "ankle" in lab.legs["left"]


@pytest.mark.parametrize("change, needle", [
    ({"pixel_spacing_mm": "0"}, "spacing"),
    ({"pixel_spacing_mm": "abc"}, "not a number"),
    ({"id": ""}, "empty id"),
    ({"id": "nofile"}, "image not found"),
])
def test_bad_rows_are_one_line_errors(tmp_path, change, needle):
    root, rows = point_label_folder(tmp_path / "set", ids=("x",))
    rows[0].update(change)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(CpakInputError) as ei:
        read_point_labels(root)
    assert needle in str(ei.value) and "\n" not in str(ei.value) and "labels.csv:2" in str(ei.value)


def test_no_labels_file(tmp_path):
    with pytest.raises(CpakInputError, match="no labels.csv"):
        read_point_labels(tmp_path)


def test_head_centre_below_top_by_fraction_of_femur():
    # anisotropic spacing: 300 rows x 0.5 mm + 40 cols x 0.2 mm between head top and knee
    top, knee, sp = (100.0, 50.0), (140.0, 350.0), (0.5, 0.2)
    dist_mm = math.hypot(40 * 0.2, 300 * 0.5)
    c = head_centre_from_top(top, knee, sp)
    assert c[0] == 100.0  # straight below the most superior point
    assert (c[1] - 50.0) * 0.5 == pytest.approx(HEAD_RADIUS_FRACTION * dist_mm)


def test_joint_centres_use_estimated_head_centre(tmp_path):
    root, _ = point_label_folder(tmp_path / "set", ids=("x",))
    lab = read_point_labels(root)[0]
    jc = joint_centres(lab)
    assert jc["right"]["knee"] == lab.legs["right"]["knee"]
    assert jc["right"]["hip"][1] > lab.legs["right"]["hip"][1]


def test_held_out_is_a_property_of_the_id():
    ids = [f"film{i:04d}" for i in range(2000)]
    train, held = holdout_split(ids)
    assert not set(train) & set(held) and len(train) + len(held) == 2000
    assert abs(len(held) / 2000 - HOLDOUT_FRACTION) < 0.03
    # a subset keeps every film on its side (copying part of a set cannot leak held-out films)
    sub_train, sub_held = holdout_split(ids[:300])
    assert set(sub_held) == set(held) & set(ids[:300])
    # independent restatement of the rule
    iid = held[0]
    h = int(hashlib.sha1(f"{HOLDOUT_SEED}:{iid}".encode()).hexdigest()[:12], 16) / 16**12
    assert is_held_out(iid) and h < HOLDOUT_FRACTION
