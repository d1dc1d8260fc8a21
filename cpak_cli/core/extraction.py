"""Turn one landmark channel's probability map into one point (paper Section II.D, Methods 1-5).

Coordinates: every point is ``(x, y)`` in the *probability map's* pixel grid, ``x = column``,
``y = row``, origin at the centre of pixel ``[0, 0]`` (so ``prob[r, c]`` sits at ``(x=c, y=r)``);
see docs/conventions.md. Mapping crop points back to the image is ``cpak_cli.networks.crops``' job.

Methods (``method=``):

1. Probability-weighted centroid of the whole map (paper eq. 3).
2. Largest 8-connected component of ``prob > 0.5``, probability-weighted centroid over it
   (Meng et al. / Gai et al.).
3. *Default, the paper's method.* Threshold at the half value between the channel's minimum and
   maximum (``prob > (min + max) / 2``), keep the largest 8-connected component,
   probability-weighted centroid over that component.
4. Binary ``prob > 0.5``, morphological opening with a disc of radius 2 (13-pixel structuring
   element, ``dx**2 + dy**2 <= 4``), unweighted centroid of *all* pixels left after the opening
   (Sanchez et al.). The paper skips the opening for single-pixel (r = 0) masks; this module
   always applies it, because cpak-cli's models use disc masks.
5. Argmax (Hsu et al.). All pixels within ``1e-6`` of the maximum form the "max cluster"; the
   largest 8-connected group of them is kept and its unweighted centroid returned (a saturated
   plateau of 1.0 values, typical for r >= 7 masks, yields its centre, not its first pixel).

Component ties (methods 2, 3, 5): the larger pixel count wins; equal counts -> the larger
probability mass; still equal -> the first component in raster order.

"Not found" (``found=False``, ``x = y = NaN``, ``area_px = 0``, ``confidence = 0``) when the
channel's maximum is below ``min_peak``, the channel is flat (``max - min <= 1e-12``, e.g. all
zeros), or the method's region is empty (e.g. method 2/4 with a peak <= 0.5, or an opening that
removes everything). No point is ever invented.

Confidence (all methods, so it is comparable across methods): ``peak * dominance`` clipped to
[0, 1], where ``dominance`` is the share of probability mass above the half-max threshold
``(min + max) / 2`` that lies in the largest component of that half-max mask (the component
method 3 keeps). One clean blob -> dominance 1; a second blob above half-max of similar mass ->
about 0.5. Background below half-max (noise, soft tails) does not lower it.

Input values are used as given except that NaN/inf become 0 and negative values are clipped to 0
(weights must be non-negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

METHODS: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)

_FLAT_EPS: Final[float] = 1e-12
_MAX_TIE_ATOL: Final[float] = 1e-6
_DISC_R2: Final[np.ndarray] = (
    (np.arange(-2, 3)[:, None] ** 2 + np.arange(-2, 3)[None, :] ** 2) <= 4
)


@dataclass(frozen=True)
class PointEstimate:
    """One landmark estimate in probability-map pixels ``(x = column, y = row)``.

    ``x``/``y`` are NaN when not found. ``peak`` is the channel's maximum probability (reported
    even when not found; NaN-free input assumed, NaN/inf were replaced by 0). ``area_px`` is the
    number of pixels in the region the point was computed from (method 1: pixels with prob > 0;
    methods 2/3: the kept component; method 4: pixels left after opening; method 5: the kept max
    cluster), 0 when not found. ``confidence`` is in [0, 1] (see module docstring), 0 when not
    found.
    """

    x: float
    y: float
    found: bool
    peak: float
    area_px: int
    confidence: float

    @property
    def xy(self) -> tuple[float, float]:
        """``(x, y)`` pair (NaN, NaN when not found)."""
        return (self.x, self.y)


def _not_found(peak: float) -> PointEstimate:
    return PointEstimate(
        x=math.nan, y=math.nan, found=False, peak=float(peak), area_px=0, confidence=0.0
    )


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Tight bounding box of the True pixels of a 2-D mask as slices, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


@dataclass(frozen=True)
class _Region:
    """A pixel region stored as a mask inside its bounding box ``box`` of the full map."""

    mask: np.ndarray  # bool, shape of the box
    box: tuple[slice, slice]

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2-D boolean mask: ``(labels, n)`` with ``labels`` int32 of the
    mask's shape, 0 on background and ``1..n`` numbered in raster order of each component's
    first pixel, exactly as ``scipy.ndimage.label(mask, structure=np.ones((3, 3)))`` numbers them.

    OpenCV's SAUF labelling (``CCL_WU``: a raster scan whose union-find keeps the smaller
    provisional label, then sequential relabelling), which keeps scipy's order; importing OpenCV
    also costs a fraction of importing ``scipy.ndimage``.
    """
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if m.size == 0:
        return np.zeros(m.shape, np.int32), 0
    n, labels = cv2.connectedComponentsWithAlgorithm(m, 8, cv2.CV_32S, cv2.CCL_WU)
    return labels, int(n) - 1


