import json

import pytest
from typer.testing import CliRunner

from cpak_cli.cli import app
from tests.factories import build_leg


def _write(path, legs, spacing=(0.1, 0.1)):
    path.write_text(json.dumps({"image": "x.dcm", "pixel_spacing_mm": list(spacing), "legs": legs}))


def test_evaluate_known_answers(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir(), pred_dir.mkdir()
    # case A: exact prediction; case B: femoral head 20 px off in x (2 mm at col 0.1), one landmark missed
    ta = {"right": build_leg(87.0, 87.0, spacing_mm=(0.1, 0.1)),
          "left": build_leg(90.0, 93.0, side="left", spacing_mm=(0.1, 0.1), origin_mm=(400, 100))}
    tb = {"right": build_leg(85.0, 88.0, spacing_mm=(0.1, 0.1))}
    _write(truth_dir / "a.landmarks.json", ta)
    _write(truth_dir / "b.landmarks.json", tb)
    _write(pred_dir / "a.landmarks.json", ta)
    pb = {"right": dict(tb["right"])}
    pb["right"]["femoral_head"] = (tb["right"]["femoral_head"][0] + 20.0, tb["right"]["femoral_head"][1])
    pb["right"]["ankle_medial"] = None
    _write(pred_dir / "b.landmarks.json", pb)
    res = CliRunner().invoke(app, ["evaluate", str(pred_dir), str(truth_dir), "--json-out", str(tmp_path / "r.json"),
                                   "--csv-out", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n_legs"] == 3
    overall = rep["landmarks"]["overall"]
    assert overall["n"] == 24 and overall["missed"] == 1
    assert rep["landmarks"]["femoral_head"]["median"] == pytest.approx(0.0)
    assert rep["landmarks"]["femoral_head"]["p95"] == pytest.approx(2.0 * 0.9, abs=1e-6)  # linear percentile of [0,0,2]
    assert rep["landmarks"]["joint:hip"]["sdr_1mm"] == pytest.approx(2 / 3)
    # leg b cannot be measured (missing ankle), so it is 'not measured' in CPAK
    assert rep["cpak"]["not_measured"] == 1
    assert rep["cpak"]["accuracy"] == pytest.approx(2 / 3)
    # leg b has no ankle_medial: no MPTA or CPAK, but its LDFA (femur complete) still counts
    assert rep["angles"]["ldfa"]["medae"] == pytest.approx(0.0, abs=1e-9) and rep["angles"]["ldfa"]["n"] == 3
    assert rep["angles"]["mpta"]["n"] == 2
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("case,side,")


def test_evaluate_angle_error(tmp_path):
    t = {"right": build_leg(87.0, 87.0, spacing_mm=(0.1, 0.1))}
    p = {"right": build_leg(88.5, 86.0, spacing_mm=(0.1, 0.1))}
    _write(tmp_path / "c.landmarks.json", t)
    (tmp_path / "p").mkdir()
    _write(tmp_path / "p" / "c.json", p)
    from cpak_cli.evaluation.files import evaluate_pairs, pair_files

    rep = evaluate_pairs(pair_files(tmp_path / "p", tmp_path / "c.landmarks.json"))
    assert rep["angles"]["ldfa"]["medae"] == pytest.approx(1.5, abs=1e-6)
    assert rep["angles"]["ahka"]["medae"] == pytest.approx(2.5, abs=1e-6)
    assert rep["cpak"]["confusion"][1][0] == 1  # true II (aHKA 0, JLO 174), predicted I (aHKA -2.5)


def test_evaluate_no_match_is_one_line_error(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "x.json", {"right": build_leg(87, 87)})
    _write(tmp_path / "b" / "y.json", {"right": build_leg(87, 87)})
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 2 and "no prediction file matches" in res.output
