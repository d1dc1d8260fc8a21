
import numpy as np
import pytest

from cpak_cli.core.landmarks import LANDMARKS, LandmarkFile, read_landmarks, write_landmarks
from cpak_cli.errors import CpakInputError
from cpak_cli.input.boxes import BoxFile, parse_boxes, read_boxes, square_box, write_boxes
from cpak_cli.networks.crops import (
    crop_matrix,
    crop_to_image,
    disc_masks,
    image_to_crop,
    mask_radius,
    needs_mirror,
    normalize_crop,
    sample_crop,
)


def test_landmark_file_round_trip(tmp_path, leg_factory):
    lf = LandmarkFile(
        image="a.dcm", spacing_mm=(0.2, 0.1),
        legs={"right": leg_factory(87, 88), "left": {**leg_factory(90, 85, side="left"), "ankle_medial": None}},
        extra={"truth": {"right": {"ldfa": 87}}},
    )
    p = write_landmarks(tmp_path / "x.json", lf)
    back = read_landmarks(p)
    assert back.spacing_mm == (0.2, 0.1)
    assert back.legs["left"]["ankle_medial"] is None
    assert back.legs["right"]["knee_center"] == pytest.approx(lf.legs["right"]["knee_center"])
    assert back.extra["truth"]["right"]["ldfa"] == 87
    assert set(back.legs["right"]) == set(LANDMARKS)


@pytest.mark.parametrize(
    "content,reason",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"legs": {"middle": {}}}', "unknown leg side"),
        ('{"legs": {"right": {"femoral_head": [1]}}}', "femoral_head"),
        ('{"legs": {"right": {"nose": [1, 2]}}}', "unknown landmark"),
        ('{"legs": {}, "pixel_spacing_mm": [0, 1]}', "pixel_spacing_mm"),
    ],
)
def test_bad_landmark_files_give_one_line_errors(tmp_path, content, reason):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(CpakInputError) as ei:
        read_landmarks(p)
    msg = str(ei.value)
    assert reason in msg and str(p) in msg and "\n" not in msg


def test_boxes_round_trip_and_validation(tmp_path):
    bf = BoxFile(image="a.dcm", boxes={"right": {"knee": (10.0, 20.0, 110.0, 120.0)}, "left": {}})
    back = read_boxes(write_boxes(tmp_path / "b.json", bf))
    assert back.boxes["right"]["knee"] == (10.0, 20.0, 110.0, 120.0)
    with pytest.raises(CpakInputError, match="x0<x1"):
        parse_boxes({"boxes": {"right": {"knee": [5, 5, 1, 10]}}})
    with pytest.raises(CpakInputError, match="unknown joint"):
        parse_boxes({"boxes": {"right": {"elbow": [0, 0, 1, 1]}}})
    b = square_box((100.0, 200.0), 60.0, (0.2, 0.1))
    assert b == pytest.approx((-200.0, 50.0, 400.0, 350.0))


@pytest.mark.parametrize("mirror", [False, True])
def test_crop_point_round_trip_and_resampling(mirror):
    m = crop_matrix((37.25, 12.5, 237.25, 162.5), 50, mirror)
    pts = np.array([[40.0, 20.0], [100.3, 77.7], [236.0, 160.0]])
    assert np.allclose(crop_to_image(image_to_crop(pts, m), m), pts)
    # A bright pixel lands where the affine says; the mirrored crop flips u.
    img = np.zeros((200, 300), np.float32)
    img[90, 130] = 1.0
    crop = sample_crop(img, crop_matrix((100, 50, 200, 150), 100, mirror), 100)
    v, u = np.unravel_index(int(crop.argmax()), crop.shape)
    uv = image_to_crop(np.array([[130.0, 90.0]]), crop_matrix((100, 50, 200, 150), 100, mirror))[0]
    assert abs(u - uv[0]) <= 0.5 and abs(v - uv[1]) <= 0.5
    assert (u < 50) == (not mirror)


def test_sample_crop_downsampling_keeps_mean_and_reads_zero_outside():
    rng = np.random.default_rng(0)
    img = rng.random((400, 400)).astype(np.float32)
    crop = sample_crop(img, crop_matrix((0, 0, 400, 400), 50), 50)
    assert crop.mean() == pytest.approx(img.mean(), abs=0.02)
    out = sample_crop(np.ones((10, 10), np.float32), crop_matrix((100, 100, 120, 120), 8), 8)
    assert np.all(out == 0)


