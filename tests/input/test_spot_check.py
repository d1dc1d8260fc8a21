"""The spot check's patch grid: spread over the whole film, at least one patch in every tile (up
to MAX_PATCHES tiles), several in a single tile, bounded in number, and damage of
caught_for_sure's size overlaps a patch wherever it lies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpak_cli.input.spot_check import MAX_PATCHES, PATCH, SPOT_PATCHES, caught_for_sure, patch_grid, same_stored

SHAPES = [((7767, 3094), None), ((7767, 3094), (1024, 1024)), ((7767, 3094), (512, 512)), ((1607, 573), None),
          ((203, 150), (64, 64)), ((964, 344), None), ((300, 1000), (256, 128)), ((40, 30), None)]
SMALL = [(shape, tile) for shape, tile in SHAPES if shape[0] * shape[1] < 5_000_000]  # quick to slide over


def _tiles_touched(areas, tile_size) -> set[tuple[int, int]]:
    tw, th = tile_size
    return {(x // tw, y // th) for x0, y0, x1, y1 in areas for x in range(x0, x1) for y in (y0, y1 - 1)}


@pytest.mark.parametrize("shape,tile", SHAPES)
def test_the_grid_covers_the_film_within_its_budget(shape, tile):
    rows, cols = shape
    areas = patch_grid(shape, tile)
    tw, th = tile if tile is not None else (cols, rows)
    tiles = math.ceil(cols / tw) * math.ceil(rows / th)
    assert 1 <= len(areas) <= max(SPOT_PATCHES, min(tiles, MAX_PATCHES))
    assert len(set(areas)) == len(areas)
    for x0, y0, x1, y1 in areas:
        assert 0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows
        assert x1 - x0 == min(PATCH, rows, cols) and y1 - y0 == min(PATCH, rows, cols)
    xs, ys = {a[0] for a in areas}, {a[1] for a in areas}
    if tiles <= MAX_PATCHES:
        assert _tiles_touched(areas, (tw, th)) == {(i, j) for i in range(math.ceil(cols / tw))
                                                   for j in range(math.ceil(rows / th))}
    if tiles == 1 and min(shape) > 4 * PATCH:
        assert len(areas) >= SPOT_PATCHES - 2 and len(xs) >= 2 and len(ys) >= 4  # several per tile


def test_a_single_tile_full_size_film_gets_16_patches_and_catches_1483_by_908():
    """The figures the module docstring states."""
    assert len(patch_grid((7767, 3094))) == 16
    assert caught_for_sure((7767, 3094)) == (1483, 908)
    assert len(patch_grid((7767, 3094), (512, 512))) <= MAX_PATCHES  # 112 tiles: not all touched


@pytest.mark.parametrize("shape,tile", SMALL)
def test_damage_of_caught_for_sure_size_always_overlaps_a_patch(shape, tile):
    """Slide a damaged rectangle of exactly that size over every position (a coarse stride and
    the positions next to the patches' edges): it always overlaps a patch; one pixel narrower
    and lower, some position misses every patch (the bound is tight)."""
    rows, cols = shape
    areas = patch_grid(shape, tile)
    covered = np.zeros(shape, bool)
    for x0, y0, x1, y1 in areas:
        covered[y0:y1, x0:x1] = True
    w, h = caught_for_sure(shape, tile)

    def misses(bw: int, bh: int) -> bool:
        # a rectangle misses every patch iff the summed-area of `covered` over it is 0
        s = np.pad(covered.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        if bw > cols or bh > rows:
            return False
        tot = s[bh:, bw:] - s[:-bh, bw:] - s[bh:, :-bw] + s[:-bh, :-bw]
        return bool((tot == 0).any())

    assert not misses(w, h)
    if (w, h) != (1, 1):
        assert misses(max(w - 1, 1), max(h - 1, 1))


class _Values:
    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def stored(self, level: int = 0, area=None, check_constant: bool = True) -> np.ndarray:
        x0, y0, x1, y1 = area
        return self.arr[y0:y1, x0:x1]


def test_same_stored_compares_raw_values_and_dtype():
    arr = np.arange(200 * 120, dtype=np.uint16).reshape(200, 120)
    areas = patch_grid(arr.shape)
    assert same_stored(_Values(arr), _Values(arr.copy()), areas)
    x0, y0, _, _ = areas[-1]
    bad = arr.copy()
    bad[y0 + 3, x0 + 5] += 1
    assert not same_stored(_Values(arr), _Values(bad), areas)
    assert not same_stored(_Values(arr), _Values(arr.astype(np.int32)), areas)
