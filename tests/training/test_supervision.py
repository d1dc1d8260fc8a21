"""Targets and loss for fully and partly labelled crops; the batch workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpak_cli.networks.crops import disc_masks
from cpak_cli.training.batches import MAX_CONSTRAINTS, make_partial_batch
from cpak_cli.training.datasets import Constraint, LegSample
from cpak_cli.training.supervision import (
    BatchSource,
    LandmarkBatches,
    constraint_errors_mm,
    disc_targets,
    landmark_batch,
    partial_loss,
    soft_centroids,
)
from cpak_cli.training.trainer import dice_bce_loss
from cpak_cli.training.training_crops import AugmentOptions


def test_disc_targets_equal_numpy_masks_with_nan_and_per_sample_radius():
    pts = np.array([[[10.3, 20.7], [np.nan, np.nan]], [[31.0, 5.5], [0.0, 0.0]]], dtype=np.float32)
    t = disc_targets(torch.from_numpy(pts), 40, 48, torch.tensor([3.0, 5.5])).numpy()
    assert np.array_equal(t[0], disc_masks(pts[0], (48, 40), 3.0))
    assert np.array_equal(t[1], disc_masks(pts[1], (48, 40), 5.5))
    assert t[0, 1].sum() == 0


def test_partial_loss_equals_dice_bce_when_everything_is_labelled():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 32, 32)
    pts = torch.tensor([[[5.0, 6.0], [20.0, 21.0]], [[10.0, 10.0], [30.0, 2.0]], [[16.0, 16.0], [1.0, 30.0]]])
    target = disc_targets(pts, 32, 32, 4.0)
    assert float(partial_loss(logits, pts, 4.0)) == pytest.approx(float(dice_bce_loss(logits, target)), rel=1e-6)


def test_unlabelled_channels_carry_no_loss():
    torch.manual_seed(1)
    logits = torch.randn(1, 2, 32, 32)
    pts = torch.tensor([[[5.0, 6.0], [float("nan"), float("nan")]]])
    base = float(partial_loss(logits, pts, 4.0))
    changed = logits.clone()
    changed[0, 1] += 5.0
    assert float(partial_loss(changed, pts, 4.0)) == pytest.approx(base)
    changed[0, 0] += 5.0
    assert float(partial_loss(changed, pts, 4.0)) != pytest.approx(base)


def _blob_logits(centres, size=64, c=2):
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    out = torch.full((1, c, size, size), -12.0)
    for k, (u, v) in enumerate(centres):
        out[0, k][(xx - u) ** 2 + (yy - v) ** 2 <= 9] = 12.0
    return out


def test_soft_centroids_find_blobs():
    cen = soft_centroids(_blob_logits([(10.0, 40.0), (50.0, 12.0)]))[0]
    assert np.allclose(cen.numpy(), [[10.0, 40.0], [50.0, 12.0]], atol=0.05)


def test_constraint_term_pulls_the_channel_mean_to_the_target_per_axis():
    nan = float("nan")
    pts = torch.full((1, 2, 2), nan)
    mix = torch.tensor([[[0.5, 0.5]]])
    target = torch.tensor([[[30.0, 26.0]]])
    w = torch.tensor([[[1.0, 1.0]]])
    at = partial_loss(_blob_logits([(20.0, 26.0), (40.0, 26.0)]), pts, 4.0, mix, target, w)
    off = partial_loss(_blob_logits([(26.0, 26.0), (46.0, 26.0)]), pts, 4.0, mix, target, w)
    far = partial_loss(_blob_logits([(36.0, 26.0), (56.0, 26.0)]), pts, 4.0, mix, target, w)
    assert float(at) < 1e-3 < float(off) < float(far)
    # an axis with weight 0 is ignored: a vertical-only constraint does not see a horizontal shift
    w_y = torch.tensor([[[0.0, 1.0]]])
    assert float(partial_loss(_blob_logits([(36.0, 26.0), (56.0, 26.0)]), pts, 4.0, mix, target, w_y)) < 1e-3


def test_a_band_constraint_is_silent_inside_its_tolerance_and_pulls_outside():
    nan = float("nan")
    pts = torch.full((1, 1, 2), nan)
    mix = torch.tensor([[[1.0]]])
    target = torch.tensor([[[30.0, 30.0]]])
    w_y = torch.tensor([[[0.0, 1.0]]])
    tol = torch.tensor([[6.0]])  # crop pixels
    inside = partial_loss(_blob_logits([(10.0, 35.0)], c=1), pts, 4.0, mix, target, w_y, cons_tol=tol)
    edge = partial_loss(_blob_logits([(10.0, 24.5)], c=1), pts, 4.0, mix, target, w_y, cons_tol=tol)
    outside = partial_loss(_blob_logits([(10.0, 12.0)], c=1), pts, 4.0, mix, target, w_y, cons_tol=tol)
    point = partial_loss(_blob_logits([(10.0, 35.0)], c=1), pts, 4.0, mix, target, w_y)  # the same, no tolerance
    assert float(inside) < 1e-3 and float(edge) < 1e-3
    assert float(outside) > float(point) > 1e-3
    # beyond the band the loss is that of a point label moved by the tolerance
    moved = partial_loss(_blob_logits([(10.0, 12.0)], c=1), pts, 4.0, mix, torch.tensor([[[30.0, 24.0]]]), w_y)
    assert float(outside) == pytest.approx(float(moved), rel=1e-4)


def _samples(n=3, size=48):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        cache = rng.random((72, 72)).astype(np.float16)
        m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        pts = np.array([[30.0 + i, 35.0], [np.nan, np.nan]])
        cons = (Constraint((0, 1), (36.0, 36.0), (1.0, 0.3)),) if i % 2 else ()
        out.append(LegSample(f"img{i}", "right", bool(i % 2), cache, m, (12.0, 12.0, 60.0, 60.0), pts, (0.5, 0.5), cons))
    return out


def test_partial_batch_carries_points_and_constraints():
    s = _samples()
    b = make_partial_batch(s, [0, 1, 2], 48, AugmentOptions(jitter=0.0, affine_p=0.0, intensity=False), 0, 0)
    assert b.x.shape == (3, 48, 48) and b.points_uv.shape == (3, 2, 2)
    assert np.isnan(b.points_uv[:, 1]).all() and np.isfinite(b.points_uv[:, 0]).all()
    assert np.allclose(b.cons_mix[1, 0], [0.5, 0.5]) and b.cons_w[0].sum() == 0
    assert np.allclose(b.cons_w[1, 0], [1.0, 0.3])
    assert b.cons_tol.shape == (3, MAX_CONSTRAINTS) and not b.cons_tol.any()  # point labels


def test_partial_batch_gives_band_tolerances_in_crop_pixels():
    s = _samples()[1]
    s.constraints = (Constraint((0,), (36.0, 36.0), (0.0, 1.0), tolerance_mm=3.0),)
    b = make_partial_batch([s], [0], 24, AugmentOptions(jitter=0.0, affine_p=0.0, intensity=False), 0, 0)
    # box 48 image px of 0.5 mm on a 24 px crop: 1 mm per crop pixel
    assert b.cons_tol[0, 0] == pytest.approx(3.0, rel=1e-6)


def test_a_height_band_stays_a_band_of_image_rows_on_a_rotated_crop():
    import math

    nan = float("nan")
    pts = torch.full((1, 1, 2), nan)
    mix = torch.tensor([[[1.0]]])
    w_y = torch.tensor([[[0.0, 1.0]]])
    tol = torch.tensor([[4.0]])
    # a crop turned 10 degrees: a point on the target's IMAGE row, 40 crop px to its side, lies
    # 40 * sin(10 deg) = 6.9 crop px off the target in the crop's v, more than the 4 px band
    a = math.radians(10.0)
    axes = torch.tensor([[[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]])  # crop -> image
    target = torch.tensor([[[10.0, 30.0]]])
    along_row = (10.0 + 40.0 * math.cos(a), 30.0 - 40.0 * math.sin(a))  # image displacement (40, 0)
    blob = _blob_logits([along_row], c=1)
    assert float(partial_loss(blob, pts, 4.0, mix, target, w_y, cons_tol=tol, cons_axes=axes)) < 1e-3
    assert float(partial_loss(blob, pts, 4.0, mix, target, w_y, cons_tol=tol)) > 1e-3  # read in crop axes


def test_crop_axes_in_image_are_a_rotation_or_a_reflection():
    s = _samples()[1]
    for mirror in (False, True):
        s.mirror = mirror
        b = make_partial_batch([s], [0], 24, AugmentOptions(jitter=0.0, affine_p=1.0, rotation_deg=10.0,
                                                            intensity=False), 0, 3)
        r = b.cons_axes[0].astype(np.float64)
        assert np.allclose(r @ r.T, np.eye(2), atol=1e-5)
        assert np.linalg.det(r) == pytest.approx(-1.0 if mirror else 1.0, abs=1e-5)
    plain = make_partial_batch([s], [0], 24, AugmentOptions(jitter=0.0, affine_p=0.0, intensity=False), 0, 0)
    assert np.allclose(plain.cons_axes[0], [[-1.0, 0.0], [0.0, 1.0]])  # mirrored, not turned


def test_constraints_are_checked_and_never_dropped():
    with pytest.raises(ValueError, match="2 weights for 3 channels"):
        Constraint((0, 1, 2), (0.0, 0.0), mix=(1.0, -1.0))
    with pytest.raises(ValueError, match="negative tolerance"):
        Constraint((0,), (0.0, 0.0), tolerance_mm=-1.0)
    s = _samples()[1]
    s.constraints = tuple(Constraint((0,), (36.0, 36.0)) for _ in range(MAX_CONSTRAINTS + 1))
    with pytest.raises(ValueError, match="constraints, at most"):
        make_partial_batch([s], [0], 24, AugmentOptions(jitter=0.0, affine_p=0.0, intensity=False), 0, 0)


def test_a_relative_constraint_is_a_displacement_in_the_crop():
    s = _samples()[1]
    # channel 0 midway between channels 0 and 1 would be degenerate; use weights (1, -1): x0 - x1 = 4 image px
    s.constraints = (Constraint((0, 1), (4.0, 0.0), (1.0, 0.0), mix=(1.0, -1.0)),)
    assert s.constraints[0].relative and not Constraint((0, 1), (4.0, 0.0)).relative
    for mirror in (False, True):
        s.mirror = mirror
        b = make_partial_batch([s], [0], 24, AugmentOptions(jitter=0.0, affine_p=0.0, intensity=False), 0, 0)
        assert np.allclose(b.cons_mix[0, 0], [1.0, -1.0])
        # box of 48 image px on a 24 px crop: 4 image px are 2 crop px (sign flips on a mirrored crop),
        # whatever the crop's offset
        assert b.cons_uv[0, 0] == pytest.approx([-2.0 if mirror else 2.0, 0.0], abs=1e-6)
    # the error: x0 - x1 against 4 px of 0.5 mm
    assert constraint_errors_mm(np.array([[30.0, 0.0], [20.0, 5.0]]), s) == [pytest.approx(3.0)]
    assert constraint_errors_mm(np.array([[30.0, 0.0], [26.0, 5.0]]), s) == [pytest.approx(0.0)]


def test_batch_workers_give_the_same_batches():
    state = LandmarkBatches(_samples(), 48, AugmentOptions(domain=1.0), seed=3, norm="minmax", batch_size=2)
    with BatchSource(landmark_batch, state, workers=0) as src:
        inline = list(src.batches(0, 4))
    with BatchSource(landmark_batch, state, workers=2) as src:
        pooled = list(src.batches(0, 4))
    for a, b in zip(inline, pooled):
        assert np.array_equal(a.x, b.x) and np.array_equal(a.points_uv, b.points_uv, equal_nan=True)
        assert np.array_equal(a.cons_uv, b.cons_uv)


def test_constraint_errors_mm_axes_and_misses():
    s = _samples()[1]  # constraint: mean of channels 0 and 1 at (36, 36), weights (1, 0.3): x only
    xy = np.array([[30.0, 50.0], [40.0, 10.0]])  # mean (35, 30): x off by 1 px = 0.5 mm
    assert constraint_errors_mm(xy, s) == [pytest.approx(0.5)]
    assert constraint_errors_mm(np.array([[np.nan, np.nan], [40.0, 10.0]]), s) == [float("inf")]
    # a band counts only what lies beyond its tolerance
    band = Constraint((0,), (36.0, 36.0), (0.0, 1.0), tolerance_mm=2.0)
    s.constraints = (band,)
    assert constraint_errors_mm(np.array([[0.0, 39.0], [0.0, 0.0]]), s) == [0.0]  # 1.5 mm off
    assert constraint_errors_mm(np.array([[0.0, 44.0], [0.0, 0.0]]), s) == [pytest.approx(2.0)]  # 4 mm off
