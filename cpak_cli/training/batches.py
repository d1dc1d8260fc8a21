"""One training step's batch: the deterministic sample order and the augmented crops of a step.

Every sample's random draws come from :func:`sample_rng` ``(seed, step, k)``, so a batch is a pure
function of seed and step (``resume`` repeats an uninterrupted run). :func:`make_batch` gives
crops and disc masks, :func:`make_partial_batch` the same crops with landmark points (crop pixels
``(u, v)``, NaN = not labelled) and constraints, for masks drawn on the device. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cpak_cli.training.datasets import LegSample
from cpak_cli.training.training_crops import AugmentOptions, crop_axes_in_image, training_crop

#: Most constraints one leg sample may carry (the batch arrays are padded to this).
MAX_CONSTRAINTS = 6


def sample_rng(seed: int, step: int, k: int) -> np.random.Generator:
    """The RNG of the ``k``-th sample of step ``step``: a pure function of (seed, step, k)."""
    return np.random.default_rng([int(seed), int(step), int(k), 0xC9A4])


class BatchOrder:
    """Deterministic sample order: epochs of seeded permutations; batch ``step`` takes positions
    ``step*B .. step*B+B-1`` of that endless sequence (a pure function of seed and step)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([int(self.seed), int(epoch), 0x5EED]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        start = step * self.batch_size
        return [int(self._perm(p // self.n)[p % self.n]) for p in range(start, start + self.batch_size)]


def make_batch(
    samples: Sequence[LegSample], indices: Sequence[int], size: int, radius: float, aug: AugmentOptions,
    seed: int, step: int, norm: str = "max",
) -> tuple[np.ndarray, np.ndarray]:
    """``(x (B, 3, S, S), y (B, C, S, S))`` float32 for one step."""
    xs, ys = [], []
    for k, i in enumerate(indices):
        tc = training_crop(samples[i], size, radius, aug, sample_rng(seed, step, k), norm)
        assert tc.masks is not None
        xs.append(tc.image)
        ys.append(tc.masks)
    x = np.repeat(np.stack(xs)[:, None], 3, axis=1)
    return np.ascontiguousarray(x, dtype=np.float32), np.stack(ys).astype(np.float32)


@dataclass
class PartialBatch:
    """One step's batch for (partly) labelled samples; the disc masks are drawn on the device.

    ``x`` (B, S, S) float16 crops; ``points_uv`` (B, C, 2) landmark crop pixels, NaN where not
    labelled; ``cons_mix`` (B, K, C) channel weights of each constraint (rows sum to 1, or to 0 for a relative one; zero rows
    unused), ``cons_uv`` (B, K, 2) its target in crop pixels, ``cons_w`` (B, K, 2) axis weights,
    ``cons_tol`` (B, K) its tolerance in crop pixels (0 = a point label), ``cons_axes`` (B, 2, 2)
    the crop's axes in the image: a crop-pixel displacement ``d`` is ``cons_axes @ d`` along the
    image's columns and rows (in crop pixels; a rotation, or a reflection on a mirrored crop), so
    that axis weights and tolerances apply to image rows and columns on a rotated crop too."""

    x: np.ndarray
    points_uv: np.ndarray
    cons_mix: np.ndarray
    cons_uv: np.ndarray
    cons_w: np.ndarray
    cons_tol: np.ndarray
    cons_axes: np.ndarray


def make_partial_batch(
    samples: Sequence[LegSample], indices: Sequence[int], size: int, aug: AugmentOptions, seed: int, step: int,
    norm: str = "max",
) -> PartialBatch:
    """The step's crops exactly as :func:`make_batch` draws them (same RNG per sample), with
    labels as points and constraints instead of masks (works for fully labelled samples too)."""
    xs, pts, mix, cuv, cw, ctol, axes = [], [], [], [], [], [], []
    for k, i in enumerate(indices):
        s = samples[i]
        tc = training_crop(s, size, None, aug, sample_rng(seed, step, k), norm)  # masks are drawn on the device
        c = len(s.points)
        m = np.zeros((MAX_CONSTRAINTS, c), np.float32)
        uv = np.zeros((MAX_CONSTRAINTS, 2), np.float32)
        w = np.zeros((MAX_CONSTRAINTS, 2), np.float32)
        tol = np.zeros(MAX_CONSTRAINTS, np.float32)
        if len(tc.extra["constraints"]) > MAX_CONSTRAINTS:
            raise ValueError(f"{s.image_id} {s.side}: {len(tc.extra['constraints'])} constraints, at most {MAX_CONSTRAINTS}")
        for j, (con, target_uv, tol_px) in enumerate(tc.extra["constraints"]):
            m[j, list(con.channels)] = con.channel_weights
            uv[j] = target_uv
            w[j] = con.weights
            tol[j] = tol_px
        xs.append(tc.image.astype(np.float16))
        pts.append(tc.points_uv.astype(np.float32))
        mix.append(m)
        cuv.append(uv)
        cw.append(w)
        ctol.append(tol)
        axes.append(crop_axes_in_image(tc.matrix, s.spacing_mm))
    return PartialBatch(np.stack(xs), np.stack(pts), np.stack(mix), np.stack(cuv), np.stack(cw), np.stack(ctol),
                        np.stack(axes))


__all__ = ["MAX_CONSTRAINTS", "sample_rng", "BatchOrder", "make_batch", "PartialBatch", "make_partial_batch"]
