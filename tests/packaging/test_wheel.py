"""The wheel carries its models: build it, install it into a bare folder, run `cpak` from elsewhere.

Issue 12 item 1: a non-editable install (`pip install .`, a wheel, `pipx install`) must give a
`cpak` that finds the shipped weights and model cards (package data, `cpak_cli/weights/`).
The wheel is built without build isolation (the installed setuptools, no network) from a copy of
the files a build reads, so nothing is written into the checkout. About 10 s, mostly `cpak measure`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("detector", "hip", "knee", "ankle")
#: a leg row of `cpak measure`'s table that ends in a CPAK type (I..IX)
CPAK_ROW = re.compile(r"\b(right|left)\b[^\n]*[│|]\s*(I|II|III|IV|V|VI|VII|VIII|IX)\s*[│|]")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "cpak_cli", src / "cpak_cli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    res = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                "--no-index", "-q", "-w", str(out)], cwd=out)
    assert res.returncode == 0, res.stdout + res.stderr
    wheels = list(out.glob("cpak_cli-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_models_and_measures_from_elsewhere(wheel, tmp_path):
    # 1. the wheel holds every shipped weights file and model card, byte for byte
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for stem in SHIPPED:
            for ext in (".safetensors", ".json"):
                member = f"cpak_cli/weights/{stem}{ext}"
                assert member in names, f"{member} missing from {wheel.name}"
                assert zf.getinfo(member).file_size == (ROOT / member).stat().st_size, member

    # 2. install it into a bare target folder (no editable finder, no checkout on the path)
    target = tmp_path / "site"
    res = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                "--target", str(target), str(wheel)], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr

    work = tmp_path / "elsewhere"  # not the checkout: a relative weights/ path cannot be found
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CPAK_WEIGHTS_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    cpak = [sys.executable, "-c", "from cpak_cli.cli import app; app()"]

    # the installed package is the one imported, and its weights are the wheel's
    res = _run([sys.executable, "-c", "import cpak_cli, cpak_cli.networks.model_cards as m; print(cpak_cli.__file__); "
                "print(m.weights_dir())"], cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    mod_file, wdir = res.stdout.split()
    assert Path(mod_file).resolve().is_relative_to(target.resolve()), mod_file
    assert Path(wdir) == (target / "cpak_cli" / "weights").resolve()

    # 3. `cpak models` lists the four shipped models, all valid, from the installed folder
    res = _run(cpak + ["models", "--json"], cwd=work, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    listed = json.loads(res.stdout)
    assert Path(listed["weights_dir"]).resolve() == (target / "cpak_cli" / "weights").resolve()
    models = {m["name"]: m for m in listed["models"]}
    assert set(SHIPPED) <= set(models), sorted(models)
    assert all(models[n]["valid"] for n in SHIPPED), {n: models[n].get("error") for n in SHIPPED}

    # 4. `cpak measure` on the sample film works from another directory
    res = _run(cpak + ["measure", str(ROOT / "sample_data" / "case0001.dcm"), "--device", "cpu"], cwd=work, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "weights file not found" not in res.stdout + res.stderr
    assert "CPAK" in res.stdout and CPAK_ROW.search(res.stdout), res.stdout
