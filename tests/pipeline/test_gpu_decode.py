"""GPU decoding of JPEG 2000 films before measuring (a fake nvImageCodec, no GPU): the films that
take the GPU's decode measure exactly as on the CPU path (the detector's overview, reduced-level
and full-resolution crop windows all read from it), and a bad or failing GPU decode, a film
already being read, CPAK_GPU_DECODE=0 or a CPU device leave the films on the CPU path.

The phantoms (scale 0.25: 2009 x 717 and 1607 x 717 pixels at 0.6 mm) are large enough for the
detector to read a reduced overview (cached by prefetch_overview) and for crops to read a
reduced level as well as full-resolution windows."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cpak_cli.input import cage as cage_mod
from cpak_cli.input import openjp2
from cpak_cli.input.cage import Cage, DecodeLimits, open_caged
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.loader import open_film
from cpak_cli.input.nvimgcodec import MemoryPixels
from cpak_cli.networks.detector import prefetch_overview
from cpak_cli.pipeline import gpu_decode as gpu_mod
from cpak_cli.pipeline.film import Measurer
from cpak_cli.pipeline.gpu_decode import gpu_decode

pytestmark = pytest.mark.skipif(not openjp2.available(), reason="no OpenJPEG library")


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    from cpak_cli.phantom import make_case, write_case

    root = tmp_path_factory.mktemp("j2k")
    return [str(write_case(make_case(3, i, scale=0.25, compression="jpeg2000"), root)["dicom"]) for i in (0, 2)]


@pytest.fixture(scope="module")
def measurer(tiny_weights):
    return Measurer(weights_dir=tiny_weights, device="cpu")


@pytest.fixture(scope="module")
def reference(films, measurer):
    return [r.to_json() for r in measurer.measure_images([open_film(p) for p in films])]


def _opened(films, overview: bool = True):
    images = [open_film(p) for p in films]
    for im in images:
        assert isinstance(im, FilmSource) and im.fast
        if overview:
            prefetch_overview(im, 48, 128)  # as the decode cage does, for the tiny detector's frame
            assert im._overviews  # a reduced overview is cached, not the level-0 film
    return images


def _count_base_pieces(images, monkeypatch) -> list:
    """Record every piece a GPU-decoded film's replaced source still decodes."""
    calls: list = []
    for im in images:
        if isinstance(im.piece_source, MemoryPixels):
            base = im.piece_source.base
            real = base.stored
            monkeypatch.setattr(base, "stored", lambda *a, _real=real, **k: calls.append(a) or _real(*a, **k))
    return calls


@pytest.mark.parametrize("overview", [True, False])
def test_gpu_decoded_films_measure_exactly_as_on_the_cpu(films, measurer, reference, fake_gpu, monkeypatch, overview):
    """With an overview decoded (the cage's films) it is kept; without one the detector's
    overview is the LL band of the GPU's copy. Crops read reduced levels (the LL band) and
    full-resolution windows from the copy; no piece is decoded by OpenJPEG."""
    from cpak_cli.input import nvimgcodec

    images = _opened(films, overview)
    mod = fake_gpu()
    assert gpu_decode(images, "cuda:0") == len(films)
    assert mod.calls == 1 and mod.sizes == [len(films)] and mod.devices == [0]  # one batch
    assert all(isinstance(im.piece_source, MemoryPixels) for im in images)
    base_pieces = _count_base_pieces(images, monkeypatch)
    reads: list[tuple[int, bool]] = []  # (level, whole film)
    real = nvimgcodec.ll_window

    def spy(arr, level, area, *a):
        reads.append((level, area == (0, 0, arr.shape[1], arr.shape[0])))
        return real(arr, level, area, *a)

    monkeypatch.setattr(nvimgcodec, "ll_window", spy)
    got = measurer.measure_images(images)
    assert [r.to_json() for r in got] == reference
    assert all(im.fast and im.windows_read for im in images)
    assert base_pieces == []  # every window came from the GPU's decode
    windows = {lv for lv, whole in reads if not whole}
    assert 0 in windows and any(lv > 0 for lv in windows)  # full-resolution and reduced crop windows
    overviews = [lv for lv, whole in reads if whole and lv > 0]
    assert overviews == ([] if overview else overviews[:1] * len(films))  # the detector's, unless cached
    assert gpu_decode(images, "cuda:0") == 0  # already read: nothing to do


