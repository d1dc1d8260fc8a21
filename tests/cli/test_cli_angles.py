import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cpak_cli.cli import app
from tests.factories import build_leg

runner = CliRunner()


def _write(tmp_path, spacing, legs, name="lm.json"):
    p = tmp_path / name
    p.write_text(json.dumps({"image": "scan.dcm", "pixel_spacing_mm": list(spacing), "legs": legs}))
    return p


@pytest.mark.parametrize("spacing", [(0.143, 0.143), (0.2, 0.125)])
def test_angles_json_matches_construction(tmp_path, spacing):
    legs = {
        "right": build_leg(86.4, 84.9, side="right", spacing_mm=spacing, rotation_deg=3.0),
        "left": build_leg(91.2, 88.0, side="left", spacing_mm=spacing, origin_mm=(400.0, 100.0)),
    }
    p = _write(tmp_path, spacing, legs)
    res = runner.invoke(app, ["angles", str(p), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    r, lt = out["legs"]["right"], out["legs"]["left"]
    assert r["ldfa"] == pytest.approx(86.4, abs=0.01) and r["mpta"] == pytest.approx(84.9, abs=0.01)
    assert r["ahka"] == pytest.approx(-1.5, abs=0.01) and r["jlo"] == pytest.approx(171.3, abs=0.01)
    assert r["cpak"] == "II"
    assert lt["ldfa"] == pytest.approx(91.2, abs=0.01) and lt["mpta"] == pytest.approx(88.0, abs=0.01)
    assert lt["cpak"] == "IV"  # aHKA -3.2 varus, JLO 179.2 neutral


def test_angles_table_and_partial_leg(tmp_path):
    right = build_leg(87.0, 87.0)
    left = build_leg(87.0, 87.0, side="left", origin_mm=(400.0, 100.0))
    left.pop("ankle_lateral")
    p = _write(tmp_path, (0.15, 0.15), {"right": right, "left": left})
    res = runner.invoke(app, ["angles", str(p)])
    assert res.exit_code == 0
    assert "87.0" in res.stdout and "0.0" in res.stdout
    assert "not measured" in res.stdout and "ankle_lateral" in res.stdout


@pytest.mark.parametrize("right_on_left", [True, False])
def test_angles_json_and_table_carry_mhka(tmp_path, right_on_left):
    spacing = (0.2, 0.12)
    legs = {
        "right": build_leg(87.0, 86.0, side="right", spacing_mm=spacing, rotation_deg=-6.0, mhka=-4.4,
                           patient_right_on_image_left=right_on_left),
        "left": build_leg(88.0, 91.0, side="left", spacing_mm=spacing, origin_mm=(400.0, 100.0), mhka=3.7,
                          patient_right_on_image_left=right_on_left),
    }
    p = tmp_path / "lm.json"
    p.write_text(json.dumps({"image": "scan.dcm", "pixel_spacing_mm": list(spacing), "legs": legs,
                             "patient_right_on_image_left": right_on_left}))
    res = runner.invoke(app, ["angles", str(p), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["legs"]
    assert out["right"]["mhka"] == pytest.approx(-4.4, abs=0.01)  # varus
    assert out["left"]["mhka"] == pytest.approx(3.7, abs=0.01)  # valgus
    res = runner.invoke(app, ["angles", str(p)])
    assert res.exit_code == 0
    header = next(ln for ln in res.stdout.splitlines() if "LDFA" in ln)
    cells = [c.strip() for c in header.strip("┃│ ").split("┃")]
    assert cells[cells.index("JLO") + 1] == "mHKA"
    right = next(ln for ln in res.stdout.splitlines() if "right" in ln)
    assert "-4.4" in right and "3.7" in next(ln for ln in res.stdout.splitlines() if " left " in ln)


def test_angles_partial_leg_still_reports_mhka(tmp_path):
    right = build_leg(87.0, 87.0, mhka=2.2)
    right["femoral_condyle_lateral"] = None
    p = _write(tmp_path, (0.15, 0.15), {"right": right})
    res = runner.invoke(app, ["angles", str(p), "--json"])
    leg = json.loads(res.stdout)["legs"]["right"]
    assert leg["error"] and "femoral_condyle_lateral" in leg["error"] and leg["cpak"] is None
    assert leg["mhka"] == pytest.approx(2.2, abs=0.01)
    res = runner.invoke(app, ["angles", str(p)])
    assert "2.2" in res.stdout and "not measured" in res.stdout


def test_angles_pixel_spacing_override_and_missing_spacing(tmp_path):
    legs = {"right": build_leg(85.0, 89.0, spacing_mm=(0.1, 0.2))}
    p = tmp_path / "nospacing.json"
    p.write_text(json.dumps({"legs": legs}))
    res = runner.invoke(app, ["angles", str(p)])
    assert res.exit_code == 2 and "pixel-spacing" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["angles", str(p), "--json", "--pixel-spacing", "0.1", "0.2"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["legs"]["right"]["ldfa"] == pytest.approx(85.0, abs=0.01)


def test_angles_bad_files_exit_nonzero_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    for target in (bad, tmp_path / "missing.json"):
        res = runner.invoke(app, ["angles", str(target)])
        assert res.exit_code == 2
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(target) in lines[0] and "Traceback" not in res.output


def test_console_script_version_and_help():
    out = subprocess.run([sys.executable, "-m", "cpak_cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("cpak-cli ")
    out = subprocess.run(
        [sys.executable, "-c", "import sys, cpak_cli.cli; print('torch' in sys.modules)"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "False"  # --help must not pay for importing torch


def test_angles_json_has_the_film_level_leg_length_difference(tmp_path):
    right = build_leg(87.0, 88.0, side="right", spacing_mm=(0.2, 0.2), femur_mm=450.0, tibia_mm=380.0)
    left = build_leg(86.0, 90.0, side="left", spacing_mm=(0.2, 0.2), origin_mm=(400.0, 100.0), femur_mm=440.0,
                     tibia_mm=372.0)
    path = _write(tmp_path, [0.2, 0.2], {"right": right, "left": left})
    res = runner.invoke(app, ["angles", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    lengths = {s: out["legs"][s]["leg_mm"] for s in ("right", "left")}
    assert out["leg_length_difference_mm"] == pytest.approx(lengths["right"] - lengths["left"], abs=1e-9)
    assert out["leg_length_difference_mm"] == pytest.approx((450.0 + 380.0) - (440.0 + 372.0), abs=0.5)
