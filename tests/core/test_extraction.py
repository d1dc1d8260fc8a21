"""Tests for cpak_cli.core.extraction: synthetic probability maps with known sub-pixel centres.

Maps are non-square (H != W) and centres have different non-integer x and y, so an x/y swap or
a row/column mix-up fails loudly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpak_cli.core.extraction import METHODS, PointEstimate, extract_point, extract_points, label_components

H, W = 96, 144  # rows, columns: deliberately non-square


def disc(
    x0: float, y0: float, radius: float, *, amp: float = 1.0, soft: float = 0.5,
    shape: tuple[int, int] = (H, W),
) -> np.ndarray:
    """Smooth disc ``amp / (1 + exp((r - R) / soft))`` centred at pixel (x0 = col, y0 = row)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r = np.hypot(xx - x0, yy - y0)
    return amp / (1.0 + np.exp(np.clip((r - radius) / soft, -60.0, 60.0)))


def err(e: PointEstimate, x0: float, y0: float) -> float:
    return math.hypot(e.x - x0, e.y - y0)


# ---------------------------------------------------------------- accuracy on clean discs

# (x0, y0, R): x far from y so a swap is obvious; R spans the 7-15 px mask sizes.
CASES = [(101.37, 40.62, 7.0), (52.8, 61.15, 9.5), (70.25, 33.7, 12.3), (88.61, 47.42, 15.0)]
RNG_CASES = [
    (float(x), float(y), float(r))
    for x, y, r in np.random.default_rng(7).uniform((30, 25, 7), (110, 70, 15), size=(16, 3))
]
# Worst-case error bounds (px) on clean discs, measured on 1200 random discs (R 7-15,
# edge softness 0.5-2 px) with margin. Methods 2/3 cut the disc at a threshold on the pixel
# lattice, 4/5 are unweighted lattice centroids, so they cannot be exact.
TOL = {1: 0.01, 2: 0.13, 3: 0.13, 4: 0.3, 5: 0.75}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("x0,y0,radius", CASES)
def test_clean_disc_accuracy(method: int, x0: float, y0: float, radius: float) -> None:
    e = extract_point(disc(x0, y0, radius), method)
    assert e.found
    assert err(e, x0, y0) < TOL[method], (e, x0, y0)
    assert e.peak == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < e.confidence <= 1.0
    assert e.area_px > 0


@pytest.mark.parametrize("method", [1, 2, 3])
def test_weighted_methods_median_error_below_005(method: int) -> None:
    errors = [err(extract_point(disc(x, y, r), method), x, y) for x, y, r in RNG_CASES]
    assert np.median(errors) < 0.05
    assert max(errors) < TOL[method]


def test_method3_is_subpixel_and_not_rounded() -> None:
    # A rounding/int bug would put both at integer values.
    e = extract_point(disc(60.3, 30.7, 10.0), 3)
    assert abs(e.x - 60.3) < 0.1 and abs(e.y - 30.7) < 0.1
    assert abs(e.x - round(e.x)) > 0.1 and abs(e.y - round(e.y)) > 0.1


def test_xy_order_on_non_square_map() -> None:
    # Disc near the right edge of a wide map: x must be large, y small.
    x0, y0 = 130.4, 12.6
    e = extract_point(disc(x0, y0, 8.0), 3)
    assert e.x == pytest.approx(x0, abs=0.13)
    assert e.y == pytest.approx(y0, abs=0.13)
    assert e.xy == (e.x, e.y)


def test_method5_saturated_plateau_gives_cluster_centre() -> None:
    # Clipped network output: a plateau of exact 1.0 values; argmax alone would be its
    # first pixel in raster order (top-left of the plateau), the cluster centroid is the centre.
    yy, xx = np.mgrid[0:H, 0:W]
    p = np.clip(disc(70.0, 40.0, 12.0) * 1.5, 0.0, 1.0)
    plateau = p >= 1.0
    e = extract_point(p, 5)
    assert e.found
    assert e.area_px == int(plateau.sum()) > 1
    assert e.x == pytest.approx(xx[plateau].mean()) and e.y == pytest.approx(yy[plateau].mean())
    assert err(e, 70.0, 40.0) < 1e-9  # symmetric plateau about an integer centre


def test_method4_opening_removes_small_specks() -> None:
    x0, y0 = 60.4, 50.3
    p = disc(x0, y0, 10.0)
    p[5, 130] = p[6, 131] = 0.9  # 2-pixel speck above 0.5: removed by the r=2 opening
    e4 = extract_point(p, 4)
    assert err(e4, x0, y0) < TOL[4]


