"""`cpak batch` against decoding the same films in full, one after another, in the same run.

    python benchmarks/bench_decode.py --data DIR [--workers 2] [--device cpu] [--repeat 1]

DIR holds DICOM films, e.g. ten realistic JPEG 2000 lossless phantoms:

    python -m cpak_cli phantom --out /tmp/j2k10 --count 10 --seed 7 --compression jpeg2000

Prints the load average, the time pydicom takes to decode every film in full (``pixel_array``,
one after another, this process), the wall time of ``python -m cpak_cli batch DIR --workers N``
(process start, model loading and measuring every film, as a user runs it) and their ratio
(batch / full decode; the goal is at most 0.35). With ``--repeat`` each is measured that many
times, alternating, and the medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark this checkout, not another installed copy


def full_decode_seconds(films: list[Path]) -> float:
    """Seconds to read and fully decode every film with pydicom, one after another."""
    import pydicom

    t0 = time.perf_counter()
    for p in films:
        ds = pydicom.dcmread(str(p))
        _ = ds.pixel_array
    return time.perf_counter() - t0


def batch_seconds(data: Path, workers: int, device: str) -> float:
    """Wall seconds of `python -m cpak_cli batch DATA` (CSV into a temporary folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "cpak_cli", "batch", str(data), "--csv", str(Path(tmp) / "out.csv"),
               "--workers", str(workers), "--device", device]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    from cpak_cli.pipeline.decoding import find_inputs

    films = find_inputs(args.data)
    if not films:
        print(f"no DICOM files in {args.data}", file=sys.stderr)
        return 2
    print(f"{len(films)} films in {args.data}; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    full, batch = [], []
    for _ in range(max(1, args.repeat)):
        full.append(full_decode_seconds(films))
        batch.append(batch_seconds(args.data, args.workers, args.device))
    f, b = statistics.median(full), statistics.median(batch)
    print(f"full decode with pydicom, one after another: {f:.2f} s  (runs: {', '.join(f'{v:.2f}' for v in full)})")
    print(f"cpak batch --workers {args.workers} --device {args.device}: {b:.2f} s  "
          f"(runs: {', '.join(f'{v:.2f}' for v in batch)})")
    print(f"ratio batch / full decode: {b / f:.3f}  (goal <= 0.35)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
