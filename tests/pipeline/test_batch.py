"""cpak batch mechanics with a stand-in measurer (no network): rows, error rows, resume."""

import json
import math
from pathlib import Path

import pytest

from cpak_cli.options import BatchOptions
from cpak_cli.pipeline.batch import run_batch
from cpak_cli.pipeline.batch_csv import COLUMNS, done_inputs, salted_hash
from cpak_cli.pipeline.decoding import find_inputs
from tests.factories import FakeMeasurer, make_dx, write


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for i in range(4):
        write(make_dx(), d / f"ok{i}.dcm")
    write(make_dx(), d / "sub" / "deep.dcm")
    write(make_dx(pixel_spacing=None), d / "nospacing.dcm")
    ds = make_dx()
    del ds.PixelData
    write(ds, d / "nopixels.dcm")
    data = (d / "ok0.dcm").read_bytes()
    (d / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (d / "notes").write_text("this is not a DICOM file\n")
    (d / "ignored.txt").write_text("plain text with an extension is not a candidate\n")
    return d


def test_find_inputs(folder):
    names = [p.name for p in find_inputs(folder)]
    assert names == sorted(names) and "ignored.txt" not in names and "notes" in names and "deep.dcm" not in names
    assert "deep.dcm" in [p.name for p in find_inputs(folder, recursive=True)]


def _read(p):
    import csv

    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_and_error_rows(folder, tmp_path):
    out = tmp_path / "out.csv"
    s = run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1, chunk=3))
    rows = _read(out)
    assert s.files == 8 and s.failed == 4 and s.legs == 8
    errors = {Path(r["input"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"nospacing.dcm", "nopixels.dcm", "truncated.dcm", "notes"}
    assert "pixel spacing" in errors["nospacing.dcm"] and "pixel" in errors["nopixels.dcm"].lower()
    legs = [r for r in rows if not r["error"]]
    assert len(legs) == 8 and {r["side"] for r in legs} == {"right", "left"}
    r0 = legs[0]
    assert float(r0["ldfa"]) == pytest.approx(87.0, abs=1e-4) and r0["cpak"] == "I"
    assert len(r0["sha256"]) == 64 and r0["sop_instance_uid"] and r0["femoral_head_x_mm"]
    assert list(rows[0].keys()) == list(COLUMNS)
    assert COLUMNS.index("mhka") == COLUMNS.index("jlo") + 1
    for r in legs:  # mHKA as constructed, 4 decimals like the other angles
        want = FakeMeasurer.LEGS[r["side"]][2]
        assert float(r["mhka"]) == pytest.approx(want, abs=0.01) and len(r["mhka"].split(".")[1]) == 4
    assert all(r["mhka"] == "" for r in rows if r["error"])


def test_partial_leg_row_keeps_mhka(folder, tmp_path):
    out = tmp_path / "partial.csv"
    drop = ("femoral_condyle_lateral", "femoral_condyle_medial")
    run_batch([folder / "ok0.dcm"], out, FakeMeasurer(drop=drop), BatchOptions(workers=1))
    rows = _read(out)
    assert [r["side"] for r in rows] == ["right", "left"]
    for r in rows:
        assert "femoral_condyle_lateral" in r["error"] and r["ldfa"] == "" and r["cpak"] == ""
        assert float(r["mhka"]) == pytest.approx(FakeMeasurer.LEGS[r["side"]][2], abs=0.01)
        assert float(r["mpta"]) == pytest.approx(FakeMeasurer.LEGS[r["side"]][1], abs=0.01)


#: The columns before the alignment panel, in their order (a CSV reader may count on them).
EARLIER_COLUMNS = (
    "input", "sha256", "sop_instance_uid", "study_date", "side",
    "ldfa", "mpta", "ahka", "jlo", "mhka", "cpak", "flags",
    "spacing_row_mm", "spacing_col_mm", "spacing_source", "box_source",
    *[f"{n}_{k}" for n in ("femoral_head", "femoral_condyle_lateral", "femoral_condyle_medial",
                           "tibial_plateau_lateral", "tibial_plateau_medial", "knee_center",
                           "ankle_lateral", "ankle_medial")
      for k in ("x", "y", "x_mm", "y_mm", "confidence")],
    "models", "tool_version", "error",
)
PANEL_COLUMNS = ("jlca", "mad_mm", "femur_mm", "tibia_mm", "leg_mm", "leg_length_difference_mm", "outside_normal")


def _fake_panel(side):
    """JLCA, MAD, femur, tibia of a FakeMeasurer leg, by construction (build_leg): JLCA = aHKA -
    mHKA; MAD from the hip-knee-ankle triangle, medial positive (valgus is lateral)."""
    ldfa, mpta, mhka = FakeMeasurer.LEGS[side]
    femur, tibia = FakeMeasurer.LENGTHS[side]
    t = math.radians(mhka)
    mad = -femur * tibia * math.sin(t) / math.hypot(tibia * math.sin(t), femur + tibia * math.cos(t))
    return (mpta - ldfa) - mhka, mad, femur, tibia


def test_panel_columns_are_appended_and_filled(folder, tmp_path):
    assert COLUMNS == EARLIER_COLUMNS + PANEL_COLUMNS
    out = tmp_path / "panel.csv"
    run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1))
    rows = _read(out)
    legs = [r for r in rows if not r["error"]]
    assert len(legs) == 8
    lld = sum(FakeMeasurer.LENGTHS["right"]) - sum(FakeMeasurer.LENGTHS["left"])
    for r in legs:
        jlca, mad, femur, tibia = _fake_panel(r["side"])
        got = [float(r[c]) for c in ("jlca", "mad_mm", "femur_mm", "tibia_mm", "leg_mm", "leg_length_difference_mm")]
        assert got == pytest.approx([jlca, mad, femur, tibia, femur + tibia, lld], abs=0.01)
        assert all(len(r[c].split(".")[1]) == 4 for c in PANEL_COLUMNS[:-1])
    by_side = {r["side"]: r for r in legs[:2]}
    # right: MPTA 84 and mHKA -3.25 outside, JLCA 0.25 and MAD +11.7 inside; left: MPTA 91,
    # JLCA -1.5 and MAD -8.9 outside; neither is a flag and both keep their CPAK type
    assert by_side["right"]["outside_normal"] == "mpta;mhka" and by_side["right"]["cpak"] == "I"
    assert by_side["left"]["outside_normal"] == "mpta;jlca;mad_mm" and by_side["left"]["cpak"]
    assert all("outside_normal" not in r["flags"] for r in legs)
    assert all(r[c] == "" for r in rows if r["error"] for c in PANEL_COLUMNS)


