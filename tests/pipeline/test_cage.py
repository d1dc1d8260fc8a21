"""The decode cage: a decoder that crashes, hangs or allocates without bound costs its film a
one-line error (cpak measure exit 2, a batch error row), the next film is still measured, and
caged films are decoded exactly as in-process ones."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cpak_cli.errors import CpakInputError
from cpak_cli.input import cage as cage_mod
from cpak_cli.input.cage import Cage, DecodeLimits, open_caged
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.held import HeldFilm
from cpak_cli.input.image import LoadedImage
from cpak_cli.input.loader import load_image, open_film
from cpak_cli.options import BatchOptions
from cpak_cli.pipeline.batch import run_batch
from tests.factories import FakeMeasurer, make_dx, write

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "case0001.dcm"  # JPEG 2000 lossless


def misbehave(op: str, path: str) -> None:
    """Test hook run in the decode worker: the file's name says how its decoder fails."""
    name = Path(path).name
    if "segv" in name and op == "open":
        os.kill(os.getpid(), signal.SIGSEGV)
    if "hang" in name and op == "open":
        time.sleep(60)
    if "bomb" in name and op == "open":
        bytearray(4 * 2**30)  # past the memory limit: MemoryError under RLIMIT_AS
    if "window" in name and op == "stored":
        os.kill(os.getpid(), signal.SIGSEGV)


@pytest.fixture
def caged():
    """A cage with short limits and the misbehaving hook as the process's cage (fork: the hook
    need not pickle)."""
    cage = Cage(DecodeLimits(seconds=3.0, memory_mb=400), workers=2, start_method="fork", hook=misbehave)
    old = cage_mod.configure(cage)
    yield cage
    cage.close()
    cage_mod.configure(old)


