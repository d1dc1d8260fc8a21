"""Training targets and loss for fully and partly labelled crops, and the batch workers.

A :class:`cpak_cli.training.batches.PartialBatch` carries landmark points (NaN = not labelled) and
constraints instead of masks; :func:`partial_loss` draws the disc masks on the device (exactly
:func:`cpak_cli.networks.crops.disc_masks`: a pixel is foreground when its centre lies within the radius)
and computes

- Dice + BCE over the LABELLED channels only (uniform weights; with every channel labelled this
  equals :func:`cpak_cli.training.trainer.dice_bce_loss`), plus
- for each constraint, the distance between the mean of the probability-weighted centroids of its
  channels (weights ``p**2`` of the sigmoid, which follows the blob Method 3 reads) and its target,
  less its tolerance along each axis (a band label; 0 for a point), in units of 1 % of the crop
  side, Huber-smoothed, weighted per axis, times ``constraint_weight``. Axes are the IMAGE's
  columns and rows (``cons_axes`` turns the crop's displacement back on a rotated crop), so a
  height band stays a band of image rows however the crop was turned.

:class:`BatchSource` builds the batches of consecutive steps in worker processes (each batch is a
pure function of seed and step, so the result does not depend on the number of workers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

import numpy as np

from cpak_cli.training.batches import BatchOrder, PartialBatch, make_partial_batch
from cpak_cli.training.datasets import LegSample
from cpak_cli.training.training_crops import AugmentOptions

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Weight of the constraint term against Dice + BCE. The first GPU run (2026-11-26) used 0.5: an
#: unmet constraint then outweighed the segmentation loss many times over, and the ankle network
#: found a shortcut (both ankle channels on one point, whose mid-point it could place on real
#: films) that broke it on phantoms; the knee network learned a similar one. 0.05 keeps the
#: constraint a nudge that the segmentation targets of the phantom dominate.
CONSTRAINT_WEIGHT = 0.05


def disc_targets(points_uv: "torch.Tensor", height: int, width: int, radius: "float | torch.Tensor") -> "torch.Tensor":
    """``(B, C, H, W)`` float masks: 1 where a pixel centre lies within ``radius`` of its point
    (``points_uv`` (B, C, 2) crop pixels; NaN rows give empty masks; ``radius`` a number or a
    (B,) tensor, one per sample)."""
    import torch

    dev = points_uv.device
    if isinstance(radius, torch.Tensor):
        radius = radius.float().to(dev).view(-1, 1, 1, 1)
    gx = torch.arange(width, device=dev, dtype=torch.float32).view(1, 1, 1, width)
    gy = torch.arange(height, device=dev, dtype=torch.float32).view(1, 1, height, 1)
    u = points_uv[..., 0].float().unsqueeze(-1).unsqueeze(-1)
    v = points_uv[..., 1].float().unsqueeze(-1).unsqueeze(-1)
    d2 = (gx - u) ** 2 + (gy - v) ** 2
    return (d2 <= radius * radius).float()  # NaN compares False: empty mask


def soft_centroids(logits: "torch.Tensor") -> "torch.Tensor":
    """``(B, C, 2)`` probability-weighted centroids ``(u, v)`` in crop pixels, weights ``sigmoid**2``."""
    import torch

    p = torch.sigmoid(logits.float()) ** 2
    b, c, h, w = p.shape
    mass = p.sum(dim=(2, 3)).clamp_min(1e-6)
    gx = torch.arange(w, device=p.device, dtype=torch.float32)
    gy = torch.arange(h, device=p.device, dtype=torch.float32)
    u = (p.sum(dim=2) * gx).sum(dim=-1) / mass
    v = (p.sum(dim=3) * gy).sum(dim=-1) / mass
    return torch.stack([u, v], dim=-1)


def partial_loss(
    logits: "torch.Tensor", points_uv: "torch.Tensor", radius: float, cons_mix: "torch.Tensor | None" = None,
    cons_uv: "torch.Tensor | None" = None, cons_w: "torch.Tensor | None" = None,
    constraint_weight: float = CONSTRAINT_WEIGHT, eps: float = 1.0, cons_tol: "torch.Tensor | None" = None,
    cons_axes: "torch.Tensor | None" = None,
) -> "torch.Tensor":
    """Dice + BCE on labelled channels + the constraint term (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    b, c, h, w = logits.shape
    target = disc_targets(points_uv, h, w, radius)
    known = torch.isfinite(points_uv).all(dim=-1).float()  # (B, C)
    n_known = known.sum()
    loss = logits.new_zeros(())
    if float(n_known) > 0:
        bce_map = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(2, 3))
        p = torch.sigmoid(logits)
        inter = (p * target).sum(dim=(2, 3))
        denom = p.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
        dice = 1.0 - (2.0 * inter + eps) / (denom + eps)
        loss = loss + ((dice + bce_map) * known).sum() / n_known
    if cons_mix is not None and cons_uv is not None and cons_w is not None and float(cons_w.abs().sum()) > 0:
        cen = soft_centroids(logits)  # (B, C, 2)
        pred = torch.einsum("bkc,bcd->bkd", cons_mix.float(), cen)
        diff = pred - cons_uv.float()
        if cons_axes is not None:  # crop axes -> image columns and rows
            diff = torch.einsum("bij,bkj->bki", cons_axes.float(), diff)
        if cons_tol is not None:  # a band: only what lies beyond the tolerance counts
            diff = torch.sign(diff) * F.relu(diff.abs() - cons_tol.float().unsqueeze(-1))
        err = diff / (0.01 * max(h, w))
        hub = F.smooth_l1_loss(err, torch.zeros_like(err), reduction="none", beta=1.0)
        wts = cons_w.float()
        active = (wts.sum(dim=-1) > 0).float().sum().clamp_min(1.0)
        loss = loss + constraint_weight * (hub * wts).sum() / active
    return loss


