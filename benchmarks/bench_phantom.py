"""Phantom rendering speed: seconds per full-size case and per 1000x1000 roi.

Run single-threaded:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_phantom.py
"""

from __future__ import annotations

import argparse
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spacing", type=float, default=0.143, help="effective spacing, mm (0.143 -> ~3000x8000)")
    args = ap.parse_args()

    import cv2

    cv2.setNumThreads(1)
    from cpak_cli.phantom import make_case, render

    full, rois = [], []
    for i in range(args.cases):
        t = time.perf_counter()
        case = make_case(args.seed, i, spacing_mm=(args.spacing, args.spacing))
        t_make = time.perf_counter() - t
        t = time.perf_counter()
        img = render(case)
        full.append(time.perf_counter() - t)
        kx, ky = (int(v) for v in case.landmarks["right"]["knee_center"])
        t = time.perf_counter()
        render(case, (kx - 500, ky - 500, kx + 500, ky + 500))
        rois.append(time.perf_counter() - t)
        print(f"case {i}: {img.shape[1]}x{img.shape[0]} px  make_case {t_make * 1e3:.1f} ms  "
              f"render {full[-1]:.2f} s  roi 1000x1000 {rois[-1]:.3f} s")
    print(f"mean: full render {sum(full) / len(full):.2f} s/case, roi {sum(rois) / len(rois):.3f} s")


if __name__ == "__main__":
    main()