@pytest.fixture
def films(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a_ok", "b_segv", "c_ok", "d_hang", "e_bomb", "f_ok"):
        write(make_dx(), d / f"{name}.dcm")
    return d


REASONS = {"segv": "the decoder crashed on this file (decode worker killed by SIGSEGV)",
           "hang": "the decoder took longer than 3 s on this file (time limit",
           "bomb": "the decoder needed more than 400 MB on this file (memory limit"}


def test_each_failure_is_one_line_and_the_worker_is_replaced(caged, films):
    for kind, reason in REASONS.items():
        path = next(films.glob(f"*_{kind}.dcm"))
        with pytest.raises(CpakInputError) as err:
            open_caged(path)
        assert str(err.value).startswith(f"{path}: {reason}") and "\n" not in str(err.value)
        t0 = time.perf_counter()  # the film fails at once the second time (no second wait)
        with pytest.raises(CpakInputError, match="the decoder"):
            open_caged(path)
        assert time.perf_counter() - t0 < 1.0
        ok = open_caged(films / "a_ok.dcm")  # a fresh worker serves the next film
        assert np.array_equal(ok.pixels, load_image(films / "a_ok.dcm").pixels)


def test_batch_gives_error_rows_and_measures_the_others(caged, films, tmp_path):
    from tests.pipeline.test_batch import _read

    out = tmp_path / "out.csv"
    summary = run_batch(sorted(films.glob("*.dcm")), out, FakeMeasurer(), BatchOptions(workers=2))
    rows = _read(out)
    errors = {Path(r["input"]).stem: r["error"] for r in rows if r["ldfa"] == ""}
    assert set(errors) == {"b_segv", "d_hang", "e_bomb"}
    for stem, error in errors.items():
        assert REASONS[stem.split("_")[1]] in error
    assert {Path(r["input"]).stem for r in rows if r["ldfa"]} == {"a_ok", "c_ok", "f_ok"}
    assert summary.failed == 3 and summary.legs == 6


def test_cpak_measure_exits_2_with_one_line_and_measures_the_next_film(caged, films, monkeypatch):
    from cpak_cli import api
    from cpak_cli.cli import app

    monkeypatch.setattr(api, "measurer_for", lambda options, need_detector=True: FakeMeasurer())
    res = CliRunner().invoke(app, ["measure", str(films / "b_segv.dcm"), str(films / "c_ok.dcm")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: {films / 'b_segv.dcm'}: {REASONS['segv']}"]
    assert "c_ok.dcm" in res.output and "87" in res.output  # the next film was measured


def test_a_crash_while_decoding_a_window_fails_the_film_not_the_process(caged, tmp_path):
    film = tmp_path / "window_crash.dcm"
    film.write_bytes(SAMPLE.read_bytes())
    image = open_caged(film)
    assert isinstance(image, FilmSource) and image.fast
    with pytest.raises(CpakInputError, match="crashed on this file"):
        image.window(1000, 1000, 1100, 1100)
    good = open_caged(SAMPLE)  # the cage goes on
    assert good.window(1000, 1000, 1100, 1100).std() > 0


def test_caged_films_decode_exactly_as_in_process(tmp_path):
    cage = Cage(DecodeLimits(seconds=60.0), start_method="fork")
    old = cage_mod.configure(cage)
    try:
        plain = tmp_path / "plain.dcm"
        write(make_dx(), plain)
        a, b = open_caged(plain), open_film(plain)  # decoded in full: held in the worker
        assert isinstance(a, HeldFilm) and type(b) is LoadedImage
        assert np.array_equal(a.pixels, b.pixels) and a.meta() == b.meta()
        a, b = open_caged(SAMPLE), open_film(SAMPLE)
        assert isinstance(a, FilmSource) and isinstance(b, FilmSource)
        for factor in (4.0, 16.0):
            va, ma = a.overview(factor)
            vb, mb = b.overview(factor)
            assert np.array_equal(va, vb) and np.array_equal(ma, mb)
        for box in ((0, 0, 300, 200), (1500, 4000, 1900, 4400), (-50, -50, 60, 60)):
            assert np.array_equal(a.window(*box), b.window(*box))
        assert a.voi_proven == b.voi_proven and a.confirm_voi() == b.confirm_voi()
    finally:
        cage.close()
        cage_mod.configure(old)


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("CPAK_DECODE_TIMEOUT_S", "7.5")
    monkeypatch.setenv("CPAK_DECODE_MEMORY_MB", "900")
    assert DecodeLimits.from_env() == DecodeLimits(7.5, 900)
    monkeypatch.setenv("CPAK_DECODE_TIMEOUT_S", "-1")
    monkeypatch.setenv("CPAK_DECODE_MEMORY_MB", "lots")
    assert DecodeLimits.from_env() == DecodeLimits()


@pytest.mark.slow
def test_real_films_measure_identically_caged_and_in_process(tmp_path):
    """The shipped networks on a JPEG 2000 film (windows from the cage) and a non-J2K film give
    exactly the numbers of the in-process decode."""
    from cpak_cli.pipeline.film import Measurer

    plain = tmp_path / "case0001_plain.dcm"
    import pydicom

    ds = pydicom.dcmread(SAMPLE)
    ds.decompress()  # the same film, native (explicit VR little endian)
    ds.save_as(plain)
    measurer = Measurer(device="cpu")
    cage = Cage(DecodeLimits(seconds=120.0), start_method="forkserver")
    old = cage_mod.configure(cage)
    try:
        for path in (SAMPLE, plain):
            a = measurer.measure(open_film(path))
            b = measurer.measure(open_caged(path))
            assert a.legs and a.to_json()["legs"] == b.to_json()["legs"], path
    finally:
        cage.close()
        cage_mod.configure(old)


def test_a_released_jpeg2000_film_is_dropped_by_the_workers(tmp_path, monkeypatch):
    """Releasing a caged JPEG 2000 film makes its worker drop the codestream and decoders (their
    memory is reused for the next films): a later window sends the codestream again and gives
    the same values; before the release no window needs it."""
    cage = Cage(DecodeLimits(seconds=60.0), workers=1, start_method="fork")
    old = cage_mod.configure(cage)
    sent = []
    real_call = Cage._call

    def recording(self, path, req, film=None):
        if req[0] == "stored":
            sent.append(req[3] is not None)  # the codestream travels with this request
        return real_call(self, path, req, film)

    monkeypatch.setattr(Cage, "_call", recording)
    try:
        film = open_caged(SAMPLE)
        assert isinstance(film, FilmSource)
        x, y = film.cols // 2, film.rows // 2
        box = (x - 100, y - 100, x + 100, y + 100)
        first = film.window(*box)
        again = film.window(*box)
        assert not any(sent)  # the worker that opened the film holds its codestream
        film.release()
        sent.clear()
        after = film.window(*box)
        assert sent == [False, True]  # "need", then the codestream again
        assert np.array_equal(first, again) and np.array_equal(first, after) and first.max() > first.min()
    finally:
        cage.close()
        cage_mod.configure(old)


def test_heap_reuse_is_applied_once_and_never_raises():
    from cpak_cli import heap

    first = heap.reuse_freed_memory()
    assert isinstance(first, bool)
    assert heap.reuse_freed_memory() is False  # applied (or impossible) already: a no-op
