"""`--engine ray` writes the very CSV the default engine writes: the same rows in the same order,
the same error rows, anonymization and resume (tiny phantom films, tiny random models, a local
Ray on this machine's CPUs)."""

from __future__ import annotations

import pytest

from cpak_cli import api
from cpak_cli.errors import CpakError


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """Four small phantom films, a truncated copy of one and a file that is not DICOM."""
    from tests.factories import phantom_folder

    d = phantom_folder(tmp_path_factory.mktemp("films"), seed=11, count=4)
    data = (d / "case0000.dcm").read_bytes()
    (d / "case0000_truncated.dcm").write_bytes(data[: len(data) // 2])
    (d / "=notes").write_text("not a DICOM file, and a name a spreadsheet would run as a formula\n")
    for p in d.glob("*.json"):
        p.unlink()
    return d


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (started as the engine starts it), stopped at the end."""
    from cpak_cli.pipeline.ray_engine import _start_ray

    ray = pytest.importorskip("ray")
    started = _start_ray(ray, None)
    yield
    if started:
        ray.shutdown()


def _rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _batch(films, csv, weights, engine, on_file=None, **kw):
    options = api.MeasureOptions(weights_dir=weights, device="cpu")
    return api.run_batch(films, csv, options, api.BatchOptions(workers=1, chunk=3, engine=engine, **kw), on_file)


# in the default suite (about 25-40 s with the Ray start on 2 cores): the acceptance test
def test_ray_engine_writes_the_rows_and_overlays_of_the_local_engine(films, tiny_weights, local_ray, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(films)  # relative inputs: "=notes" must be read, and written neutralised
    local, remote = tmp_path / "local.csv", tmp_path / "ray.csv"
    s_local = _batch(".", local, tiny_weights, "local", overlays=tmp_path / "ov_local", sr_dir=tmp_path / "sr_local",
                     report=tmp_path / "local.html")
    s_ray = _batch(".", remote, tiny_weights, "ray", overlays=tmp_path / "ov_ray", sr_dir=tmp_path / "sr_ray",
                   report=tmp_path / "ray.html")
    text = local.read_text(encoding="utf-8")
    differing = [(i, k, a[k], b[k]) for i, (a, b) in enumerate(zip(_rows(local), _rows(remote))) for k in a if a[k] != b[k]]
    assert differing == []
    assert remote.read_text(encoding="utf-8") == text
    assert (s_ray.files, s_ray.failed, s_ray.legs) == (s_local.files, s_local.failed, s_local.legs)
    assert s_ray.files == 6 and s_ray.failed == 2 and s_ray.legs > 0
    assert "\n'=notes," in text and "\ncase0000_truncated.dcm," in text  # error rows, neutralised input
    overlays = {p.name: p.read_bytes() for p in (tmp_path / "ov_local").iterdir()}
    assert overlays and {p.name: p.read_bytes() for p in (tmp_path / "ov_ray").iterdir()} == overlays
    srs = sorted(p.name for p in (tmp_path / "sr_local").iterdir())  # one SR per film with a leg, same names
    assert len(srs) == s_local.files - s_local.failed and sorted(p.name for p in (tmp_path / "sr_ray").iterdir()) == srs
    for name in ("local", "ray"):  # the report's thumbnails were kept by either engine
        html = (tmp_path / f"{name}.html").read_text(encoding="utf-8")
        assert html.count("data:image/jpeg;base64,") == s_local.files - s_local.failed


@pytest.mark.slow  # about 11 s, and the Ray start when run alone
def test_ray_engine_anonymized_resume_matches_local(films, tiny_weights, local_ray, tmp_path):
    salt = "pepper"
    local, remote = tmp_path / "local.csv", tmp_path / "ray.csv"
    _batch(films, local, tiny_weights, "local", anonymize_salt=salt)
    full = local.read_bytes()
    lines = full.splitlines(keepends=True)
    # a run killed after three films, in the middle of writing a fourth row
    remote.write_bytes(b"".join(lines[:4]) + lines[4][:10])
    (tmp_path / "ray.csv.run.json").write_bytes((tmp_path / "local.csv.run.json").read_bytes())
    seen = []
    s = _batch(films, remote, tiny_weights, "ray", anonymize_salt=salt, resume=True,
               on_file=lambda summary: seen.append(summary.files))
    assert remote.read_bytes() == full
    assert s.skipped >= 1 and s.files + s.skipped == 6 and seen == list(range(1, s.files + 1))
    assert str(films) not in full.decode("utf-8")


@pytest.mark.slow  # about 10 s
def test_missing_weights_stop_the_ray_engine_with_the_model_error(films, local_ray, tmp_path):
    from cpak_cli.errors import CpakModelError

    with pytest.raises(CpakModelError, match="not found"):
        _batch(films, tmp_path / "x.csv", tmp_path / "no_weights", "ray")
    assert (tmp_path / "x.csv").read_text(encoding="utf-8").count("\n") == 1  # the header only


def test_unknown_engine_is_refused(films, tmp_path):
    with pytest.raises(CpakError, match="--engine spark"):
        _batch(films, tmp_path / "x.csv", None, "spark")
    assert not (tmp_path / "x.csv").exists()


class FakeDataset:
    """What the engine reads of a Ray dataset: rows of finished films, in any order."""

    def __init__(self, rows):
        self.rows = rows

    def iter_rows(self):
        yield from self.rows


def test_rows_are_written_in_input_order_and_a_dropped_film_gets_an_error_row(tmp_path):
    import csv
    import io
    import json

    from cpak_cli.pipeline.batch_csv import COLUMNS, BatchSummary, open_csv
    from cpak_cli.pipeline.ray_engine import _write_in_order

    todo = [tmp_path / f"f{i}.dcm" for i in range(4)]

    def film(i):
        row = {c: "" for c in COLUMNS}
        row.update(input=str(todo[i]), side="right", ldfa=f"{88 + i}.0000")
        return {"index": i, "rows": json.dumps([row]), "failed": False}

    seen, summary = [], BatchSummary(total=4)
    with open_csv(tmp_path / "out.csv") as fh:  # film 1 never comes back: its worker died twice
        _write_in_order(FakeDataset([film(2), film(0), film(3)]), todo, fh, summary, None,
                        lambda s: seen.append((s.files, s.failed)))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [r["input"] for r in rows] == [str(p) for p in todo]
    assert [r["ldfa"] for r in rows] == ["88.0000", "", "90.0000", "91.0000"]
    assert rows[1]["error"] == f"{todo[1]}: the Ray worker decoding or measuring this file died"
    assert seen == [(1, 0), (2, 1), (3, 1), (4, 1)] and summary.legs == 3


def test_a_cpak_error_in_a_ray_worker_reaches_the_driver_as_itself():
    from cpak_cli.errors import CpakInputError, CpakModelError
    from cpak_cli.pipeline.ray_engine import _cpak_cause

    class ActorDied(Exception):  # Ray keeps only the text of an actor's failed __init__
        error_msg = ('Traceback (most recent call last):\n  File "x.py", line 1, in __init__\n'
                     "cpak_cli.errors.CpakModelError: /w/hip.safetensors: weights file not found")

    try:
        try:
            raise ActorDied("the actor died")
        except ActorDied as inner:
            raise RuntimeError("dataset failed") from inner
    except RuntimeError as exc:
        cause = _cpak_cause(exc)
    assert type(cause) is CpakModelError and str(cause) == "/w/hip.safetensors: weights file not found"
    original = CpakInputError("a.dcm", "bad")
    assert _cpak_cause(RuntimeError("x").with_traceback(None)) is None
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = original
    assert _cpak_cause(wrapped) is original


@pytest.mark.parametrize("failure", [RuntimeError("the worker said no"), CpakError("x.dcm: the decoder crashed")])
def test_a_film_whose_pixels_cannot_be_fetched_gets_its_error_row_and_is_released(monkeypatch, tmp_path, failure):
    """_decode_row pickles the decoded film (a held film fetches its pixels from the decode
    worker then): whatever that raises becomes the film's one-line error; the film is released."""
    import pickle

    from cpak_cli.pipeline import ray_engine
    from cpak_cli.pipeline.decoding import Decoded

    class Unfetchable:
        released = 0

        def __reduce_ex__(self, protocol):
            raise failure

        def release(self):
            Unfetchable.released += 1

    monkeypatch.setattr(ray_engine, "decode_one", lambda args: Decoded(args[0], "ab12", Unfetchable(), None))
    row = ray_engine._decode_row({"path": "x.dcm", "index": 7}, None, str(tmp_path))
    dec = pickle.loads(row["decoded"])
    assert row["index"] == 7 and dec.image is None and dec.sha256 == "ab12"
    assert dec.error == (str(failure) if isinstance(failure, CpakError) else
                         "x.dcm: unexpected error RuntimeError: the worker said no")
    assert Unfetchable.released == 1