def test_panel_of_partial_legs_in_the_csv(folder, tmp_path):
    out = tmp_path / "partial_panel.csv"
    run_batch([folder / "ok0.dcm"], out, FakeMeasurer(drop=("tibial_plateau_lateral",)), BatchOptions(workers=1))
    for r in _read(out):  # no JLCA without the plateau; the rest as constructed
        jlca, mad, femur, tibia = _fake_panel(r["side"])
        assert r["jlca"] == "" and float(r["mad_mm"]) == pytest.approx(mad, abs=0.01)
        assert float(r["leg_length_difference_mm"]) == pytest.approx(6.5, abs=0.01)
    out = tmp_path / "no_ankle.csv"
    run_batch([folder / "ok0.dcm"], out, FakeMeasurer(drop=("ankle_medial",)), BatchOptions(workers=1))
    for r in _read(out):  # no tibia, so no leg length and no difference; femur and JLCA stay
        assert r["tibia_mm"] == r["leg_mm"] == r["leg_length_difference_mm"] == r["mad_mm"] == ""
        assert float(r["femur_mm"]) == pytest.approx(FakeMeasurer.LENGTHS[r["side"]][0], abs=0.01)
        assert float(r["jlca"]) == pytest.approx(_fake_panel(r["side"])[0], abs=0.01)


def test_scan_json_has_the_panel_and_the_leg_length_difference(folder):
    from cpak_cli.input.loader import load_image

    res = FakeMeasurer().measure_images([load_image(folder / "ok0.dcm")])[0]
    j = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert j["leg_length_difference_mm"] == pytest.approx(6.5, abs=0.01)
    for side in ("right", "left"):
        jlca, mad, femur, tibia = _fake_panel(side)
        leg = j["legs"][side]
        assert [leg["jlca"], leg["mad_mm"], leg["femur_mm"], leg["tibia_mm"]] == pytest.approx(
            [jlca, mad, femur, tibia], abs=0.01)
        assert leg["normal"]["jlca"]["range"] == [0.0, 2.0] and "landmarks" in leg
    res.legs.pop("left")
    assert res.to_json()["leg_length_difference_mm"] is None


