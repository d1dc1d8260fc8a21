"""Spot checks of a film's stored values decoded another way (e.g. whole, on the GPU) against
the decoder that serves it now (OpenJPEG): small patches on a grid spread over the whole film.

:func:`patch_grid` places :data:`PATCH` x :data:`PATCH` patches (stored full-resolution pixels):
at least one in every tile of a tiled codestream, centred in equal cells of each tile, as many
per tile as :data:`SPOT_PATCHES` allows in all (a single-tile film gets about that many); a
codestream with more than :data:`MAX_PATCHES` tiles gets an even grid of at most
:data:`MAX_PATCHES` patches over the whole film, which then misses some tiles. Each patch is one
OpenJPEG decode of a small area (10-15 ms on a single-tile film, about 5-10 ms on a tiled one,
whatever the patch size up to 64). Measured with one thread on the 2-core dev machine, on a
3094 x 7767 12-bit film: 0.19-0.20 s for its 16 patches as a single tile; 0.30 s re-encoded
(8-bit, Pillow) with 1024-pixel tiles (32 patches) or 512-pixel tiles (112 tiles, 60 patches).

What it proves: a damaged area (every pixel differing) is caught for sure only when it is at
least :func:`caught_for_sure` pixels wide and high (the largest gaps between patches plus one:
1483 x 908 on a single-tile 3094 x 7767 film); smaller damage is caught only where it
overlaps a patch. A spot check, not a proof.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

__all__ = ["MAX_PATCHES", "PATCH", "SPOT_PATCHES", "caught_for_sure", "patch_grid", "same_stored"]

Area = tuple[int, int, int, int]

#: Patch side in stored pixels (the cost of a patch hardly depends on its size up to 64).
PATCH = 64
#: Patches of a film with at most this many tiles (a single-tile film: about this many).
SPOT_PATCHES = 16
#: Patches of a film with more tiles than this: an even grid of at most this many.
MAX_PATCHES = 64


class StoredValues(Protocol):
    def stored(self, level: int = 0, area: Area | None = None, check_constant: bool = True) -> np.ndarray: ...


def _axis(length: int, tile: int, per_tile: int, patch: int) -> list[tuple[int, int]]:
    """Patch intervals ``[start, end)`` (``patch <= length`` long) along one axis: each tile cut
    into ``per_tile`` equal cells, a patch centred in each (kept inside the film)."""
    out: set[tuple[int, int]] = set()
    for t0 in range(0, length, tile):
        cell = (min(t0 + tile, length) - t0) / per_tile
        for i in range(per_tile):
            start = min(max(int(round(t0 + (i + 0.5) * cell - patch / 2)), 0), length - patch)
            out.add((start, start + patch))
    return sorted(out)


def _gap(intervals: list[tuple[int, int]], length: int) -> int:
    """The longest run of positions along an axis that no interval covers."""
    gap, covered = 0, 0
    for s, e in intervals:
        gap = max(gap, s - covered)
        covered = max(covered, e)
    return max(gap, length - covered)


def _grid(shape: tuple[int, int], tile_size: tuple[int, int] | None,
          patch: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Patch intervals along x and along y (see the module docstring)."""
    rows, cols = shape
    tw, th = tile_size if tile_size is not None else (cols, rows)
    nx, ny = math.ceil(cols / tw), math.ceil(rows / th)
    p = min(patch, rows, cols)
    if nx * ny > MAX_PATCHES:  # an even grid over the film, in proportion to its sides
        gx = max(1, min(nx, round(math.sqrt(MAX_PATCHES * cols / rows))))
        gy = max(1, min(ny, MAX_PATCHES // gx))
        return _axis(cols, cols, gx, p), _axis(rows, rows, gy, p)
    budget = max(SPOT_PATCHES, nx * ny)
    kx = ky = 1
    while True:  # one more per tile along the axis with the longer gap, while the budget allows
        xs, ys = _axis(cols, tw, kx, p), _axis(rows, th, ky, p)
        tries = [(kx + 1, ky), (kx, ky + 1)]
        if _gap(xs, cols) < _gap(ys, rows):
            tries.reverse()
        fits = [(a, b) for a, b in tries if nx * a * ny * b <= budget]
        if not fits:
            return xs, ys
        kx, ky = fits[0]


def patch_grid(shape: tuple[int, int], tile_size: tuple[int, int] | None = None,
               patch: int = PATCH) -> list[Area]:
    """Areas ``(x0, y0, x1, y1)`` (stored full-resolution pixels, end exclusive) of the spot
    check of a film of ``shape`` (rows, cols) whose codestream has tiles of ``tile_size``
    (width, height; None: one tile)."""
    xs, ys = _grid(shape, tile_size, patch)
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def caught_for_sure(shape: tuple[int, int], tile_size: tuple[int, int] | None = None,
                    patch: int = PATCH) -> tuple[int, int]:
    """(width, height) of the smallest damaged rectangle (every pixel wrong) that overlaps a
    patch of :func:`patch_grid` wherever it lies: the longest uncovered runs plus one."""
    xs, ys = _grid(shape, tile_size, patch)
    return _gap(xs, shape[1]) + 1, _gap(ys, shape[0]) + 1


def same_stored(reference: StoredValues, candidate: StoredValues, areas: list[Area]) -> bool:
    """Whether ``candidate`` gives exactly ``reference``'s stored values (level 0, dtype
    included) on every area; raises what either decoder raises."""
    for area in areas:
        want = reference.stored(0, area, check_constant=False)
        got = candidate.stored(0, area, check_constant=False)
        if got.dtype != want.dtype or not np.array_equal(got, want):
            return False
    return True
