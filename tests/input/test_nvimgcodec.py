"""The optional nvImageCodec backend without a GPU: a fake ``nvidia.nvimgcodec`` decodes, every
frame is checked (a bad one becomes None), and MemoryPixels gives exactly J2KPixels' values."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cpak_cli.input import nvimgcodec, openjp2
from cpak_cli.input.film_source import J2KPixels, UnitMap
from cpak_cli.input.j2k_stream import codestream_info, frame_codestream
from cpak_cli.input.nvimgcodec import MemoryPixels, decode_frames
from tests.factories import make_j2k_dx, pillow_j2k, ramp_film

pytestmark = pytest.mark.skipif(not openjp2.available(), reason="no OpenJPEG library to compare with")

UNIT = UnitMap(2048.0, 4096.0, "", False)


def _codestream(pixels: np.ndarray, bits: int = 12) -> bytes:
    cs = frame_codestream(make_j2k_dx(pixels, bits_stored=bits).PixelData)
    assert cs is not None
    return cs


def test_not_available_without_the_module(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", None)  # import fails
    nvimgcodec.available.cache_clear()
    try:
        assert nvimgcodec.available() is False
    finally:
        nvimgcodec.available.cache_clear()


def test_decode_frames_gives_the_stored_values_in_batches(fake_gpu, monkeypatch):
    films = [ramp_film(rows=96 + i, cols=64 + 3 * i, seed=i) for i in range(5)]
    films.append(ramp_film(rows=80, cols=70, bits=8, seed=9).astype(np.uint8))
    streams = [_codestream(f, 8 if f.dtype == np.uint8 else 12) for f in films]
    mod = fake_gpu()
    monkeypatch.setattr(nvimgcodec, "BATCH", 4)
    out = decode_frames([cs + b"\x00" for cs in streams])  # DICOM's padding byte is trimmed
    assert mod.sizes == [4, 2]
    for got, want in zip(out, films):
        assert got is not None and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", ["none", "zeros", "shape", "dtype", "range", "raises"])
def test_a_frame_that_fails_a_check_is_none(fake_gpu, bad):
    good, odd = ramp_film(rows=96, cols=64, seed=1), ramp_film(rows=96, cols=64, seed=2)
    streams = [_codestream(good), _codestream(odd)]

    def frame(cs: bytes):
        arr = openjp2.decode(cs).astype(np.uint16)
        if not np.array_equal(arr, odd):
            return arr
        if bad == "raises":
            raise RuntimeError("device lost")
        return {"none": None, "zeros": np.zeros_like(arr), "shape": arr[:-1], "dtype": arr.astype(np.uint8),
                "range": arr | 0x1000}[bad]

    fake_gpu(frame)
    out = decode_frames(streams)
    assert out[1] is None
    if bad == "raises":  # the whole call failed: its batch goes to the CPU
        assert out[0] is None
    else:
        np.testing.assert_array_equal(out[0], good)


def test_codestreams_it_cannot_take_are_none_without_a_call(fake_gpu):
    mod = fake_gpu()
    assert decode_frames([b"not a codestream", b""]) == [None, None]
    assert mod.calls == 0


def _pixels(cs: bytes) -> tuple[J2KPixels, MemoryPixels]:
    info = codestream_info(cs)
    assert info is not None
    dtype = "uint8" if info.precision <= 8 else "uint16"
    plain = J2KPixels(cs, (info.height, info.width), info.levels, dtype, UNIT, reuse=info.tiles == 1)
    stored = openjp2.decode(cs).astype(dtype)
    return plain, MemoryPixels(plain, stored, info.precision, info.tile_size)


@pytest.mark.parametrize("tiled", [False, True])
def test_memory_pixels_equal_j2k_pixels(tiled):
    g = np.random.default_rng(3)
    if tiled:
        cs = pillow_j2k(g.integers(0, 256, (203, 150)).astype(np.uint8), 64)
    else:
        cs = _codestream(g.integers(0, 4096, (203, 151)).astype(np.uint16))
    plain, mem = _pixels(cs)
    rows, cols = plain.shape
    for level in range(0, min(plain.levels, 4) + 1):
        areas = [None, (0, 0, cols, rows), (10, 20, 70, 130), (cols - 33, rows - 47, cols, rows), (16, 32, 17, 34)]
        for area in areas:
            want = plain.stored(level, area, check_constant=False)
            got = mem.stored(level, area, check_constant=False)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=f"level {level} area {area}")


def test_memory_pixels_checks_release_and_pickle():
    pixels = ramp_film(rows=200, cols=120, seed=4)
    cs = _codestream(pixels)
    plain, mem = _pixels(cs)
    flat = MemoryPixels(plain, np.full_like(pixels, 7), 12, (120, 200))  # a constant (broken) decode
    with pytest.raises(ValueError, match="constant"):
        flat.stored(0, (0, 0, 60, 60))
    with pytest.raises(ValueError):
        mem.stored(plain.levels + 1, None)
    with pytest.raises(ValueError):
        mem.stored(0, (0, 0, 121, 10))
    back = pickle.loads(pickle.dumps(mem))
    assert type(back) is J2KPixels and back.codestream == cs
    assert len(pickle.dumps(mem)) < len(cs) + 4096  # the codestream, not the decoded array
    mem.release()
    calls = []
    plain_stored = plain.stored

    def spy(*a, **k):
        calls.append(a)
        return plain_stored(*a, **k)

    plain.stored = spy  # type: ignore[method-assign]
    np.testing.assert_array_equal(mem.stored(0, (5, 5, 70, 90)), pixels[5:90, 5:70])
    assert calls  # released: the base decodes again