def test_kill_and_resume_gives_identical_csv(folder, tmp_path):
    full = tmp_path / "full.csv"
    run_batch(find_inputs(folder), full, FakeMeasurer(), BatchOptions(workers=1, chunk=2))
    part = tmp_path / "part.csv"

    def die(summary):
        if summary.files == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(find_inputs(folder), part, FakeMeasurer(), BatchOptions(workers=1, chunk=2), on_file=die)
    # simulate a torn last line from a hard kill
    with open(part, "a") as fh:
        fh.write("/half/written,row")
    with pytest.raises(Exception, match="--resume"):
        run_batch(find_inputs(folder), part, FakeMeasurer(), BatchOptions(workers=1))
    s = run_batch(find_inputs(folder), part, FakeMeasurer(), BatchOptions(workers=1, chunk=2, resume=True))
    # the torn line is cut and the last finished input is measured again (it may be incomplete)
    assert s.skipped == 2 and s.files == 6
    assert part.read_bytes() == full.read_bytes()


def test_resume_after_a_kill_between_the_two_legs_of_a_film(folder, tmp_path):
    full = tmp_path / "full.csv"
    run_batch(find_inputs(folder), full, FakeMeasurer(), BatchOptions(workers=1))
    lines = full.read_bytes().splitlines(keepends=True)
    legs_of = [ln for ln in lines if b",right," in ln or b",left," in ln]
    cut = lines.index(legs_of[2]) + 1  # header + first film's two legs + the right leg of the second
    part = tmp_path / "part.csv"
    part.write_bytes(b"".join(lines[:cut]))
    (tmp_path / "part.csv.run.json").write_bytes((tmp_path / "full.csv.run.json").read_bytes())
    split_film = legs_of[2].split(b",")[0].decode()
    done = done_inputs(part)
    assert split_film not in done and split_film.encode() not in part.read_bytes()
    assert part.read_bytes() == b"".join(lines[: cut - 1])
    run_batch(find_inputs(folder), part, FakeMeasurer(), BatchOptions(workers=1, resume=True))
    assert part.read_bytes() == full.read_bytes()


def test_parallel_decoding_matches_serial(folder, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    run_batch(find_inputs(folder), a, FakeMeasurer(), BatchOptions(workers=1))
    run_batch(find_inputs(folder), b, FakeMeasurer(), BatchOptions(workers=2))
    assert a.read_bytes() == b.read_bytes()


def test_anonymize_hashes_identifiers(folder, tmp_path):
    out = tmp_path / "anon.csv"
    run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1, anonymize_salt="s3cret"))
    rows = _read(out)
    assert all(str(folder) not in r["input"] for r in rows)
    first = sorted(find_inputs(folder))[0]
    assert rows[0]["input"] == salted_hash(str(first), "s3cret") and len(rows[0]["input"]) == 24
    text = out.read_text()
    assert str(folder) not in text and "nospacing.dcm" not in text  # no path in any cell, errors included
    s = run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1, anonymize_salt="s3cret", resume=True))
    assert s.files == 1 and s.skipped == 7
    with pytest.raises(Exception, match="different --anonymize"):
        run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1, resume=True))
    with pytest.raises(Exception, match="different --anonymize"):
        run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1, anonymize_salt="other", resume=True))


def test_fallback_spacing_fills_only_files_without_spacing(folder, tmp_path):
    out = tmp_path / "fb.csv"
    run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1), pixel_spacing=(0.3, 0.3))
    rows = _read(out)
    by = {Path(r["input"]).name: r for r in rows}
    assert by["nospacing.dcm"]["spacing_source"] == "user" and by["nospacing.dcm"]["spacing_row_mm"] == "0.3000"
    assert by["ok0.dcm"]["spacing_source"] == "PixelSpacing" and by["ok0.dcm"]["spacing_row_mm"] == "0.1500"


