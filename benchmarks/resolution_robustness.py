"""Does the same leg give the same angles from a fine 16-bit DICOM and a coarse 8-bit PNG of it?

    python benchmarks/resolution_robustness.py --data DIR --out OUTDIR [--limit N] [--spacing 1.0]
        [--device cpu|cuda|auto] [--weights-dir W]

DIR holds DICOM films (e.g. ``cpak phantom --out DIR --count 6 --seed 5``: ~0.14 mm, 16 bit).
Each film is resampled to ``--spacing`` mm per pixel (area averaging over the same field of
view, so the spacing per axis is ``extent / new size``), quantised to 8 bits and written as
OUTDIR/png/<name>.png. Both the DICOM and the PNG (loaded with ``pixel_spacing``, the DICOM's
orientation and laterality carried over since a PNG has none) are measured by the full pipeline
(joint detector + landmark networks); the PNG's landmarks are mapped back onto the DICOM's pixel
grid. Per leg: |difference| of LDFA, MPTA, aHKA, JLO and mHKA (inf = measured on one only) and the
distance in mm between the two versions' landmarks (median and max over the 8); when a
``<name>.landmarks.json`` truth file lies next to the film, each version's median landmark
error against it too. Writes OUTDIR/summary.json and OUTDIR/legs.csv and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.landmarks import LANDMARKS, SIDES, read_landmarks
from cpak_cli.evaluation.files import legs_csv
from cpak_cli.evaluation.points import (
    ANGLES,
    angle_differences,
    distance_mm,
    error_summary,
    fmt_mm,
    jsonable,
    map_points_between_grids,
)
from cpak_cli.input.loader import LoadedImage, load_image
from cpak_cli.outputs.overlay import write_png
from cpak_cli.pipeline.film import Measurer, ScanResult


def coarse_copy(image: LoadedImage, spacing: float) -> tuple[np.ndarray, tuple[float, float]]:
    """The film area-averaged to about ``spacing`` mm per pixel and quantised to 8 bits, and its
    exact spacing ``(row_mm, col_mm)`` (same field of view as the original)."""
    import cv2

    rows, cols = image.pixels.shape
    row_mm, col_mm = image.spacing_mm
    new_rows = max(2, int(round(rows * row_mm / spacing)))
    new_cols = max(2, int(round(cols * col_mm / spacing)))
    small = cv2.resize(image.pixels.astype(np.float32), (new_cols, new_rows), interpolation=cv2.INTER_AREA)
    u8 = np.round(np.clip(small, 0.0, 1.0) * 255.0).astype(np.uint8)
    return u8, (rows * row_mm / new_rows, cols * col_mm / new_cols)


def found_points(res: ScanResult, side: str) -> dict[str, tuple[float, float] | None]:
    return {n: (p.xy if p.found else None) for n, p in res.landmarks.get(side, {}).items()}


def leg_angles(res: ScanResult, side: str) -> dict[str, float | None]:
    leg = res.legs.get(side)
    return {a: (None if leg is None else getattr(leg, a)) for a in ANGLES}


def compare_leg(name: str, side: str, fine: ScanResult, coarse: ScanResult,
                truth: dict[str, Any] | None) -> dict[str, Any]:
    """One row: angle differences, landmark distances (mm, on the fine film), errors vs truth."""
    assert fine.image is not None and coarse.image is not None
    sp = fine.image.spacing_mm
    pf, pc = found_points(fine, side), found_points(coarse, side)
    dists = []
    for n in LANDMARKS:
        q = pc.get(n)
        back = None if q is None else tuple(map_points_between_grids(np.array(q), coarse.image.pixels.shape,
                                                                      fine.image.pixels.shape))
        d = distance_mm(back, pf.get(n), sp)  # NaN: not found on the fine film; inf: only there
        if math.isnan(d) and back is not None:
            d = math.inf
        dists.append(d)
    e = np.array(dists)
    both = e[np.isfinite(e)]
    row: dict[str, Any] = {"film": name, "side": side}
    for a, d in angle_differences(leg_angles(fine, side), leg_angles(coarse, side)).items():
        row[f"d_{a}"] = d
    row.update(landmarks_both=int(both.size), landmarks_one_only=int(np.isinf(e).sum()),
               landmark_mm_median=float(np.median(both)) if both.size else math.nan,
               landmark_mm_max=float(both.max()) if both.size else math.nan)
    for tag, res, pts in (("fine", fine, pf), ("coarse", coarse, pc)):
        err = math.nan
        if truth is not None and side in truth:
            ee = []
            for n in LANDMARKS:
                t = truth[side].get(n)
                p = pts.get(n)
                if tag == "coarse" and p is not None:
                    p = tuple(map_points_between_grids(np.array(p), coarse.image.pixels.shape, fine.image.pixels.shape))
                ee.append(distance_mm(p, t, sp))
            err = error_summary(ee)["median"]
        row[f"truth_mm_median_{tag}"] = err
        leg = res.legs.get(side)
        row[f"error_{tag}"] = "" if leg is None else (leg.error or "")
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"legs": len(rows)}
    for key in [f"d_{a}" for a in ANGLES] + ["landmark_mm_median", "landmark_mm_max"]:
        v = np.array([r[key] for r in rows], dtype=np.float64)
        s = error_summary(v)
        fin = v[np.isfinite(v)]
        out[key] = {"n": s["n"], "one_only": s["missed"], "median": s["median_found"],
                    "max": float(fin.max()) if fin.size else math.nan}
    all_d = np.array([r["landmark_mm_max"] for r in rows], dtype=np.float64)
    out["landmark_mm_max_overall"] = float(np.nanmax(all_d)) if np.isfinite(all_d).any() else math.nan
    for tag in ("fine", "coarse"):
        out[f"truth_mm_median_{tag}"] = error_summary([r[f"truth_mm_median_{tag}"] for r in rows])["median_found"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with DICOM films (*.dcm)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--spacing", type=float, default=1.0, help="coarse pixel spacing in mm (default 1.0)")
    ap.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--weights-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.spacing > 0:
        ap.error("--spacing must be positive")

    films = sorted(args.data.glob("*.dcm"))
    films = films[: args.limit] if args.limit else films
    if not films:
        print(f"error: no *.dcm in {args.data}", file=sys.stderr)
        return 2
    (args.out / "png").mkdir(parents=True, exist_ok=True)
    measurer = Measurer(weights_dir=args.weights_dir, device=args.device)
    rows: list[dict[str, Any]] = []
    for k, path in enumerate(films, start=1):
        fine = load_image(path)
        u8, sp = coarse_copy(fine, args.spacing)
        png = write_png(args.out / "png" / (path.stem + ".png"), u8)
        coarse = dataclasses.replace(load_image(png, pixel_spacing=sp),
                                     patient_right_on_image_left=fine.patient_right_on_image_left,
                                     assumed_orientation=fine.assumed_orientation, laterality=fine.laterality)
        res_f, res_c = measurer.measure_images([fine, coarse])
        truth_path = path.with_name(path.stem + ".landmarks.json")
        truth = read_landmarks(truth_path).legs if truth_path.is_file() else None
        for side in SIDES:
            if side in res_f.legs or side in res_c.legs:
                rows.append(compare_leg(path.stem, side, res_f, res_c, truth))
        print(f"{k}/{len(films)} films ({fine.pixels.shape[1]}x{fine.pixels.shape[0]} at "
              f"{fine.spacing_mm[1]:.3f} mm -> {u8.shape[1]}x{u8.shape[0]} at {sp[1]:.3f} mm)", file=sys.stderr, flush=True)
    summary = {"data": str(args.data), "films": len(films), "spacing_mm": args.spacing, "device": measurer.device,
               "models": measurer.model_versions(), **summarize(rows)}
    atomic_write_text(args.out / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    atomic_write_text(args.out / "legs.csv", legs_csv(
        {k: ("" if isinstance(v, float) and math.isnan(v) else (round(v, 3) if isinstance(v, float) else v))
         for k, v in r.items()} for r in rows))

    print(f"{args.data}: {len(films)} films, {summary['legs']} legs, DICOM vs 8-bit PNG at {args.spacing:g} mm "
          f"({measurer.device})")
    print(f"{'':18s} {'median':>9s} {'max':>9s}  one only")
    for a in ANGLES:
        s = summary[f"d_{a}"]
        print(f"{'|d ' + a.upper() + '|':18s} {fmt_mm(s['median'], 'deg', 2):>9s} {fmt_mm(s['max'], 'deg', 2):>9s}  "
              f"{s['one_only']} of {s['n']}")
    for key, label in (("landmark_mm_median", "landmark (leg med)"), ("landmark_mm_max", "landmark (leg max)")):
        s = summary[key]
        print(f"{label:18s} {fmt_mm(s['median'], 'mm', 2):>9s} {fmt_mm(s['max'], 'mm', 2):>9s}")
    print(f"{'vs truth (median)':18s} DICOM {fmt_mm(summary['truth_mm_median_fine'], 'mm', 2)}, "
          f"PNG {fmt_mm(summary['truth_mm_median_coarse'], 'mm', 2)}")
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'legs.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
