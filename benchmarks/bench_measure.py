"""Speed of `cpak measure` on phantom films: cold start, and per-film stages when warm.

    python benchmarks/bench_measure.py --data DIR [--limit 12] [--chunk 4] [--device cpu] [--cold-runs 5]
        [--baseline CHECKOUT] [--forward-runs 5]
    python benchmarks/bench_measure.py --data sample_data --limit 3 --cold-runs 5

DIR holds caseNNNN.dcm films (e.g. `cpak phantom --out DIR --count 12 --seed 5`). Prints the
load average, the cold `python -m cpak_cli measure FILM` wall time (process start, imports, model
loading, one film) and `cpak --help`, each the median of --cold-runs runs; with ``--baseline``
another checkout's runs (e.g. of ``git archive main | tar -x -C /tmp/base``) alternate with this
one's, so that a before/after pair shares the machine's load. Then per film: open (``open_film``: a
JPEG 2000 film is not decoded yet), the detector's overview decode (``prefetch_overview``), the
full decode (``load_image``), joint detector, landmark networks + extraction, and films/s of the
batched Measurer with CHUNK films per forward pass. Last, per shipped network, the CPU time of one
forward pass as loaded (batch norm folded into the convolutions) against the file's own network
(``load_model(..., fold_batchnorm=False)``), interleaved, with the largest probability difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark this checkout, not another installed copy


def _runs(commands: dict[str, tuple[list[str], Path]], runs: int) -> dict[str, list[float]]:
    """Wall seconds of each command ``runs`` times, the commands alternating run by run."""
    out: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(max(1, runs)):
        for key, (cmd, cwd) in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)
            out[key].append(time.perf_counter() - t0)
    return out


def _line(label: str, values: list[float]) -> str:
    return f"{label}: median {statistics.median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"


def cold_start(film: Path, device: str, runs: int, baseline: Path | None) -> None:
    """Cold `cpak measure FILM` and `cpak --help` of this checkout (and ``baseline``), interleaved."""
    trees = {"this checkout": ROOT} if baseline is None else {"baseline": baseline.resolve(), "this checkout": ROOT}
    measure = [sys.executable, "-m", "cpak_cli", "measure", str(film.resolve()), "--device", device]
    help_ = [sys.executable, "-m", "cpak_cli", "--help"]
    colds = _runs({name: (measure, tree) for name, tree in trees.items()}, runs)
    helps = _runs({name: (help_, tree) for name, tree in trees.items()}, runs)
    for name in trees:
        print(_line(f"cold `cpak measure` (start + imports + models + 1 film), {name}", colds[name]))
        print(_line(f"`cpak --help`, {name}", helps[name]))


def forward_passes(device: str, runs: int) -> None:
    """CPU seconds per forward pass of each shipped network, BN folded vs not, interleaved."""
    import numpy as np

    from cpak_cli.networks.model_cards import load_model
    from cpak_cli.networks.models import predict

    rng = np.random.default_rng(0)
    for name, n in (("hip", 8), ("knee", 8), ("ankle", 8), ("detector", 4)):  # `cpak batch`: 4 films per pass
        folded, card = load_model(name, device=device)
        plain, _ = load_model(name, device=device, fold_batchnorm=False)
        cfg = card["config"]
        crops = rng.random((n, cfg.input_size, cfg.input_width or cfg.input_size), dtype=np.float32)
        times: dict[str, list[float]] = {"folded": [], "unfolded": []}
        probs = {}
        for i in range(max(1, runs) + 1):  # the first round warms up
            for key, model in (("unfolded", plain), ("folded", folded)):
                t0 = time.process_time()
                probs[key] = predict(model, crops, device=device, batch_size=n)
                if i:
                    times[key].append((time.process_time() - t0) / n)
        a, b = statistics.median(times["unfolded"]), statistics.median(times["folded"])
        diff = float(np.abs(probs["folded"] - probs["unfolded"]).max())
        print(f"{name} network, CPU s per input ({n} per pass): unfolded {a:.4f}, BN folded {b:.4f} "
              f"({100 * (b / a - 1):+.1f}%), max probability difference {diff:.1e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cold-runs", type=int, default=5, help="runs of the cold measure and of --help (0: skip)")
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout to interleave the cold runs with")
    ap.add_argument("--forward-runs", type=int, default=5, help="rounds of the folded/unfolded forward passes (0: skip)")
    args = ap.parse_args(argv)
    films = sorted(args.data.glob("case*.dcm"))[: args.limit]
    if not films:
        print(f"no case*.dcm in {args.data}", file=sys.stderr)
        return 2

    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.cold_runs > 0:
        cold_start(films[0], args.device, args.cold_runs, args.baseline)

    from cpak_cli.input.boxes import BoxFile
    from cpak_cli.input.loader import load_image, open_film
    from cpak_cli.networks.detector import prefetch_overview
    from cpak_cli.pipeline.film import Measurer

    t0 = time.perf_counter()
    measurer = Measurer(device=args.device)
    t_models = time.perf_counter() - t0
    measurer.measure(open_film(films[0]))  # warm-up

    t_full = 0.0
    for p in films:
        t0 = time.perf_counter()
        load_image(p)
        t_full += time.perf_counter() - t0
    t_load = t_view = t_det = t_lm = 0.0
    for p in films:
        t0 = time.perf_counter()
        im = open_film(p)
        t1 = time.perf_counter()
        prefetch_overview(im)
        t2 = time.perf_counter()
        boxes = measurer.detect_boxes([im])
        t3 = time.perf_counter()
        measurer.measure_images([im], [BoxFile(image=None, boxes=boxes[0])])
        t4 = time.perf_counter()
        t_load, t_view, t_det, t_lm = t_load + t1 - t0, t_view + t2 - t1, t_det + t3 - t2, t_lm + t4 - t3
    n = len(films)
    t0 = time.perf_counter()
    for start in range(0, n, args.chunk):
        group = films[start : start + args.chunk]
        measurer.measure_images([open_film(p) for p in group])
    t_batched = time.perf_counter() - t0
    print(f"device {measurer.device}, {n} films")
    print(f"full decode (load_image) per film: {t_full / len(films):.3f} s")
    print(f"model loading (warm process): {t_models:.2f} s")
    print(f"per film: open {t_load / n:.3f} s, overview decode {t_view / n:.3f} s, detector {t_det / n:.3f} s, "
          f"landmarks {t_lm / n:.3f} s, total {(t_load + t_view + t_det + t_lm) / n:.3f} s")
    print(f"batched (chunk {args.chunk}, decode in the same process): {n / t_batched:.2f} films/s")
    if args.forward_runs > 0:
        forward_passes(measurer.device, args.forward_runs)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
