"""`measure`, `batch` and `angles` end to end through the real CLI, on tiny phantoms with tiny
randomly initialised models (mechanics and consistency, not accuracy: that is the slow test)."""

import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from cpak_cli.cli import app

torch = pytest.importorskip("torch")
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_cases(tmp_path_factory):
    from tests.factories import phantom_folder

    return phantom_folder(tmp_path_factory.mktemp("cases"), seed=5, count=2)


def test_models_lists_tiny_weights(tiny_weights):
    res = runner.invoke(app, ["models", "--weights-dir", str(tiny_weights), "--json"])
    assert res.exit_code == 0, res.output
    names = {m["name"] for m in json.loads(res.stdout)["models"]}
    assert names == {"hip", "knee", "ankle", "detector"}


@pytest.mark.parametrize("use_boxes", [True, False])
def test_measure_json_landmarks_out_overlay_and_angles(tiny_weights, tiny_cases, tmp_path, use_boxes):
    scan = tiny_cases / "case0000.dcm"
    lm_out, overlay = tmp_path / "lm.json", tmp_path / "ov.png"
    args = ["measure", str(scan), "--json", "--weights-dir", str(tiny_weights), "--device", "cpu",
            "--landmarks-out", str(lm_out), "--overlay", str(overlay)]
    if use_boxes:
        args += ["--boxes", str(tiny_cases / "case0000.boxes.json")]
    res = runner.invoke(app, args)
    assert res.exit_code in (0, 1), res.output  # 1 = no leg measurable (random models): still a clean exit
    out = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    assert out["image"] == str(scan) and out["spacing_source"]
    assert set(out["models"]) == ({"hip", "knee", "ankle"} | (set() if use_boxes else {"detector"}))
    assert out["box_source"] == ("file" if use_boxes else "detector")
    if use_boxes:
        assert set(out["legs"]) == {"right", "left"}
        for leg in out["legs"].values():
            assert set(leg["landmarks"]) == {
                "femoral_head", "femoral_condyle_lateral", "femoral_condyle_medial", "tibial_plateau_lateral",
                "tibial_plateau_medial", "knee_center", "ankle_lateral", "ankle_medial"}
    assert all("mhka" in leg for leg in out["legs"].values())
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the landmark file measure wrote re-measures to the same angles through `cpak angles`
    res2 = runner.invoke(app, ["angles", str(lm_out), "--json"])
    measured = {s: leg for s, leg in out["legs"].items() if leg["error"] is None}
    if measured:
        assert res2.exit_code == 0, res2.output
        again = json.loads(res2.stdout)["legs"]
        for side, leg in measured.items():
            for k in ("ldfa", "mpta", "ahka", "jlo", "mhka"):
                assert again[side][k] == pytest.approx(leg[k], abs=1e-9)
            assert again[side]["cpak"] == leg["cpak"]
    else:  # random tiny models: nothing measurable, and `angles` must say so the same way
        assert res2.exit_code == 2 and "no leg could be measured" in res2.output


def test_measure_bad_inputs_one_line(tiny_weights, tmp_path):
    txt = tmp_path / "notes.dcm"
    txt.write_text("not a dicom")
    for target in (txt, tmp_path / "missing.dcm"):
        res = runner.invoke(app, ["measure", str(target), "--weights-dir", str(tiny_weights)])
        assert res.exit_code == 2
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(target) in lines[0] and "Traceback" not in res.output
    res = runner.invoke(app, ["measure", str(txt), "--weights-dir", str(tmp_path / "nowhere")])
    assert res.exit_code == 2


def test_measure_dicom_overlay(tiny_weights, tiny_cases, tmp_path):
    import pydicom

    out = tmp_path / "ov.dcm"
    res = runner.invoke(app, ["measure", str(tiny_cases / "case0001.dcm"), "--boxes", str(tiny_cases / "case0001.boxes.json"),
                              "--weights-dir", str(tiny_weights), "--overlay", str(out)])
    assert res.exit_code in (0, 1), res.output
    ds = pydicom.dcmread(out)
    assert ds.Modality == "OT" and ds.SamplesPerPixel == 3 and ds.pixel_array.ndim == 3


def test_batch_rows_errors_and_resume(tiny_weights, tiny_cases, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in tiny_cases.glob("*.dcm"):
        shutil.copy(p, folder / p.name)
    data = (folder / "case0000.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 3])
    (folder / "readme").write_text("text, not DICOM")
    csv_path = tmp_path / "out.csv"
    args = ["batch", str(folder), "--csv", str(csv_path), "--weights-dir", str(tiny_weights), "--workers", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(csv_path)))
    assert "mhka" in rows[0]
    by_file = {}
    for r in rows:
        by_file.setdefault(r["input"].rsplit("/", 1)[-1], []).append(r)
    assert len(by_file["truncated.dcm"]) == 1 and by_file["truncated.dcm"][0]["error"]
    assert len(by_file["readme"]) == 1 and "not a DICOM" in by_file["readme"][0]["error"]
    for name in ("case0000.dcm", "case0001.dcm"):
        assert all(r["sha256"] and r["tool_version"] for r in by_file[name])
    before = csv_path.read_bytes()
    res = runner.invoke(app, args + ["--resume"])
    assert res.exit_code == 0 and "3 skipped" in res.output  # the last input is measured again
    assert csv_path.read_bytes() == before
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--resume" in res.output


def test_measure_many_films_in_one_process(tiny_weights, tiny_cases, tmp_path):
    """Several films: one result per film in input order, a bad file gets its one-line error and
    exit 2 while the others are still measured and written ({stem} names each output)."""
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom at all")
    scans = [tiny_cases / "case0000.dcm", bad, tiny_cases / "case0001.dcm"]
    res = runner.invoke(app, ["measure", *map(str, scans), "--json", "--weights-dir", str(tiny_weights),
                              "--device", "cpu", "--overlay", str(tmp_path / "ov" / "{stem}.png")])
    assert res.exit_code == 2, res.output
    docs = json.loads(res.stdout)
    assert [d["image"] for d in docs] == [str(s) for s in scans]
    assert docs[1]["error"].startswith(f"{bad}: not a DICOM file") and "legs" not in docs[1]
    assert docs[0]["legs"] and docs[2]["legs"]
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["case0000.png", "case0001.png"]
    assert f"error: {bad}: not a DICOM file" in res.stderr


def test_measure_many_films_refuses_one_output_name_for_all(tiny_weights, tiny_cases, tmp_path):
    scans = [tiny_cases / "case0000.dcm", tiny_cases / "case0001.dcm"]
    res = runner.invoke(app, ["measure", *map(str, scans), "--weights-dir", str(tiny_weights), "--device", "cpu",
                              "--landmarks-out", str(tmp_path / "lm.json")])
    assert res.exit_code == 2
    assert "several films would write the same file" in res.stderr and "{stem}" in res.stderr
    assert not (tmp_path / "lm.json").exists()
