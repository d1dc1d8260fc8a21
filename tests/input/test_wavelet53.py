"""The forward 5/3 wavelet's LL band equals OpenJPEG's reduced-resolution decode of the lossless
codestream bit for bit: whole bands and areas, levels 1..4, odd and even sizes, 8/12/16 bits,
one tile and tiled."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cpak_cli.input import openjp2
from cpak_cli.input.j2k_stream import codestream_info, frame_codestream
from cpak_cli.input.wavelet53 import ll_band, ll_window
from tests.factories import make_j2k_dx, pillow_j2k, ramp_film

pytestmark = pytest.mark.skipif(not openjp2.available(), reason="no OpenJPEG library to compare with")


def _film(rows: int, cols: int, bits: int, seed: int, noise: bool) -> np.ndarray:
    """Full-range noise (the LL band overshoots the range: clipping is exercised) or a ramp."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    if noise:
        return np.random.default_rng(seed).integers(0, 1 << bits, (rows, cols)).astype(dtype)
    return ramp_film(rows, cols, bits=bits, seed=seed).astype(dtype)


def _codestream(pixels: np.ndarray, bits: int) -> bytes:
    cs = frame_codestream(make_j2k_dx(pixels, bits_stored=bits, window=(100.0, 200.0)).PixelData)
    assert cs is not None
    return cs


@pytest.mark.parametrize("rows, cols", [(96, 64), (97, 63), (101, 130), (37, 35)])
@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("noise", [True, False])
def test_ll_band_equals_openjpeg_reduced_decode(rows, cols, bits, noise):
    pixels = _film(rows, cols, bits, rows * cols + bits, noise)
    cs = _codestream(pixels, bits)
    info = codestream_info(cs)
    assert info is not None and info.tiles == 1 and info.levels >= 4
    for level in range(1, 5):
        want = openjp2.decode(cs, level, None)
        got = ll_band(pixels, level, bits)
        assert got.dtype == pixels.dtype and got.shape == want.shape, level
        np.testing.assert_array_equal(got, want, err_msg=f"level {level}")


@pytest.mark.parametrize("tile", [64, 40, 37])
def test_tiled_codestream_bands_equal_openjpeg(tile):
    """Each tile is transformed on its own (its edges, its parity)."""
    pixels = _film(150, 101, 8, tile, noise=True)
    cs = pillow_j2k(pixels, tile)
    info = codestream_info(cs)
    assert info is not None and info.tiles > 1 and info.tile_size == (tile, tile)
    np.testing.assert_array_equal(openjp2.decode(cs, 0, None), pixels)  # a lossless codestream
    for level in range(1, min(info.levels, 4) + 1):
        np.testing.assert_array_equal(ll_band(pixels, level, 8, info.tile_size), openjp2.decode(cs, level, None),
                                      err_msg=f"level {level}")


def _areas(rows: int, cols: int, seed: int) -> list[tuple[int, int, int, int]]:
    g = np.random.default_rng(seed)
    out = [(0, 0, cols, rows), (0, 0, 1, 1), (cols - 1, rows - 1, cols, rows)]
    for _ in range(12):
        x0, y0 = int(g.integers(0, cols - 1)), int(g.integers(0, rows - 1))
        out.append((x0, y0, int(g.integers(x0 + 1, cols + 1)), int(g.integers(y0 + 1, rows + 1))))
    return out


@pytest.mark.parametrize("tiled", [False, True])
def test_ll_window_equals_the_band_and_openjpeg_area_decode(tiled):
    bits = 8 if tiled else 12
    pixels = _film(301, 213, bits, 7, noise=True)
    cs = pillow_j2k(pixels, 96) if tiled else _codestream(pixels, bits)
    info = codestream_info(cs)
    assert info is not None and (info.tiles > 1) == tiled
    for level in range(0, 5):
        band = ll_band(pixels, level, bits, info.tile_size)
        step = 2**level
        for x0, y0, x1, y1 in _areas(*pixels.shape, seed=level):
            got = ll_window(pixels, level, (x0, y0, x1, y1), bits, info.tile_size)
            r0, c0 = -(-y0 // step), -(-x0 // step)
            np.testing.assert_array_equal(got, band[r0 : -(-y1 // step), c0 : -(-x1 // step)])
            if got.size:  # OpenJPEG refuses an area with no sample at this level
                np.testing.assert_array_equal(got, openjp2.decode(cs, level, (x0, y0, x1, y1)))


def test_bad_level_or_area_raises():
    pixels = _film(40, 30, 12, 0, noise=True)
    for level, area in ((-1, None), (1, (0, 0, 31, 10)), (1, (5, 5, 5, 9)), (2, (-1, 0, 4, 4))):
        with pytest.raises(ValueError):
            ll_window(pixels, level, area, 12)


@pytest.mark.slow
def test_full_size_film_at_level_3_in_under_a_second():
    pixels = _film(7500, 3000, 12, 0, noise=True)
    ll_band(pixels[:64, :64], 3, 12)
    t0 = time.perf_counter()
    band = ll_band(pixels, 3, 12)
    assert band.shape == (938, 375) and time.perf_counter() - t0 < 1.0