def test_fake_legs_are_far_from_every_cpak_boundary():
    # the rows test expects type I: the right leg must not sit on an edge (aHKA -3, JLO 171)
    from cpak_cli.core.cpak import is_borderline

    ldfa, mpta, _ = FakeMeasurer.LEGS["right"]
    assert not is_borderline(mpta - ldfa, mpta + ldfa, margin=0.9)


@pytest.mark.parametrize("cell,want", [
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(1)", "'@SUM(1)"),
    ("\tcmd", "'\tcmd"), ("\rcmd", "'\rcmd"), ("-inf", "'-inf"), ("-", "'-"),
    ("-2.0000", "-2.0000"), ("+3.5", "+3.5"), ("-1e-3", "-1e-3"), ("-.5", "-.5"), ("170.9999", "170.9999"),
    ("", ""), ("I", "I"), ("borderline;low_confidence", "borderline;low_confidence"), ("/a/=b.dcm", "/a/=b.dcm"),
])
def test_neutralise_cell(cell, want):
    from cpak_cli.pipeline.batch_csv import neutralise_cell

    assert neutralise_cell(cell) == want


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_csv_cells_neutralised_and_resume_still_matches(tmp_path, monkeypatch):
    from cpak_cli.pipeline.batch_csv import FORMULA_START

    src = tmp_path / "=films"
    src.mkdir()
    for i in range(3):
        ds = make_dx()
        ds.StudyDate = "@SUM(1)" if i == 1 else "20240131"
        write(ds, src / f"ok{i}.dcm")
    (src / "notes").write_text("not a DICOM file\n")
    monkeypatch.chdir(tmp_path)
    inputs = find_inputs(Path("=films"))  # relative paths: every input cell starts with "="
    full = tmp_path / "full.csv"
    run_batch(inputs, full, FakeMeasurer(), BatchOptions(workers=1))
    rows = _read(full)
    assert len(rows) == 7
    for r in rows:
        assert r["input"].startswith("'=films/")
        for k, v in r.items():
            if v.startswith(FORMULA_START):
                float(v)  # only numbers may start with a formula character
    assert any(r["study_date"] == "'@SUM(1)" for r in rows)
    assert [r["error"] for r in rows if r["error"]][0].startswith("'=films/notes")
    legs = [r for r in rows if not r["error"]]
    assert all(r["ahka"].startswith("-") and float(r["ahka"]) == pytest.approx(-3.0, abs=1e-4)
               for r in legs if r["side"] == "right")
    # resume reads its own neutralised cells back: everything already there is skipped ...
    s = run_batch(inputs, full, FakeMeasurer(), BatchOptions(workers=1, resume=True))
    assert s.skipped == 3 and s.files == 1  # the last input is measured again
    assert len(_read(full)) == 7
    # ... and a run cut after the first film gives the same file once resumed
    part = tmp_path / "part.csv"

    def die(summary):
        if summary.files == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(inputs, part, FakeMeasurer(), BatchOptions(workers=1, chunk=1), on_file=die)
    s = run_batch(inputs, part, FakeMeasurer(), BatchOptions(workers=1, resume=True))
    assert s.skipped == 1 and s.files == 3
    assert part.read_bytes() == full.read_bytes()


def test_resume_of_a_csv_from_another_version_names_the_columns(folder, tmp_path):
    """A CSV written by a version with other columns cannot be resumed, and the error says why."""
    import json as _json

    from cpak_cli.pipeline.batch_csv import COLUMNS, meta_path

    out = tmp_path / "old.csv"
    run_batch(find_inputs(folder)[:2], out, FakeMeasurer(), BatchOptions(workers=1))
    mp = meta_path(out)
    meta = _json.loads(mp.read_text())
    meta["columns"] = len(COLUMNS) - 7
    mp.write_text(_json.dumps(meta))
    with pytest.raises(Exception, match=f"has {len(COLUMNS) - 7} columns and this version writes {len(COLUMNS)}"):
        run_batch(find_inputs(folder), out, FakeMeasurer(), BatchOptions(workers=1, resume=True))