# ---------------------------------------------------------------- noise and spurious blobs


def test_noise_robustness_method3() -> None:
    rng = np.random.default_rng(0)
    x0, y0 = 77.35, 41.8
    p = np.clip(disc(x0, y0, 11.0) + rng.normal(0.0, 0.05, (H, W)), 0.0, 1.0)
    e = extract_point(p, 3)
    assert e.found and err(e, x0, y0) < 0.2
    for m in (2, 4):
        assert err(extract_point(p, m), x0, y0) < 0.35


def test_spurious_blob_method3_ignores_method1_pulled() -> None:
    x0, y0 = 45.3, 60.7  # true landmark, R = 11, peak 1.0
    bx, by = 115.0, 20.0  # weaker, smaller spurious blob, peak 0.7 (> half-max 0.5)
    clean = disc(x0, y0, 11.0)
    p = np.maximum(clean, disc(bx, by, 6.0, amp=0.7))

    e3 = extract_point(p, 3)
    assert e3.found and err(e3, x0, y0) < TOL[3]
    # Same answer as without the blob: the blob is a separate, smaller component.
    assert (e3.x, e3.y) == pytest.approx(extract_point(clean, 3).xy, abs=1e-9)
    e2 = extract_point(p, 2)
    assert err(e2, x0, y0) < TOL[2]

    e1 = extract_point(p, 1)
    assert err(e1, x0, y0) > 5.0  # pulled a long way
    # ... and towards the blob.
    to_blob = np.array([bx - x0, by - y0])
    shift = np.array([e1.x - x0, e1.y - y0])
    assert shift @ to_blob / (np.linalg.norm(shift) * np.linalg.norm(to_blob)) > 0.99

    # Confidence drops when a second blob competes, but stays > 0.
    c_clean = extract_point(clean, 3).confidence
    assert 0.0 < e3.confidence < c_clean
    assert c_clean == pytest.approx(1.0, abs=1e-6)
    # All methods report the same (map-level) confidence.
    confidences = {round(extract_point(p, m).confidence, 12) for m in METHODS}
    assert confidences == {round(e3.confidence, 12)}


def test_component_tie_prefers_higher_mass() -> None:
    # Two identical-size binary-ish blobs; the one with more mass wins for method 3.
    p = np.zeros((40, 60))
    p[10:15, 10:15] = 0.8  # mass 20
    p[20:25, 40:45] = 0.9  # same size, mass 22.5 -> wins (max 0.9, threshold 0.45)
    e = extract_point(p, 3)
    assert (e.x, e.y) == pytest.approx((42.0, 22.0))
    assert e.area_px == 25


def test_8_connectivity() -> None:
    # A diagonal chain is one 8-connected component (it would be 5 components with 4-connectivity)
    p = np.zeros((20, 30))
    for i in range(5):
        p[5 + i, 10 + i] = 1.0
    p[15:17, 25:27] = 1.0  # 4 px blob: smaller than the 5 px diagonal
    e = extract_point(p, 3)
    assert e.area_px == 5
    assert (e.x, e.y) == pytest.approx((12.0, 7.0))