def test_masks_and_normalisation():
    assert mask_radius(512) == 15 and mask_radius(256) == 7.5
    masks = disc_masks(np.array([[10.0, 20.0], [np.nan, np.nan]]), 40, 3.0)
    assert masks.shape == (2, 40, 40) and masks[1].sum() == 0
    ys, xs = np.nonzero(masks[0])
    assert xs.mean() == pytest.approx(10.0) and ys.mean() == pytest.approx(20.0)
    assert masks[0].sum() == 29  # lattice points within radius 3
    n = normalize_crop(np.array([[0.0, 2.0], [1.0, 4.0]]))
    assert n.max() == 1.0 and n[0, 1] == 0.5
    assert needs_mirror("left", True) and not needs_mirror("right", True) and needs_mirror("right", False)


def test_minmax_normalisation_restores_contrast():
    washed = np.full((32, 32), 0.9, np.float32)
    washed[8:24, 8:24] = 1.0  # a bright disc on a bright background, as behind a narrow window
    by_max = normalize_crop(washed)
    assert by_max.min() == pytest.approx(0.9)  # the paper's max scaling keeps the low contrast
    stretched = normalize_crop(washed, "minmax")
    assert stretched.min() == 0.0 and stretched.max() == 1.0
    assert np.all(normalize_crop(np.full((8, 8), 0.5, np.float32), "minmax") == 0)
    with pytest.raises(ValueError):
        normalize_crop(washed, "zscore")


def test_downsampling_is_low_pass_filtered_against_aliasing():
    """A one-pixel checkerboard read at 1/4 scale must come out flat grey: without the Gaussian
    before the resampling, bilinear sampling of a pixel-period pattern keeps full contrast."""
    from cpak_cli.networks.crops import crop_matrix, sample_crop

    yy, xx = np.mgrid[0:400, 0:400]
    board = ((xx + yy) % 2).astype(np.float32)
    crop = sample_crop(board, crop_matrix((0.0, 0.0, 399.0, 399.0), 100), 100)
    inner = crop[5:-5, 5:-5]
    assert abs(float(inner.mean()) - 0.5) < 0.02
    assert float(inner.std()) < 0.02  # aliasing would leave a strong pattern (std ~0.5)


@pytest.mark.parametrize("scale", [1.25, 2.5, 5.0])
def test_a_scale_on_a_threshold_takes_one_branch_whatever_its_last_bits(scale):
    """Crops whose scale lands exactly on a branch threshold (blur at 1.25; a reduced view from
    2.5; the next level at 5.0) are the same when float noise moves the scale by 1e-15: the
    branch is decided on the steady scale, not on the last bits."""
    from cpak_cli.networks.crops import read_window, sample_crop

    rng = np.random.default_rng(3)
    film = rng.random((2048, 2048)).astype(np.float32)

    class Reduced:  # a view of ``film`` 2**level times smaller, as FilmSource.reduced gives
        def __init__(self, level):
            step = 2**level
            self.level, self.pixels = level, film[::step, ::step]
            self.to_image = np.array([[step, 0.0, 0.0], [0.0, step, 0.0]])

        def window(self, xa, ya, xb, yb):
            return read_window(self.pixels, xa, ya, xb, yb)

    class OnDemand:
        levels_used: list = []

        def window(self, xa, ya, xb, yb):
            self.levels_used.append(0)
            return read_window(film, xa, ya, xb, yb)

        def reduced(self, max_factor):
            level = int(np.floor(np.log2(max_factor))) if max_factor >= 2 else 0
            self.levels_used.append(level)
            return Reduced(level) if level > 0 else None

    crops, levels = [], []
    for nudge in (1 - 4e-16, 1.0, 1 + 4e-16):
        s = scale * nudge
        m = np.array([[s, 0.0, 300.3], [0.0, s, 401.7]])
        img = OnDemand()
        img.levels_used = []
        crops.append(sample_crop(img, m, 64))
        levels.append(img.levels_used)
    assert levels[0] == levels[1] == levels[2]
    assert np.abs(crops[0] - crops[1]).max() < 1e-5 and np.abs(crops[2] - crops[1]).max() < 1e-5