def test_next_group_starts_before_the_group_before_is_finished(tmp_path, tiny_weights, one_torch_thread):
    """The batch loop overlaps groups: group k+1 is started (detector, crops in the background)
    before group k is finished (networks), and the rows equal those of measuring each group in
    one call (a measurer without start/finish)."""
    from cpak_cli.options import BatchOptions
    from cpak_cli.pipeline.batch import run_batch
    from cpak_cli.pipeline.decoding import find_inputs
    from cpak_cli.pipeline.film import Measurer
    from tests.factories import phantom_folder

    films = find_inputs(phantom_folder(tmp_path / "films", seed=31, count=3))
    measurer = Measurer(weights_dir=tiny_weights, device="cpu")
    order = []

    class Recording:
        def start(self, images, boxes=None):
            order.append(("start", [Path(im.path).name for im in images]))
            return measurer.start(images, boxes)

        def finish(self, started, release=True):
            order.append(("finish", [Path(im.path).name for im in started.images]))
            return measurer.finish(started, release)

        def measure_images(self, images, boxes=None, release=True):
            return measurer.measure_images(images, boxes, release)

    class OneCall:  # no start/finish: each group measured in one call
        def measure_images(self, images, boxes=None, release=True):
            return measurer.measure_images(images, boxes, release)

    opts = BatchOptions(workers=1, chunk=1)
    run_batch(films, tmp_path / "a.csv", Recording(), opts)
    run_batch(films, tmp_path / "b.csv", OneCall(), opts)
    names = [p.name for p in films]
    assert order == [("start", [names[0]]), ("start", [names[1]]), ("finish", [names[0]]),
                     ("start", [names[2]]), ("finish", [names[1]]), ("finish", [names[2]])]
    assert _read(tmp_path / "a.csv") == _read(tmp_path / "b.csv")
    assert sorted({Path(r["input"]).name for r in _read(tmp_path / "a.csv")}) == names  # every film has rows
    order.clear()  # groups of two: the films of a group stay in input order, and so do the rows
    run_batch(films, tmp_path / "c.csv", Recording(), BatchOptions(workers=1, chunk=2))
    assert order == [("start", names[:2]), ("start", names[2:]), ("finish", names[:2]), ("finish", names[2:])]
    run_batch(films, tmp_path / "d.csv", OneCall(), BatchOptions(workers=1, chunk=2))  # same forward-pass batches
    assert _read(tmp_path / "c.csv") == _read(tmp_path / "d.csv")


def test_a_failing_start_measures_that_group_one_film_at_a_time(folder, tmp_path):
    """start() raising (e.g. the detector on a broken film) costs nothing: the group is measured
    one film at a time and every good film keeps its rows."""
    from cpak_cli.options import BatchOptions
    from cpak_cli.pipeline.batch import run_batch
    from cpak_cli.pipeline.decoding import find_inputs
    from tests.factories import FakeMeasurer

    class StartFails(FakeMeasurer):
        def start(self, images, boxes=None):
            raise RuntimeError("detector exploded")

        def finish(self, started, release=True):  # never reached: start always fails
            raise AssertionError("finish without a started group")

    inputs = find_inputs(folder)
    failing = StartFails()
    run_batch(inputs, tmp_path / "a.csv", failing, BatchOptions(workers=1, chunk=4))
    run_batch(inputs, tmp_path / "b.csv", FakeMeasurer(), BatchOptions(workers=1, chunk=4))
    rows = _read(tmp_path / "a.csv")
    assert rows == _read(tmp_path / "b.csv")
    measured = {r["input"] for r in rows if not r["error"]}
    assert len(measured) >= 2 and failing.calls == len(measured)  # one measure_images call per film


def test_an_error_while_writing_releases_the_group_already_started(folder, tmp_path, monkeypatch):
    """When writing a group's rows fails (here the progress callback), the next group, already
    started, is stopped and its films released before the error propagates."""
    from cpak_cli.pipeline import batch as batch_mod

    released = []
    real = batch_mod.release_group
    monkeypatch.setattr(batch_mod, "release_group", lambda group: (released.extend(d.path for d in group), real(group)))

    def boom(summary):
        raise RuntimeError("disk full")

    inputs = find_inputs(folder)
    with pytest.raises(RuntimeError, match="disk full"):
        run_batch(inputs, tmp_path / "a.csv", FakeMeasurer(), BatchOptions(workers=1, chunk=1), on_file=boom)
    assert released == [str(inputs[0]), str(inputs[1])]  # the written group, then the started one