@pytest.mark.parametrize("bad", ["zeros", "shape", "shifted", "raises", "none"])
def test_a_bad_gpu_decode_leaves_the_film_on_the_cpu_path(films, measurer, reference, fake_gpu, bad):
    """The first film's frame is bad (``raises``: the whole call fails, and GPU decoding stays
    off for later chunks); ``shifted`` passes the decoder's checks and is caught by the spot
    check against OpenJPEG."""
    from cpak_cli.input import nvimgcodec

    first = openjp2.decode(open_film(films[0]).piece_source.codestream)

    def frame(cs: bytes):
        arr = openjp2.decode(cs).astype(np.uint16)
        if arr.shape != first.shape or not np.array_equal(arr, first):
            return arr
        if bad == "raises":
            raise RuntimeError("CUDA error: an illegal memory access")
        return {"zeros": np.zeros_like(arr), "shape": arr[:, :-2], "none": None,
                "shifted": np.minimum(arr + 1, arr.max())}[bad]

    images = _opened(films)
    mod = fake_gpu(frame)
    swapped = gpu_decode(images, "cuda:0")
    assert swapped == (0 if bad == "raises" else 1)
    assert not isinstance(images[0].piece_source, MemoryPixels)
    assert [r.to_json() for r in measurer.measure_images(images)] == reference
    assert (nvimgcodec.failure() is not None) is (bad == "raises") and mod.syncs == ([0] if bad == "raises" else [])
    assert gpu_decode(_opened(films[1:]), "cuda:0") == (0 if bad == "raises" else 1)  # the next chunk
    assert mod.calls == (1 if bad == "raises" else 2)


def test_off_switch_cpu_device_and_films_already_read(films, fake_gpu, monkeypatch):
    mod = fake_gpu()
    images = _opened(films)
    assert gpu_decode(images, "cpu") == 0
    monkeypatch.setenv("CPAK_GPU_DECODE", "0")
    assert gpu_decode(images, "cuda:0") == 0
    assert mod.calls == 0
    monkeypatch.setenv("CPAK_GPU_DECODE", "1")
    images[0].window(10, 10, 60, 60)  # a crop already read this film
    assert gpu_decode(images, "cuda:0") == 1 and not isinstance(images[0].piece_source, MemoryPixels)


def test_without_nvimgcodec_nothing_happens(films, monkeypatch):
    from cpak_cli.input import nvimgcodec

    monkeypatch.setattr(nvimgcodec, "available", lambda: False)
    images = _opened(films)
    assert gpu_decode(images, "cuda") == 0 and not any(isinstance(im.piece_source, MemoryPixels) for im in images)


def test_measure_images_hands_its_films_and_device_over(films, measurer, monkeypatch):
    seen = []
    monkeypatch.setattr(gpu_mod, "gpu_decode", lambda images, device: seen.append((list(images), device)) or 0)
    images = _opened(films[:1])
    measurer.measure_images(images)
    assert seen == [(images, "cpu")]


def test_caged_films_take_the_gpu_decode_and_pickle_small(films, measurer, reference, fake_gpu):
    cage = Cage(DecodeLimits(seconds=60.0), start_method="fork")
    old = cage_mod.configure(cage)
    try:
        images = [open_caged(p) for p in films]
        fake_gpu()
        assert gpu_decode(images, "cuda:0") == len(films)
        data = pickle.dumps(images[0])
        kept = len(images[0].piece_source.codestream) + sum(v.nbytes for v, _ in images[0]._overviews.values())
        assert images[0]._overviews and len(data) < kept + 65536  # the codestream and overview, not the film
        assert type(pickle.loads(data).piece_source) is type(images[0].piece_source.base)
        assert [r.to_json() for r in measurer.measure_images(images)] == reference
    finally:
        cage.close()
        cage_mod.configure(old)