def test_label_components_numbers_like_scipy() -> None:
    """The OpenCV labelling gives scipy.ndimage.label's labels (8-connected, raster order of each
    component's first pixel) exactly, on sparse and dense random masks with many components."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    for _ in range(60):
        rows, cols = (int(v) for v in rng.integers(1, 120, 2))
        mask = (rng.random((rows, 2 * cols)) < rng.uniform(0.05, 0.7))[:, ::2]  # a strided view
        want, n_want = ndimage.label(mask, structure=np.ones((3, 3), bool))
        got, n = label_components(mask)
        assert n == n_want and np.array_equal(got, want)
    labels, n = label_components(np.zeros((0, 5), bool))
    assert n == 0 and labels.shape == (0, 5)
    with pytest.raises(ValueError):
        label_components(np.zeros((2, 2, 2), bool))


# ---------------------------------------------------------------- not found


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fill", [0.0, 0.6])
def test_flat_channel_not_found(method: int, fill: float) -> None:
    e = extract_point(np.full((H, W), fill), method)
    assert not e.found
    assert math.isnan(e.x) and math.isnan(e.y)
    assert e.area_px == 0 and e.confidence == 0.0
    assert e.peak == pytest.approx(fill)


@pytest.mark.parametrize("method", METHODS)
def test_below_min_peak_not_found(method: int) -> None:
    p = disc(50.5, 40.5, 10.0, amp=0.25)
    e = extract_point(p, method)
    assert not e.found and math.isnan(e.x) and math.isnan(e.y)
    assert e.peak == pytest.approx(0.25, abs=1e-6)
    # Lowering min_peak lets the methods without a fixed 0.5 threshold find it.
    for m in (1, 3, 5):
        assert extract_point(p, m, min_peak=0.2).found


@pytest.mark.parametrize("method", [2, 4])
def test_fixed_half_threshold_methods_need_peak_above_05(method: int) -> None:
    p = disc(50.5, 40.5, 10.0, amp=0.45)  # peak >= min_peak but never > 0.5
    e = extract_point(p, method)
    assert not e.found and math.isnan(e.x) and e.peak == pytest.approx(0.45, abs=1e-6)
    assert extract_point(p, 3).found


def test_method4_opening_can_empty_the_region() -> None:
    p = np.zeros((30, 40))
    p[10:12, 10:30] = 0.9  # 2-px-thin line: no r=2 disc fits -> nothing left
    e = extract_point(p, 4)
    assert not e.found and math.isnan(e.x)
    assert extract_point(p, 3).found


def test_nan_input_treated_as_zero() -> None:
    p = disc(50.2, 30.9, 9.0)
    p[0, :5] = np.nan
    e = extract_point(p, 3)
    assert e.found and err(e, 50.2, 30.9) < TOL[3]
    assert not extract_point(np.full((10, 12), np.nan), 3).found


# ---------------------------------------------------------------- API


def test_extract_points_channels_in_order() -> None:
    centres = [(30.2, 20.7), (100.6, 70.1), (70.4, 45.5)]
    probs = np.stack([disc(x, y, 9.0) for x, y in centres] + [np.zeros((H, W))]).astype(np.float32)
    out = extract_points(probs)
    assert len(out) == 4
    for e, (x, y) in zip(out[:3], centres):
        assert e.found and err(e, x, y) < TOL[3]
    assert not out[3].found


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        extract_point(np.zeros((5, 5)), method=6)
    with pytest.raises(ValueError):
        extract_point(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError):
        extract_points(np.zeros((5, 5)))


def test_point_estimate_is_frozen() -> None:
    e = extract_point(disc(50.0, 40.0, 8.0))
    with pytest.raises(AttributeError):
        e.x = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- non-zero minimum, tie-break order


def test_method3_threshold_is_half_way_between_min_and_max() -> None:
    # A map whose minimum is 0.55: the half-max threshold is (0.55 + 1) / 2 = 0.775, which keeps
    # the disc; max / 2 = 0.5 would keep the whole map and put the point at the map's centre.
    x0, y0 = 30.4, 70.6
    p = 0.55 + 0.45 * disc(x0, y0, 9.0)
    e = extract_point(p, 3)
    assert e.found and err(e, x0, y0) < TOL[3]
    assert e.area_px == int(np.count_nonzero(p > 0.775))
    assert e.area_px < 0.05 * p.size
    # the confidence's dominance uses the same threshold: one blob above it -> peak
    assert e.confidence == pytest.approx(p.max(), abs=1e-9)


def test_method3_threshold_with_a_raised_floor_and_a_second_blob() -> None:
    # Floor 0.3, peak 1.0: threshold 0.65. A 0.6 plateau (above max/2 = 0.5, below 0.65) joins
    # the disc into one big component only under the wrong threshold.
    p = np.full((H, W), 0.3)
    p[:, 60:] = 0.6
    p = np.maximum(p, disc(100.3, 48.2, 8.0))
    e = extract_point(p, 3)
    assert err(e, 100.3, 48.2) < TOL[3] and e.area_px < 300


def test_component_tie_break_pixel_count_before_mass() -> None:
    # Blob A: 36 px at 0.55 (mass 19.8); blob B: 25 px at 1.0 (mass 25). Threshold 0.5 keeps
    # both; the larger pixel count wins although B has more mass.
    p = np.zeros((40, 60))
    p[5:11, 5:11] = 0.55
    p[25:30, 40:45] = 1.0
    for method in (2, 3):
        e = extract_point(p, method)
        assert e.area_px == 36 and (e.x, e.y) == pytest.approx((7.5, 7.5)), method
    # equal count and mass: the first component in raster order
    q = np.zeros((40, 60))
    q[20:24, 5:9] = 0.9
    q[3:7, 40:44] = 0.9
    e = extract_point(q, 3)
    assert (e.x, e.y) == pytest.approx((41.5, 4.5))
