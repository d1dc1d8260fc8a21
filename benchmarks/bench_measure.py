"""Speed of `cpak measure` on phantom films: cold start, and per-film stages when warm.

    python benchmarks/bench_measure.py --data DIR [--limit 12] [--chunk 4] [--device cpu] [--cold-runs 5]
    python benchmarks/bench_measure.py --data sample_data --limit 3 --cold-runs 5

DIR holds caseNNNN.dcm films (e.g. `cpak phantom --out DIR --count 12 --seed 5`). Prints the
load average, the cold `python -m cpak_cli measure FILM` wall time (process start, imports, model
loading, one film; the median of --cold-runs runs), `cpak --help`, then per film: open
(``open_film``: a JPEG 2000 film is not decoded yet) and the full decode (``load_image``), joint
detector, landmark networks + extraction, and films/s of the batched Measurer with CHUNK films
per forward pass.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cold-runs", type=int, default=5)
    args = ap.parse_args(argv)
    films = sorted(args.data.glob("case*.dcm"))[: args.limit]
    if not films:
        print(f"no case*.dcm in {args.data}", file=sys.stderr)
        return 2

    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    colds = []
    for _ in range(max(1, args.cold_runs)):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cpak_cli", "measure", str(films[0]), "--device", args.device],
                       check=True, capture_output=True, cwd=ROOT)
        colds.append(time.perf_counter() - t0)
    cold = statistics.median(colds)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cpak_cli", "--help"], check=True, capture_output=True, cwd=ROOT)
    t_help = time.perf_counter() - t0

    from cpak_cli.input.boxes import BoxFile
    from cpak_cli.input.loader import load_image, open_film
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
    t_load = t_det = t_lm = 0.0
    for p in films:
        t0 = time.perf_counter()
        im = open_film(p)
        t1 = time.perf_counter()
        boxes = measurer.detect_boxes([im])
        t2 = time.perf_counter()
        measurer.measure_images([im], [BoxFile(image=None, boxes=boxes[0])])
        t3 = time.perf_counter()
        t_load, t_det, t_lm = t_load + t1 - t0, t_det + t2 - t1, t_lm + t3 - t2
    n = len(films)
    t0 = time.perf_counter()
    for start in range(0, n, args.chunk):
        group = films[start : start + args.chunk]
        measurer.measure_images([open_film(p) for p in group])
    t_batched = time.perf_counter() - t0
    print(f"device {measurer.device}, {n} films")
    print(f"cold `cpak measure` (start + imports + models + 1 film): median {cold:.2f} s "
          f"(runs: {', '.join(f'{v:.2f}' for v in colds)})")
    print(f"`cpak --help`: {t_help:.2f} s")
    print(f"full decode (load_image) per film: {t_full / len(films):.3f} s")
    print(f"model loading (warm process): {t_models:.2f} s")
    print(f"per film: open {t_load / n:.3f} s, detector {t_det / n:.3f} s, landmarks {t_lm / n:.3f} s, "
          f"total {(t_load + t_det + t_lm) / n:.3f} s")
    print(f"batched (chunk {args.chunk}, decode in the same process): {n / t_batched:.2f} films/s")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