def batch_tensors(batch: PartialBatch, device: Any) -> dict[str, "torch.Tensor"]:
    """The batch on ``device``: ``x`` (B, 3, S, S) float32 (the grey crop repeated) and the labels."""
    import torch

    x = torch.from_numpy(batch.x).to(device, non_blocking=True).float().unsqueeze(1).expand(-1, 3, -1, -1)
    return {
        "x": x.contiguous(),
        "points_uv": torch.from_numpy(batch.points_uv).to(device),
        "cons_mix": torch.from_numpy(batch.cons_mix).to(device),
        "cons_uv": torch.from_numpy(batch.cons_uv).to(device),
        "cons_w": torch.from_numpy(batch.cons_w).to(device),
        "cons_tol": torch.from_numpy(batch.cons_tol).to(device),
        "cons_axes": torch.from_numpy(batch.cons_axes).to(device),
    }


# ----------------------------------------------------------------------------- batch workers

_WORKER: dict[str, Any] = {}


def _init_worker(make: Callable[[Any, int], Any], state: Any) -> None:
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    _WORKER.update(make=make, state=state)


def _make(step: int) -> Any:
    return _WORKER["make"](_WORKER["state"], step)


@dataclass
class LandmarkBatches:
    """What a worker needs to build landmark batches (picklable)."""

    samples: list[LegSample]
    size: int
    aug: AugmentOptions
    seed: int
    norm: str
    batch_size: int

    def __post_init__(self) -> None:
        self.order = BatchOrder(len(self.samples), self.batch_size, self.seed)


def landmark_batch(state: LandmarkBatches, step: int) -> PartialBatch:
    """Step ``step``'s batch of :class:`LandmarkBatches` (a pure function of seed and step)."""
    return make_partial_batch(state.samples, state.order.indices(step), state.size, state.aug, state.seed, step,
                              state.norm)


B = TypeVar("B")


class BatchSource(Generic[B]):
    """Batches ``make(state, step)`` of steps ``start..end-1`` in order; with ``workers > 1`` built
    ahead in a spawned process pool (at most ``2 * workers`` in flight; ``make`` must be a module
    level function and ``state`` picklable). Use as a context manager."""

    def __init__(self, make: Callable[[Any, int], B], state: Any, workers: int = 0) -> None:
        self.args = (make, state)
        self.workers = int(workers)
        self.pool: Any = None

    def __enter__(self) -> "BatchSource[B]":
        if self.workers > 1:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(self.workers, initializer=_init_worker, initargs=self.args)
        else:
            _init_worker(*self.args)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def batches(self, start: int, end: int) -> Iterator[B]:
        if self.pool is None:
            for step in range(start, end):
                yield _make(step)
            return
        from collections import deque

        ahead = max(2, 2 * self.workers)
        pending: deque = deque()
        nxt = start
        while nxt < end or pending:
            while nxt < end and len(pending) < ahead:
                pending.append(self.pool.apply_async(_make, (nxt,)))
                nxt += 1
            yield pending.popleft().get()


def constraint_errors_mm(
    xy_pred: np.ndarray, sample: LegSample, min_weight: float = 0.5,
) -> list[float]:
    """Errors (mm) of a sample's constraints given predicted channel points ``xy_pred`` (C, 2) in
    image pixels: Euclidean when both axes weigh >= ``min_weight``, else along the axis that does;
    a constraint with neither axis that heavy is not evaluated. NaN predictions give ``inf``. A
    band (``tolerance_mm`` > 0) counts only what lies beyond its tolerance along each axis."""
    out = []
    for con in sample.constraints:
        axes = [a for a in (0, 1) if con.weights[a] >= min_weight]
        if not axes:
            continue
        p = np.asarray(con.channel_weights) @ xy_pred[list(con.channels)]
        d = (p - np.asarray(con.xy)) * np.array([sample.spacing_mm[1], sample.spacing_mm[0]])
        if con.tolerance_mm > 0:
            d = np.sign(d) * np.maximum(np.abs(d) - con.tolerance_mm, 0.0)
        e = float(np.hypot(*d)) if len(axes) == 2 else float(abs(d[axes[0]]))
        out.append(e if math.isfinite(e) else math.inf)
    return out


__all__ = ["CONSTRAINT_WEIGHT", "disc_targets", "soft_centroids", "partial_loss", "batch_tensors", "BatchSource",
           "LandmarkBatches", "landmark_batch",
           "constraint_errors_mm"]
