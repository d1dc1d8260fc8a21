"""cpak_cli.api, the front door: option objects, output naming, one model load per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpak_cli import api
from cpak_cli.errors import CpakError


def test_film_outputs_stem_substitution_and_collision_check():
    out = api.FilmOutputs(landmarks=Path("lm/{stem}.json"), overlay=Path("ov/{stem}.dcm"))
    one = out.for_input("/data/films/A12.dcm")
    assert one.landmarks == Path("lm/A12.json") and one.overlay == Path("ov/A12.dcm")
    out.check_for(["a/x.dcm", "b/y.dcm"])  # distinct names: fine
    with pytest.raises(CpakError, match="several films would write the same file"):
        out.check_for(["a/x.dcm", "b/x.dcm"])  # same stem in two folders
    with pytest.raises(CpakError, match="--overlay"):
        api.FilmOutputs(overlay=Path("one.png")).check_for(["a.dcm", "b.dcm"])
    api.FilmOutputs(overlay=Path("one.png")).check_for(["a.dcm"])  # one film: any name


def test_measure_files_reports_each_film_and_loads_the_models_once(monkeypatch, tmp_path):
    calls = []

    class FakeMeasurer:
        def __init__(self, **kw):
            calls.append(kw)

        def measure(self, image, boxes, release=True):
            from cpak_cli.pipeline.result import ScanResult

            return ScanResult(path=image.path, image=image)

    from cpak_cli.pipeline import film

    monkeypatch.setattr(film, "Measurer", FakeMeasurer)
    api._cached_measurer.cache_clear()
    from tests.factories import write_dx

    good = write_dx(tmp_path, "good.dcm")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 10)
    outcomes = list(api.measure_files([good, bad, good], api.MeasureOptions(device="cpu", pixel_spacing=(0.5, 0.5))))
    api._cached_measurer.cache_clear()
    assert [o.path for o in outcomes] == [str(good), str(bad), str(good)]
    assert outcomes[0].result is not None and outcomes[0].error is None
    assert outcomes[1].result is None and outcomes[1].error.startswith(f"{bad}: ")
    assert len(calls) == 1  # one model load for the whole run
    assert not outcomes[0].measured and "no leg found on the film" in outcomes[0].not_measured_reason()


def test_the_first_film_is_opened_while_the_models_load(monkeypatch, tmp_path):
    """The decode worker opens the film while this process loads the models (the cage's open
    waits here until the fake models are built: opening first and loading after would fail),
    and a film that cannot be read is still reported before a problem with the models."""
    import threading

    from cpak_cli.errors import CpakModelError
    from cpak_cli.input.cage import Cage
    from cpak_cli.pipeline import film
    from tests.factories import write_dx

    loaded = threading.Event()
    broken = {"models": False}

    class FakeMeasurer:
        def __init__(self, **kw):
            loaded.set()
            if broken["models"]:
                raise CpakModelError("no weights here")

        def measure(self, image, boxes, release=True):
            return film.ScanResult(path=image.path, image=image)

    real_open = Cage.open

    def open_after_the_models(self, *args, **kw):
        assert loaded.wait(30), "the film was opened before the models loaded"
        return real_open(self, *args, **kw)

    monkeypatch.setattr(film, "Measurer", FakeMeasurer)
    monkeypatch.setattr(Cage, "open", open_after_the_models)
    good = write_dx(tmp_path, "good.dcm")
    api._cached_measurer.cache_clear()
    try:
        assert api.measure_file(good, api.MeasureOptions(device="cpu")).path == str(good)
        api._cached_measurer.cache_clear()
        loaded.clear()
        broken["models"] = True
        bad = tmp_path / "bad.dcm"
        bad.write_bytes(b"\0" * 10)
        outcomes = api.measure_files([bad, good], api.MeasureOptions(device="cpu"))
        first = next(outcomes)
        assert first.result is None and first.error.startswith(f"{bad}: ")  # the film's error, not the models'
        with pytest.raises(CpakModelError, match="no weights here"):
            next(outcomes)
    finally:
        api._cached_measurer.cache_clear()