def _largest_component(
    mask: np.ndarray, weights: np.ndarray
) -> tuple[_Region | None, float, float]:
    """Largest 8-connected component of ``mask`` (full map), weighted by ``weights``.

    Returns ``(region, component_mass, total_mass_in_mask)``; ``(None, 0, 0)`` for an empty mask.
    Work is restricted to the mask's bounding box (same components, much less work on 512 x 512
    maps with one small blob). Ties: pixel count, then mass, then raster order.
    """
    box = _bbox(mask)
    if box is None:
        return None, 0.0, 0.0
    labels, n = label_components(mask[box])
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n + 1)[1:]
    masses = np.bincount(flat, weights=weights[box].ravel(), minlength=n + 1)[1:]
    # lexsort: last key is primary -> (size desc, mass desc, label asc).
    k = int(np.lexsort((np.arange(n), -masses, -sizes))[0])
    return _Region(labels == (k + 1), box), float(masses[k]), float(masses.sum())


def _centroid(region: _Region, weights: np.ndarray | None) -> tuple[float, float]:
    """(Weighted) centroid ``(x, y)`` of a region in full-map pixels; NaN if empty/zero weight."""
    rs, cs = region.box
    if weights is None:
        w = region.mask.astype(np.float64)
    else:
        w = np.where(region.mask, weights[region.box], 0.0)
    total = float(w.sum())
    if not total > 0.0:
        return math.nan, math.nan
    x = float(w.sum(axis=0) @ np.arange(cs.start, cs.stop, dtype=np.float64)) / total
    y = float(w.sum(axis=1) @ np.arange(rs.start, rs.stop, dtype=np.float64)) / total
    return x, y


def extract_point(prob: np.ndarray, method: int = 3, *, min_peak: float = 0.3) -> PointEstimate:
    """Locate one landmark in a 2-D probability map ``prob`` (H, W) with Method 1-5.

    Returns a :class:`PointEstimate` in the map's pixel grid (``x = column``, ``y = row``,
    origin at the centre of ``prob[0, 0]``). See the module docstring for the methods, the
    not-found rules and the confidence definition. Raises ``ValueError`` for a non-2-D or empty
    map or an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown extraction method {method!r}; expected one of {METHODS}")
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"prob must be a non-empty 2-D array, got shape {p.shape}")
    if not np.isfinite(p).all():
        p = np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)
    p = np.maximum(p, 0.0)

    peak = float(p.max())
    pmin = float(p.min())
    if peak < min_peak or peak - pmin <= _FLAT_EPS:
        return _not_found(peak)

    # Half-max component: method 3's region and the confidence's dominance term.
    half_region, half_mass, half_total = _largest_component(p > 0.5 * (pmin + peak), p)
    dominance = half_mass / half_total if half_total > 0.0 else 0.0
    confidence = float(min(1.0, max(0.0, peak * dominance)))

    region: _Region | None
    if method == 1:
        full = (slice(0, p.shape[0]), slice(0, p.shape[1]))
        x, y = _centroid(_Region(np.ones(p.shape, dtype=bool), full), p)
        area = int(np.count_nonzero(p))
        region = None
    else:
        if method == 2:
            region, _, _ = _largest_component(p > 0.5, p)
            weights: np.ndarray | None = p
        elif method == 3:
            region, weights = half_region, p
        elif method == 4:
            from scipy import ndimage

            binary = p > 0.5
            box = _bbox(binary)
            # Opening is anti-extensive and scipy pads with 0, so working inside the mask's
            # bounding box gives exactly the full-map result.
            region = (
                None
                if box is None
                else _Region(ndimage.binary_opening(binary[box], structure=_DISC_R2), box)
            )
            weights = None
        else:  # method 5
            region, _, _ = _largest_component(p >= peak - _MAX_TIE_ATOL, p)
            weights = None
        if region is None:
            return _not_found(peak)
        area = region.area
        x, y = _centroid(region, weights)

    if area == 0 or not (math.isfinite(x) and math.isfinite(y)):
        return _not_found(peak)
    return PointEstimate(x=x, y=y, found=True, peak=peak, area_px=area, confidence=confidence)


def extract_points(
    probs: np.ndarray, method: int = 3, *, min_peak: float = 0.3
) -> list[PointEstimate]:
    """Apply :func:`extract_point` to each channel of ``probs`` (C, H, W).

    Returns one :class:`PointEstimate` per channel, in channel order (= landmark order of the
    joint's model, see docs/conventions.md). Raises ``ValueError`` if ``probs`` is not 3-D.
    """
    a = np.asarray(probs)
    if a.ndim != 3:
        raise ValueError(f"probs must be a (C, H, W) array, got shape {a.shape}")
    return [extract_point(a[c], method, min_peak=min_peak) for c in range(a.shape[0])]
