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


@pytest.mark.parametrize("module", [True, False])
def test_available_is_whether_the_module_imports_on_a_cuda_machine(monkeypatch, module):
    import sys
    import types

    import torch

    from tests.factories import fake_nvimgcodec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # so the module decides
    if "nvidia" not in sys.modules:
        package = types.ModuleType("nvidia")
        package.__path__ = []  # a package, as the real namespace package is
        monkeypatch.setitem(sys.modules, "nvidia", package)
    fake = fake_nvimgcodec() if module else None  # None: the import fails
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", fake)
    if module:
        monkeypatch.setattr(sys.modules["nvidia"], "nvimgcodec", fake, raising=False)
    else:
        monkeypatch.delattr(sys.modules["nvidia"], "nvimgcodec", raising=False)
    nvimgcodec.available.cache_clear()
    try:
        assert nvimgcodec.available() is module
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


def test_a_read_racing_release_gets_values_not_an_error():
    """release() drops the array between MemoryPixels' two looks at it (simulated: the array
    reads back None after its first read): the read still gives the stored values."""
    pixels = ramp_film(rows=200, cols=120, seed=6)
    plain, _ = _pixels(_codestream(pixels))

    class Racing(MemoryPixels):
        reads = 0

        @property  # type: ignore[override]
        def _array(self):
            self.reads += 1
            return self._kept if self.reads == 1 else None

        @_array.setter
        def _array(self, value):
            self._kept = value

    mem = Racing(plain, pixels.copy(), 12, (120, 200))
    np.testing.assert_array_equal(mem.stored(0, (5, 5, 70, 90)), pixels[5:90, 5:70])
    np.testing.assert_array_equal(mem.stored(1, None), plain.stored(1, None))  # released: the base


def _short(mod):
    real = mod.Decoder.decode

    def short(self, codestreams, params=None):
        return real(self, codestreams, params)[:-1]

    mod.Decoder.decode = short


@pytest.mark.parametrize("how", ["short", "raises", "sync_fails"])
def test_a_failed_call_turns_gpu_decoding_off_for_the_process(fake_gpu, monkeypatch, caplog, how):
    """A batch returned short or a call that raises: its frames are None, one warning, the
    device is synchronized (a failing synchronize is reported), and no later call is made."""
    import logging

    import torch

    streams = [_codestream(ramp_film(rows=96, cols=64, seed=i)) for i in range(3)]
    mod = fake_gpu()
    monkeypatch.setattr(nvimgcodec, "BATCH", 2)
    if how == "raises":
        def frame(cs):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        mod = fake_gpu(frame)
    else:
        _short(mod)
    if how == "sync_fails":
        def sync(i=None):
            mod.syncs.append(i)
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        monkeypatch.setattr(torch.cuda, "synchronize", sync)
    with caplog.at_level(logging.DEBUG, logger=nvimgcodec.__name__):
        assert decode_frames(streams, device_id=1) == [None, None, None]
        assert decode_frames(streams, device_id=1) == [None, None, None]
    assert mod.calls == 1 and mod.sizes == [2]  # the second batch and the second call: none
    assert mod.devices == [1] and mod.syncs == [1]
    assert nvimgcodec.failure() is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "off for the rest of this process" in warnings[0].getMessage()
    assert ("failed to synchronize" in warnings[0].getMessage()) is (how == "sync_fails")


def test_a_refused_frame_does_not_turn_gpu_decoding_off(fake_gpu):
    streams = [_codestream(ramp_film(rows=96, cols=64, seed=i)) for i in range(2)]
    mod = fake_gpu(lambda cs: None)
    assert decode_frames(streams) == [None, None]
    assert nvimgcodec.failure() is None and mod.syncs == []
    fake_gpu()
    assert all(a is not None for a in decode_frames(streams))


@pytest.mark.parametrize("old", ["no_backend_kinds", "no_BackendKind"])
def test_an_older_binding_gets_a_decoder_with_all_backends(fake_gpu, old):
    mod = fake_gpu()
    made = []
    real = mod.Decoder

    class Decoder(real):  # type: ignore[misc, valid-type]
        def __init__(self, device_id=0, **kw):
            if "backend_kinds" in kw:
                raise TypeError("unexpected keyword argument 'backend_kinds'")
            made.append(device_id)
            super().__init__(device_id)

    mod.Decoder = Decoder
    if old == "no_BackendKind":
        mod.Decoder = real
        del mod.BackendKind
    film = ramp_film(rows=96, cols=64, seed=1)
    out = decode_frames([_codestream(film)], device_id=2)
    np.testing.assert_array_equal(out[0], film)
    assert made == ([2] if old == "no_backend_kinds" else [])
    assert nvimgcodec.failure() is None
