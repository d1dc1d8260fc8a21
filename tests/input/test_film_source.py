"""open_film / FilmSource: JPEG 2000 films decoded piecewise give exactly the loader's values
(windows), a faithful reduced overview in the head-up frame, and fall back to the full decode
whenever a piece cannot be trusted."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.input import openjp2
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.j2k_stream import codestream_info, frame_codestream
from cpak_cli.input.loader import LoadedImage, load_image, open_film
from cpak_cli.networks.crops import read_window
from tests.factories import make_j2k_dx, ramp_film, write, write_dx

pytestmark = pytest.mark.skipif(not openjp2.available(), reason="no OpenJPEG library to decode pieces with")

META = ("rows", "cols", "spacing_mm", "spacing_source", "patient_right_on_image_left", "assumed_orientation",
        "laterality", "sop_instance_uid", "study_date", "transfer_syntax", "photometric", "voi_source",
        "patient_orientation", "orientation_applied", "inversion", "metadata")


def _windows(rows: int, cols: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    g = np.random.default_rng(seed)
    out = [(0, 0, cols, rows), (-20, -30, 60, 50), (cols - 40, rows - 40, cols + 25, rows + 10)]
    for _ in range(6):
        xa, ya = int(g.integers(-20, cols - 10)), int(g.integers(-20, rows - 10))
        out.append((xa, ya, xa + int(g.integers(8, 90)), ya + int(g.integers(8, 120))))
    return out


@pytest.mark.parametrize("kw", [
    {},
    {"patient_orientation": ["R", "F"]},
    {"patient_orientation": ["L", "H"], "photometric": "MONOCHROME1"},
    {"patient_orientation": ["F", "L"], "rescale": (2.0, -100.0), "window": (3900.0, 7000.0)},
    {"patient_orientation": ["H", "R"], "voi_function": "SIGMOID"},
    {"pixels": ramp_film(bits=16), "bits_stored": 16, "window": (30000.0, 50000.0)},
    {"pixels": (ramp_film(bits=8)).astype(np.uint8), "bits_stored": 8, "window": (128.0, 256.0)},
])
def test_windows_and_metadata_equal_the_full_decode(tmp_path, kw):
    path = write(make_j2k_dx(**kw), tmp_path / "film.dcm")
    full = load_image(path)
    src = open_film(path)
    assert isinstance(src, FilmSource) and src.fast, getattr(src, "fallback_reason", None)
    for name in META:
        assert getattr(src, name) == getattr(full, name), name
    for xa, ya, xb, yb in _windows(src.rows, src.cols):
        np.testing.assert_array_equal(src.window(xa, ya, xb, yb), read_window(full.pixels, xa, ya, xb, yb))
    assert src.fast and src.voi_proven


@pytest.mark.parametrize("orientation", [None, ["L", "H"], ["F", "R"], ["H", "L"]])
def test_overview_lies_on_the_film(tmp_path, orientation):
    """The overview at level L: view pixel (u, v) maps through its matrix onto the film pixel
    whose value it holds (a smooth ramp, so the low-pass band equals the samples)."""
    pixels = ramp_film(rows=320, cols=128, seed=1)
    path = write(make_j2k_dx(pixels, patient_orientation=orientation), tmp_path / "o.dcm")
    full = load_image(path).pixels
    src = open_film(path)
    for factor, level in ((2.5, 1), (5.0, 2), (8.0, 3), (1.5, 0)):
        view, m = src.overview(factor)
        assert src.level_for(factor) == level
        step = 2**level
        assert view.shape == (-(-src.rows // step), -(-src.cols // step)) if level else view.shape == full.shape
        v, u = np.mgrid[0 : view.shape[0], 0 : view.shape[1]]
        x = (m[0, 0] * u + m[0, 1] * v + m[0, 2]).round().astype(int)
        y = (m[1, 0] * u + m[1, 1] * v + m[1, 2]).round().astype(int)
        assert x.min() >= 0 and y.min() >= 0 and x.max() < src.cols and y.max() < src.rows
        inner = (slice(2, -2), slice(2, -2))  # away from the edges and the bright discs' rims
        diff = np.abs(view[inner] - full[y[inner], x[inner]])
        assert np.median(diff) < 0.01, (level, float(np.median(diff)))
    assert src.fast


def test_films_that_cannot_be_decoded_in_pieces_load_in_full(tmp_path):
    native = write_dx(tmp_path, "native.dcm", pixels=ramp_film(), bits_stored=12, window=(2048.0, 4096.0))
    minmax = write(make_j2k_dx(window=None), tmp_path / "minmax.dcm")
    signed = write(make_j2k_dx((ramp_film(bits=12).astype(np.int32) - 2048).astype(np.int16), signed=True, window=(0.0, 4096.0)),
                   tmp_path / "signed.dcm")
    for path in (native, minmax, signed):
        img = open_film(path)
        assert type(img) is LoadedImage
        np.testing.assert_array_equal(img.pixels, load_image(path).pixels)


def test_truncated_codestream_fails_as_load_image_does(tmp_path):
    ds = make_j2k_dx()
    cs = frame_codestream(ds.PixelData)
    assert cs is not None and codestream_info(cs) is not None
    assert codestream_info(cs[: len(cs) // 2]) is None and codestream_info(cs[:-3]) is None
    data = write(ds, tmp_path / "ok.dcm").read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[: len(data) - 2000])
    with pytest.raises(CpakInputError) as want:
        load_image(bad)
    with pytest.raises(CpakInputError) as got:
        open_film(bad)
    assert str(got.value) == str(want.value)


def test_a_failing_piece_falls_back_to_the_full_decode(tmp_path, monkeypatch):
    path = write(make_j2k_dx(patient_orientation=["L", "H"]), tmp_path / "f.dcm")
    full = load_image(path).pixels
    src = open_film(path)
    assert isinstance(src, FilmSource)
    ok = src.window(10, 10, 70, 90)

    def broken(*_a, **_k):
        raise openjp2.J2KError("simulated decoder failure")

    monkeypatch.setattr(src._src, "_decode", broken)
    np.testing.assert_array_equal(src.window(5, 20, 100, 200), read_window(full, 5, 20, 100, 200))
    assert not src.fast and "simulated" in (src.fallback_reason or "")
    np.testing.assert_array_equal(src.window(10, 10, 70, 90), ok)
    view, m = src.overview(8.0)  # after a fallback: the full film and the identity
    assert view.shape == full.shape and np.array_equal(m, np.eye(2, 3))


def test_voi_window_that_misses_the_film_is_settled_by_the_full_decode(tmp_path):
    """The loader ignores a VOI window under which the whole film is constant (min-max
    instead); pieces cannot see that, so confirm_voi decodes the film in full."""
    path = write(make_j2k_dx(window=(60000.0, 100.0)), tmp_path / "miss.dcm")
    full = load_image(path)
    assert full.voi_source == "minmax"
    src = open_film(path)
    assert isinstance(src, FilmSource)
    assert not src.window(0, 0, 64, 64).any()  # the window maps everything to 0
    assert not src.voi_proven
    assert src.confirm_voi() is False
    assert not src.fast and src.voi_source == "minmax"
    np.testing.assert_array_equal(src.window(0, 0, 64, 64), full.pixels[:64, :64])


def test_pickles_as_codestream_not_pixels(tmp_path):
    path = write(make_j2k_dx(ramp_film(rows=600, cols=200), pixel_spacing=(1.0, 1.0)), tmp_path / "p.dcm")
    src = open_film(path)
    assert isinstance(src, FilmSource)
    src.overview(4.0)
    data = pickle.dumps(src)
    assert len(data) < src.rows * src.cols * 4 / 2  # far less than a float32 film
    back = pickle.loads(data)
    np.testing.assert_array_equal(back.window(30, 40, 150, 260), src.window(30, 40, 150, 260))
    assert back.fast and back.path == src.path
    np.testing.assert_array_equal(back.pixels, load_image(path).pixels)


@pytest.mark.parametrize("seed", range(40))
def test_hostile_j2k_bytes_keep_the_loader_contract(tmp_path, seed):
    """Byte-mutated JPEG 2000 films: open_film and every piece either give float32 [0, 1]
    pixels of the right shape or raise a one-line CpakInputError."""
    g = np.random.default_rng(seed)
    data = bytearray(write(make_j2k_dx(), tmp_path / "base.dcm").read_bytes())
    start = len(data) - len(frame_codestream(make_j2k_dx().PixelData) or b"")  # around the codestream
    for _ in range(int(g.integers(1, 6))):
        i = int(g.integers(max(start - 200, 0), len(data)))
        data[i] = int(g.integers(0, 256))
    if seed % 4 == 0:
        data = data[: int(g.integers(start, len(data)))]
    path = tmp_path / "hostile.dcm"
    path.write_bytes(bytes(data))
    try:
        img = open_film(path)
        pieces = [img.window(0, 0, 50, 60), img.overview(4.0)[0]] if isinstance(img, FilmSource) else [img.pixels]
    except CpakInputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    for p in pieces:
        assert p.dtype == np.float32 and p.ndim == 2 and np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1


# ------------------------------------------------------------------ adopting another decode


def _adoptable(tmp_path, window=(2048.0, 4096.0)):
    """A fast FilmSource of a 600 x 300 single-tile film and its stored values decoded whole."""
    path = write(make_j2k_dx(ramp_film(rows=600, cols=300, seed=5), window=window, pixel_spacing=(1.0, 1.0)),
                 tmp_path / "a.dcm")
    src = open_film(path)
    assert isinstance(src, FilmSource) and src.fast
    stored = openjp2.decode(src.piece_source.codestream).astype(src.piece_source.dtype)
    return src, stored


def _memory(src, arr):
    from cpak_cli.input.nvimgcodec import MemoryPixels

    return MemoryPixels(src.piece_source, arr, 12, (src.cols, src.rows))


def _missing_spot(shape, w, h):
    """Top-left (x, y) of a w x h rectangle that overlaps no spot-check patch, or None."""
    from cpak_cli.input.spot_check import patch_grid

    covered = np.zeros(shape, bool)
    for x0, y0, x1, y1 in patch_grid(shape):
        covered[y0:y1, x0:x1] = True
    s = np.pad(covered.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    free = np.argwhere(s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w] == 0)
    return None if len(free) == 0 else (int(free[0][1]), int(free[0][0]))


def test_an_exact_decode_is_adopted_and_gives_the_same_windows(tmp_path):
    src, stored = _adoptable(tmp_path)
    want = src.window(3, 7, 180, 420)
    src._set("windows_read", False)  # as if no crop had read it
    mem = _memory(src, stored)
    assert src.adopt_pixels(mem) and src.piece_source is mem
    np.testing.assert_array_equal(src.window(3, 7, 180, 420), want)


@pytest.mark.parametrize("damage", ["block_off_the_diagonal", "clipped_by_the_voi_window"])
def test_damage_the_spot_check_sees_is_not_adopted(tmp_path, damage):
    """An 80 x 60 block away from the diagonal (the earlier check looked at three 32 x 32 patches
    on it), and damage where the VOI window clips (the earlier check compared mapped values):
    raw stored values on the patch grid catch both."""
    from cpak_cli.input.spot_check import patch_grid

    src, stored = _adoptable(tmp_path, window=(2048.0, 4096.0) if damage.startswith("block") else (700.0, 200.0))
    bad = stored.copy()
    if damage.startswith("block"):
        x0, y0, _, _ = max(patch_grid(bad.shape), key=lambda a: (a[0], -a[1]))  # the top right patch
        bx, by = min(x0 + 10, src.cols - 80), y0 + 10
        for f in (0.25, 0.5, 0.75):  # away from the old check's patches
            dx, dy = int(src.cols * f), int(src.rows * f)
            assert bx >= dx + 32 or bx + 80 <= dx or by >= dy + 32 or by + 60 <= dy
        bad[by : by + 60, bx : bx + 80] ^= 0x0101
    else:
        x0, y0, x1, y1 = patch_grid(bad.shape)[-1]
        assert (src.piece_source.unit_map.apply(stored[y0:y1, x0:x1]) == 1.0).all()  # clipped there
        bad[y0:y1, x0:x1] += 1
    assert not src.windows_read and not src.adopt_pixels(_memory(src, bad))
    assert src.fast and type(src.piece_source).__name__ == "J2KPixels"


def test_damage_of_caught_for_sure_size_is_caught_and_smaller_may_not_be(tmp_path):
    """What the grid catches for sure on this film: a damaged rectangle caught_for_sure wide and
    high, wherever it lies; one pixel smaller each way fits between the patches (unseen)."""
    from cpak_cli.input.spot_check import caught_for_sure

    src, stored = _adoptable(tmp_path)
    w, h = caught_for_sure(stored.shape)
    assert _missing_spot(stored.shape, w, h) is None
    spot = _missing_spot(stored.shape, w - 1, h - 1)
    assert spot is not None
    x, y = spot
    for bw, bh, adopted in ((w - 1, h - 1, True), (w, h, False)):
        bad = stored.copy()
        bad[y : y + bh, x : x + bw] ^= 1
        mem = _memory(src, bad)
        assert src.adopt_pixels(mem) is adopted
        if adopted:  # undo for the next case
            src._set("_src", mem.base)


def test_decoder_errors_during_the_check_are_not_adopted(tmp_path, monkeypatch):
    """A caged source whose worker fails raises CpakInputError; a failing candidate raises
    ValueError: adopt_pixels returns False and the film keeps its source."""
    src, stored = _adoptable(tmp_path)
    plain = src.piece_source
    mem = _memory(src, stored)
    monkeypatch.setattr(mem, "stored", lambda *a, **k: (_ for _ in ()).throw(ValueError("released")))
    assert src.adopt_pixels(mem) is False

    def crashed(*_a, **_k):
        raise CpakInputError(src.path, "the decoder crashed on this file (decode worker killed by SIGSEGV)")

    monkeypatch.setattr(plain, "stored", crashed)
    assert src.adopt_pixels(_memory(src, stored)) is False
    assert src.piece_source is plain and src.fast
