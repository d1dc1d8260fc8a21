"""benchmarks/bench_throughput.py and benchmarks/gpu_check.py on tiny phantom films with tiny
random models: the stage timers see every stage, the networks-only pass replays the very network
inputs, and the GPU-vs-CPU comparison finds a moved or missing landmark."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def tiny_films(tmp_path_factory):
    from tests.factories import phantom_folder

    return phantom_folder(tmp_path_factory.mktemp("films"), seed=21, count=3)


def test_bench_throughput_times_every_stage_and_replays_the_networks(tiny_films, tiny_weights, tmp_path,
                                                                    one_torch_thread):
    bench = _load("bench_throughput")
    out_json = tmp_path / "bench.json"
    assert bench.main([str(tiny_films), "--device", "cpu", "--workers", "1", "--chunk", "2",
                       "--weights-dir", str(tiny_weights), "--decode-films", "2", "--json", str(out_json)]) == 0
    out = json.loads(out_json.read_text())
    e2e = out["end_to_end"]
    assert e2e["films"] == 3 and e2e["films_per_s"] > 0 and e2e["stages_not_found"] == []
    assert all(v is not None and v >= 0 for v in e2e["stages_s"].values()), e2e["stages_s"]
    calls = e2e["stage_calls"]
    assert calls["wait_for_decode"] == calls["film_rows"] == calls["write_film"] == 3
    assert calls["start_group"] == calls["finish_group"] == calls["detector"] == 2  # chunks of 2 films
    net = out["networks_only"]
    # the replay runs each network once over every input it saw: one detector frame per film, and
    # one crop per made crop (make_crop calls) for the landmark networks
    inputs = {m["stage"]: 0 for m in net["modules"]}
    for m in net["modules"]:
        inputs[m["stage"]] += m["inputs"]
    assert inputs["detector_network"] == 3 and inputs.get("networks", 0) == calls["crops"]
    assert net["calls_not_captured"] == 0 and net["films_per_s"] > 0
    assert out["decode"]["films"] == 2
    # the timers are gone afterwards: the package runs unwrapped
    from cpak_cli.networks import inference

    assert inference.predict.__module__ == "cpak_cli.networks.models"


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_gpu_check_compare_finds_a_moved_and_a_missing_landmark(tiny_films, tiny_weights, tmp_path,
                                                               one_torch_thread):
    from cpak_cli import api

    check = _load("gpu_check")
    ref = tmp_path / "ref.csv"
    api.run_batch(tiny_films, ref, api.MeasureOptions(weights_dir=tiny_weights, device="cpu"),
                  api.BatchOptions(workers=1))
    with open(ref, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    legs = [r for r in rows if r["side"] and r["femoral_head_x_mm"] and r["knee_center_x_mm"]]
    if not legs:
        pytest.skip("the random models found no leg with both landmarks on these films")
    same = check.compare(ref, ref)
    assert same["max_mm"] == 0.0 and same["within_target"] and same["legs_compared"] == sum(1 for r in rows if r["side"])

    moved = [dict(r) for r in rows]
    target = next(r for r in moved if (r["sha256"], r["side"]) == (legs[0]["sha256"], legs[0]["side"]))
    target["femoral_head_x_mm"] = f"{float(target['femoral_head_x_mm']) + 0.06:.4f}"
    target["knee_center_x_mm"] = target["knee_center_y_mm"] = ""
    _write(tmp_path / "moved.csv", moved)
    diff = check.compare(ref, tmp_path / "moved.csv")
    assert diff["landmarks"]["femoral_head"]["max_mm"] == pytest.approx(0.06, abs=2e-4)
    assert diff["landmarks"]["knee_center"]["found_by_one_only"] == 1
    assert diff["max_mm"] == diff["landmarks"]["femoral_head"]["max_mm"] and not diff["within_target"]


def test_gpu_check_gpu_decode_section(tiny_weights, tmp_path, fake_gpu, one_torch_thread):
    """(e) of gpu_check with a fake nvImageCodec: decode figures, exactness, the chunk (GPU batch)
    of (b), the spot check, the LL band overview of a film without a cached one, and the landmarks
    of the GPU-decoded films equal the CPU-decoded ones; skipped (and says so) without a GPU
    decode."""
    from cpak_cli.input import cage as cage_mod
    from cpak_cli.input.cage import Cage, DecodeLimits
    from cpak_cli.phantom import make_case, write_case
    from cpak_cli.pipeline.film import Measurer

    check = _load("gpu_check")
    films = [Path(write_case(make_case(3, i, scale=0.25, compression="jpeg2000"), tmp_path)["dicom"]) for i in (0, 2)]
    measurer = Measurer(weights_dir=tiny_weights, device="cpu")
    assert "skipped" in check.gpu_decode_check(films, measurer, "cpu", 4, 2, 4)
    mod = fake_gpu()
    cage = Cage(DecodeLimits(seconds=60.0), start_method="fork")
    old = cage_mod.configure(cage)
    try:
        out = check.gpu_decode_check(films, measurer, "cuda:0", 4, 2, 4)
    finally:
        cage.close()
        cage_mod.configure(old)
    assert mod.calls >= 3 and out["films"] == 2 and out["frames_refused"] == 0
    assert out["bit_exact_vs_openjpeg"] == "2/2" and out["films_swapped"] == 2
    assert out["chunk_in_b"] == 4 and out["gpu_batch_in_b"] == 4
    assert out["spot_check"]["adopted"] and out["spot_check"]["patches"] >= 8 and out["spot_check"]["ms"] > 0
    ov = out["overview_without_cache"]
    assert "skipped" not in ov and ov["overview_level"] > 0 and ov["ms_ll_band_overview"] > 0
    lm = out["landmarks_gpu_vs_cpu_decode"]
    assert lm["landmarks_compared"] > 0 and lm["max_mm"] == 0.0 and lm["found_by_one_only"] == 0
    json.dumps(out)
