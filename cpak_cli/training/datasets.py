"""Training samples: one context cache per (image, leg) for one joint.

Coordinates follow docs/conventions.md: image pixels ``(x, y)``, crop pixels ``(u, v)``, every
crop mapping is a 2x3 affine ``crop -> image`` built with :mod:`cpak_cli.networks.crops`.

A :class:`LegSample` keeps the joint's box enlarged by ``context`` (default 1.5) resampled once to
``round(context * S)`` pixels (the *cache*, float16 in ``[0, 1]``, never mirrored) and the
landmarks in image pixels; partly labelled legs carry :class:`Constraint` s. The training and
validation crops cut from a cache are in :mod:`cpak_cli.training.training_crops`, the step
batches in :mod:`cpak_cli.training.batches`, the data sets (files, phantom) and the splits by
image in :mod:`cpak_cli.training.sources`.

This module needs numpy/cv2 only (no torch), so data loading can run in spawned worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from cpak_cli.core.landmarks import SIDES
from cpak_cli.networks import crops

#: The cache covers the box enlarged by this factor (room for jitter + affine augmentation).
DEFAULT_CONTEXT = 1.5


@dataclass
class LegSample:
    """One leg of one image for one joint.

    ``cache``: ``(Sc, Sc)`` float16 in ``[0, 1]``; ``cache_matrix``: 2x3 cache pixel -> image pixel;
    ``box``: the joint box ``(x0, y0, x1, y1)`` in image pixels; ``points``: ``(C, 2)`` landmark
    image pixels in the model's channel order; ``spacing_mm``: ``(row_mm, col_mm)``;
    ``mirror``: ``crops.needs_mirror(side, patient_right_on_image_left)``.

    Partly labelled legs (real films with three points per leg): a landmark without a label is a
    NaN row of ``points`` (no disc target, no loss on that channel's mask) and ``constraints``
    say what IS known about the unlabelled channels, e.g. "the mid-point of the two ankle
    channels is the labelled ankle centre" (see :class:`Constraint`).
    """

    image_id: str
    side: str
    mirror: bool
    cache: np.ndarray
    cache_matrix: np.ndarray
    box: tuple[float, float, float, float]
    points: np.ndarray
    spacing_mm: tuple[float, float]
    constraints: tuple["Constraint", ...] = ()

    @property
    def points_cache(self) -> np.ndarray:
        """Landmarks in cache pixels."""
        return crops.image_to_crop(self.points, self.cache_matrix)


@dataclass(frozen=True)
class Constraint:
    """A label on a combination of channels: the mean of the probability-weighted centroids of
    ``channels`` (indices into the model's landmarks) should be ``xy`` (image pixels); the error
    counts with ``weights = (w_x, w_y)`` along the image's columns and rows (0 ignores an axis;
    on a turned crop the error is turned back first, ``PartialBatch.cons_axes``). With
    ``tolerance_mm`` > 0 the label is a band, not a point: along each axis only the part of the
    error beyond ``tolerance_mm`` counts (a label that gives a height to a few mm, e.g.).

    ``mix`` replaces the mean by other weights of ``channels``; weights that sum to 0 make the
    constraint RELATIVE: ``xy`` is then a displacement in image pixels, not a position (e.g.
    ``mix=(1, -0.5, -0.5)``, ``xy=(0, 0)``: the first channel midway between the other two)."""

    channels: tuple[int, ...]
    xy: tuple[float, float]
    weights: tuple[float, float] = (1.0, 1.0)
    tolerance_mm: float = 0.0
    mix: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mix and len(self.mix) != len(self.channels):
            raise ValueError(f"constraint: {len(self.mix)} weights for {len(self.channels)} channels")
        if self.tolerance_mm < 0:
            raise ValueError(f"constraint: negative tolerance {self.tolerance_mm} mm")

    @property
    def channel_weights(self) -> tuple[float, ...]:
        """The weight of each of ``channels`` (``mix``, or their mean)."""
        return tuple(self.mix) if self.mix else tuple(1.0 / len(self.channels) for _ in self.channels)

    @property
    def relative(self) -> bool:
        """True when the weights sum to 0: ``xy`` is a displacement."""
        return bool(self.mix) and abs(sum(self.mix)) < 1e-9



# ----------------------------------------------------------------------------- cache building


def _enlarged(box: Sequence[float], factor: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def array_reader(pixels: np.ndarray) -> Callable[[int, int, int, int], np.ndarray]:
    """A window reader over a 2-D array: ``(x0, y0, x1, y1)`` (x1, y1 exclusive) -> float32, 0 outside."""
    img = np.asarray(pixels)

    def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        h, w = img.shape
        out = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx0 < sx1 and sy0 < sy1:
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
        return out

    return read


def make_leg_sample(
    read_window: Callable[[int, int, int, int], np.ndarray],
    image_id: str,
    side: str,
    box: Sequence[float],
    points: np.ndarray,
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool,
    input_size: int,
    context: float = DEFAULT_CONTEXT,
) -> LegSample:
    """Build the context cache of one leg.

    ``read_window(x0, y0, x1, y1)`` returns the image pixels of that integer window (x1, y1
    exclusive, zeros outside the film), so a phantom only renders this region.
    """
    size = int(round(context * input_size))
    cbox = _enlarged(box, context)
    cmat = crops.crop_matrix(cbox, size, mirror=False)
    scale = max(abs(cmat[0, 0]), abs(cmat[1, 1]))
    pad = int(math.ceil(2 * max(scale, 1.0))) + 4
    wx0, wy0 = int(math.floor(cbox[0])) - pad, int(math.floor(cbox[1])) - pad
    wx1, wy1 = int(math.ceil(cbox[2])) + pad + 1, int(math.ceil(cbox[3])) + pad + 1
    window = np.asarray(read_window(wx0, wy0, wx1, wy1), dtype=np.float32)
    shifted = cmat.copy()
    shifted[:, 2] -= (wx0, wy0)
    cache = crops.sample_crop(window, shifted, size)
    peak = float(cache.max()) if cache.size else 0.0
    if peak > 0:
        cache = cache / peak
    return LegSample(
        image_id=image_id,
        side=side,
        mirror=crops.needs_mirror(side, patient_right_on_image_left),
        cache=np.clip(cache, 0.0, 1.0).astype(np.float16),
        cache_matrix=cmat,
        box=tuple(float(v) for v in box),  # type: ignore[arg-type]
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1])),
    )


def leg_samples(
    read_window: Callable[[int, int, int, int], np.ndarray],
    image_id: str,
    landmarks: dict[str, dict[str, Any]],
    boxes: dict[str, dict[str, Any]],
    joint: str,
    names: Sequence[str],
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool,
    input_size: int,
    context: float = DEFAULT_CONTEXT,
) -> tuple[list[LegSample], int]:
    """Samples of every leg that has this joint's box and all ``names`` landmarks.

    Returns ``(samples, skipped_legs)``.
    """
    out: list[LegSample] = []
    skipped = 0
    for side in SIDES:
        leg = (landmarks or {}).get(side)
        box = ((boxes or {}).get(side) or {}).get(joint)
        if leg is None and box is None:
            continue
        pts = [None if leg is None else leg.get(n) for n in names]
        if box is None or any(p is None for p in pts):
            skipped += 1
            continue
        points = np.array([[float(p[0]), float(p[1])] for p in pts], dtype=np.float64)  # type: ignore[index]
        if not np.all(np.isfinite(points)):
            skipped += 1
            continue
        out.append(
            make_leg_sample(read_window, image_id, side, box, points, spacing_mm, patient_right_on_image_left,
                            input_size, context)
        )
    return out, skipped


__all__ = ["DEFAULT_CONTEXT", "LegSample", "Constraint", "array_reader", "make_leg_sample", "leg_samples"]
