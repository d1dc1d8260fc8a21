"""`cpak measure --sr/--overlay .dcm` and `cpak batch --sr-dir` through the CLI and the API, with
a stand-in measurer (no networks): the files land where asked, in the film's study, anonymized
under --anonymize."""

import json
import shutil

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from cpak_cli import api
from cpak_cli.cli import app
from cpak_cli.outputs.sr import LEG_NUMBERS
from cpak_cli.pipeline.batch_csv import salted_hash
from tests.factories import LegsMeasurer, write_leg_film

hd = pytest.importorskip("highdicom")
runner = CliRunner()


@pytest.fixture(autouse=True)
def fake_models(monkeypatch):
    monkeypatch.setattr(api, "measurer_for", lambda options=None, need_detector=True: LegsMeasurer())


def test_measure_writes_sr_and_secondary_capture(tmp_path):
    film = write_leg_film(tmp_path)
    res = runner.invoke(app, ["measure", str(film), "--json", "--sr", str(tmp_path / "out" / "{stem}.sr.dcm"),
                              "--overlay", str(tmp_path / "ov.dcm")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    sr = hd.sr.srread(tmp_path / "out" / "film.sr.dcm")
    src = pydicom.dcmread(film)
    assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.PatientID == src.PatientID
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    for side in ("right", "left"):
        got = {m.name.value: m.value for m in groups[f"{side} leg"].get_measurements()}
        assert got == {n.name[0]: doc["legs"][side][n.key] for n in LEG_NUMBERS}
    sc = pydicom.dcmread(tmp_path / "ov.dcm")
    assert sc.StudyInstanceUID == src.StudyInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


def test_measure_sr_of_a_png_is_a_one_line_error(tmp_path):
    import cv2

    png = tmp_path / "film.png"
    cv2.imwrite(str(png), np.arange(2000, dtype=np.uint8).reshape(50, 40))
    res = runner.invoke(app, ["measure", str(png), "--pixel-spacing", "2", "2", "--sr", str(tmp_path / "sr.dcm")])
    assert res.exit_code == 2
    assert f"{png}: a DICOM SR needs a DICOM film" in res.stderr
    assert not (tmp_path / "sr.dcm").exists()


def test_batch_sr_dir_one_sr_per_film(tmp_path):
    folder = tmp_path / "in"
    for sub in ("a", "b"):  # two films of the same name
        (folder / sub).mkdir(parents=True)
        write_leg_film(folder / sub)
    csv_path, sr_dir = tmp_path / "out.csv", tmp_path / "sr"
    res = runner.invoke(app, ["batch", str(folder), "-r", "--csv", str(csv_path), "--sr-dir", str(sr_dir),
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in sr_dir.iterdir())
    assert len(names) == 2 and all(n.startswith("film_") and n.endswith(".dcm") for n in names)
    refs = {pydicom.dcmread(sr_dir / n).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID for n in names}
    assert refs == {pydicom.dcmread(folder / s / "film.dcm").SOPInstanceUID for s in ("a", "b")}


def test_batch_sr_dir_anonymized(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    film = write_leg_film(folder)
    csv_path, sr_dir = tmp_path / "out.csv", tmp_path / "sr"
    res = runner.invoke(app, ["batch", str(folder), "--csv", str(csv_path), "--sr-dir", str(sr_dir),
                              "--workers", "1", "--anonymize", "--salt", "pepper"])
    assert res.exit_code == 0, res.output
    (sr,) = sr_dir.iterdir()
    assert sr.name == salted_hash(str(film), "pepper") + ".dcm"
    assert sr.stem in csv_path.read_text()  # the CSV's input column names the same film
    raw = sr.read_bytes()
    assert b"SECRET-ID" not in raw and b"DOE" not in raw and str(film).encode() not in raw


def test_batch_refuses_sr_dir_inside_the_input_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_leg_film(folder)
    res = runner.invoke(app, ["batch", str(folder), "-r", "--csv", str(tmp_path / "o.csv"),
                              "--sr-dir", str(folder / "sr"), "--workers", "1"])
    assert res.exit_code == 2 and "--sr-dir must not be inside the input folder" in res.output
    assert not (folder / "sr").exists()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_cli_outputs_pass_dciodvfy(tmp_path):
    from tests.factories import dciodvfy_errors

    film = write_leg_film(tmp_path)
    res = runner.invoke(app, ["measure", str(film), "--sr", str(tmp_path / "sr.dcm"), "--overlay", str(tmp_path / "ov.dcm")])
    assert res.exit_code == 0, res.output
    for out in ("sr.dcm", "ov.dcm"):
        assert dciodvfy_errors(tmp_path / out)[0] == []
