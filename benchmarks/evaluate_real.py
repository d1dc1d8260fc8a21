"""Accuracy of the shipped models on real films labelled with three points per leg.

    python benchmarks/evaluate_real.py --data DIR --out OUTDIR [--subset heldout|train|all]
        [--limit N] [--device cpu|cuda|auto] [--weights-dir W] [--boxes-from-labels] [--chunk 8]

DIR is a folder in the format of :mod:`cpak_cli.training.pointlabels` (``labels.csv`` + ``images/``, e.g.
``shared/data/real-eos``); ``--subset heldout`` (default) takes the fixed held-out films that no
training may see. Each film is loaded with its labelled spacing and measured by the pipeline
(joint detector + landmark networks); ``--boxes-from-labels`` gives the landmark networks boxes
centred on the labelled joints instead (``BOX_SIDE_MM``), to tell detector failures from
landmark failures. Legs are matched by the patient's side (a film whose labels put the
patient's right on the image right is matched leg for leg by image half).

Writes OUTDIR/summary.json (headline figures, see :func:`cpak_cli.evaluation.points.summarize_legs`),
OUTDIR/legs.csv (one row per film and leg) and OUTDIR/worst_<k>_<id>_<side>.png, overlays of the
five worst legs by mHKA error (misses first): the prediction as ``cpak measure --overlay``
draws it, the labels as white crosses joined by white lines (head centre estimate: small white
circle). Prints a short table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from cpak_cli.atomic import atomic_write_text
from cpak_cli.errors import CpakInputError
from cpak_cli.evaluation.files import legs_csv
from cpak_cli.evaluation.points import (
    ANGLES,
    LegEval,
    box_centre,
    evaluate_leg,
    fmt_mm,
    jsonable,
    pred_side_for,
    summarize_legs,
    worst_legs,
)
from cpak_cli.input.boxes import BOX_SIDE_MM, BoxFile, square_box
from cpak_cli.input.loader import load_image
from cpak_cli.pipeline.film import Measurer, ScanResult
from cpak_cli.training.pointlabels import PointLabels, holdout_split, joint_centres, read_point_labels

WORST = 5
LABEL_BGR = (255, 255, 255)


def select(labels: list[PointLabels], subset: str, limit: int) -> list[PointLabels]:
    train, held = holdout_split([lab.image_id for lab in labels])
    keep = {"heldout": set(held), "train": set(train), "all": set(train) | set(held)}[subset]
    out = [lab for lab in labels if lab.image_id in keep]
    return out[:limit] if limit else out


def label_boxes(lab: PointLabels, image_right_on_left: bool) -> BoxFile:
    """Boxes of BOX_SIDE_MM around the labelled joint centres, under the image's side names."""
    boxes: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    for side, centres in joint_centres(lab).items():
        ps = pred_side_for(side, lab.patient_right_on_image_left, image_right_on_left)
        boxes[ps] = {j: square_box(c, BOX_SIDE_MM[j], lab.spacing_mm) for j, c in centres.items()}
    return BoxFile(image=str(lab.image_path), boxes=boxes)


def evaluate_film(lab: PointLabels, res: ScanResult | None, error: str | None) -> list[LegEval]:
    """One LegEval per labelled leg of a film (``res`` None when the film could not be loaded)."""
    centres = joint_centres(lab)
    out = []
    for side in ("right", "left"):
        if side not in lab.legs:
            continue
        preds: dict[str, Any] = {}
        angles: dict[str, float | None] = {a: None for a in ANGLES}
        leg_error, flags, det, cpak = error, [], None, None
        if res is not None:
            assert res.image is not None
            ps = pred_side_for(side, lab.patient_right_on_image_left, res.image.patient_right_on_image_left)
            preds = {n: p.xy for n, p in res.landmarks.get(ps, {}).items()}
            leg = res.legs.get(ps)
            if leg is None:
                leg_error = "leg not found on the film"
            else:
                angles = {a: getattr(leg, a) for a in ANGLES}
                leg_error, flags, cpak = leg.error, list(leg.flags), leg.cpak
            if res.box_source == "detector":
                det = {j: box_centre(b) for j, b in res.boxes.get(ps, {}).items()}
        out.append(evaluate_leg(lab.image_id, side, lab.legs[side], centres.get(side, {}), lab.spacing_mm,
                                lab.patient_right_on_image_left, preds, angles, leg_error, flags, det, cpak))
    return out


def draw_worst(out_dir: Path, rank: int, leg: LegEval, lab: PointLabels, res: ScanResult) -> Path:
    """The film's prediction overlay plus the labels (white) of every labelled leg."""
    import cv2

    from cpak_cli.outputs.overlay import overlay_for_result, write_png

    assert res.image is not None
    title = (f"{lab.image_id} {leg.side}: mHKA err {fmt_mm(leg.mhka_error_deg, 'deg')} "
             f"(label {fmt_mm(leg.mhka_label if leg.mhka_label is not None else math.nan, 'deg')}); labels white")
    bgr = overlay_for_result(res, title=title)
    rows, cols = res.image.pixels.shape
    sx, sy = bgr.shape[1] / cols, bgr.shape[0] / rows  # overlay_for_result's scale (pixel-centre origin)

    def pt(p: Any) -> tuple[int, int]:
        return (int(round((p[0] + 0.5) * sx - 0.5)), int(round((p[1] + 0.5) * sy - 0.5)))

    th = max(1, round(bgr.shape[0] / 900))
    size = max(8, round(bgr.shape[0] / 80))
    centres = joint_centres(lab)
    for side, pts in lab.legs.items():
        chain = [pts[p] for p in ("hip", "knee", "ankle") if p in pts]
        for a, b in zip(chain, chain[1:]):
            cv2.line(bgr, pt(a), pt(b), LABEL_BGR, th, cv2.LINE_AA)
        for p in chain:
            cv2.drawMarker(bgr, pt(p), LABEL_BGR, cv2.MARKER_TILTED_CROSS, size, th + 1, cv2.LINE_AA)
        if "hip" in centres.get(side, {}):
            cv2.circle(bgr, pt(centres[side]["hip"]), max(2, size // 3), LABEL_BGR, th, cv2.LINE_AA)
    return write_png(out_dir / f"worst_{rank}_{lab.image_id}_{leg.side}.png", bgr)


def print_table(summary: dict[str, Any], head: str) -> None:
    s = summary
    print(head)
    aa = s["all_angles"]
    print(f"{'legs with all 5 angles':24s} {aa['count']}/{s['legs']} ({aa['pct']:.0f}%)")
    ty = s["typed"]
    print(f"{'legs with a CPAK type':24s} {ty['count']}/{s['legs']} ({ty['pct']:.0f}%) (all angles, no flag withheld it)")

    def line(label: str, e: dict[str, Any], unit: str = "mm") -> None:
        print(f"{label:24s} found {e['found_pct']:5.1f}% ({e['n'] - e['missed']}/{e['n']})  "
              f"median {fmt_mm(e['median'], unit):>9s}  p90 {fmt_mm(e['p90'], unit):>9s}  |  found only: "
              f"median {fmt_mm(e['median_found'], unit)}, p90 {fmt_mm(e['p90_found'], unit)}")

    line("knee centre", s["knee"])
    line("knee joint line height", s["knee_line"])
    line("ankle centre", s["ankle"])
    line("hip (head centre est.)", s["hip"])
    line("hip |dx| vs head top", s["hip_dx_top"])
    m = s["mhka"]
    line("mHKA abs error", m, "deg")
    print(f"{'mHKA within 1/2/3 deg':24s} {m['within_1']:.0f}% / {m['within_2']:.0f}% / {m['within_3']:.0f}% "
          f"of {m['n']} legs; median signed error (found) {fmt_mm(m['bias_found'], 'deg')}, "
          f"scatter about it (median absolute deviation) {fmt_mm(m['spread_found'], 'deg')}")
    if s["detector"] is None:
        print(f"{'joint detector':24s} not run (boxes from labels)")
    else:
        for j, e in s["detector"].items():
            line(f"detector {j}", e)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with labels.csv and images/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subset", choices=("heldout", "train", "all"), default="heldout")
    ap.add_argument("--limit", type=int, default=0, help="first N films of the subset (0 = all)")
    ap.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--boxes-from-labels", action="store_true",
                    help="boxes around the labelled joint centres instead of the joint detector")
    ap.add_argument("--chunk", type=int, default=8, help="films per measure_images call")
    args = ap.parse_args(argv)

    try:
        films = select(read_point_labels(args.data), args.subset, args.limit)
    except CpakInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not films:
        print("error: no films selected", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    measurer = Measurer(weights_dir=args.weights_dir, device=args.device, need_detector=not args.boxes_from_labels)
    legs: list[LegEval] = []
    kept: dict[str, tuple[PointLabels, ScanResult]] = {}  # films of the current worst legs (for overlays)
    t0 = time.perf_counter()
    for start in range(0, len(films), max(1, args.chunk)):
        group = films[start : start + max(1, args.chunk)]
        loaded, results = [], {}
        for lab in group:
            try:
                loaded.append((lab, load_image(lab.image_path, pixel_spacing=lab.spacing_mm)))
            except CpakInputError as exc:
                legs.extend(evaluate_film(lab, None, f"load: {exc}"))
        if loaded:
            boxes = ([label_boxes(lab, im.patient_right_on_image_left) for lab, im in loaded]
                     if args.boxes_from_labels else None)
            for (lab, _), res in zip(loaded, measurer.measure_images([im for _, im in loaded], boxes)):
                results[lab.image_id] = (lab, res)
                legs.extend(evaluate_film(lab, res, res.error))
        keep_ids = {leg.image_id for leg in worst_legs(legs, WORST)}
        kept = {k: v for k, v in {**kept, **results}.items() if k in keep_ids}
        print(f"{start + len(group)}/{len(films)} films", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0

    summary = summarize_legs(legs)
    summary = {
        "data": str(args.data), "subset": args.subset, "films": len(films),
        "boxes": "labels" if args.boxes_from_labels else "detector", "device": measurer.device,
        "models": measurer.model_versions(), "seconds_per_film": elapsed / len(films), **summary,
        "errors": _count([leg.error for leg in legs if leg.error]),
    }
    worst = worst_legs(legs, WORST)
    summary["worst"] = [{"id": w.image_id, "side": w.side, "mhka_error_deg": w.mhka_error_deg, "error": w.error}
                        for w in worst]
    atomic_write_text(args.out / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    atomic_write_text(args.out / "legs.csv", legs_csv(leg.row() for leg in legs))
    for rank, w in enumerate(worst, start=1):
        if w.image_id in kept:
            lab, res = kept[w.image_id]
            draw_worst(args.out, rank, w, lab, res)
    print_table(summary, f"{args.data} ({args.subset}): {len(films)} films, {summary['legs']} legs, "
                         f"boxes from {summary['boxes']}, {measurer.device}, {elapsed / len(films):.2f} s/film")
    if summary["errors"]:
        print("leg errors:")
        for text, n in list(summary["errors"].items())[:6]:
            print(f"  {n:4d}  {text}")
    print(f"wrote {args.out / 'summary.json'}, {args.out / 'legs.csv'} and {len(worst)} overlays")
    return 0


def _count(texts: list[str | None]) -> dict[str, int]:
    """Error texts with their counts, most frequent first."""
    c: dict[str, int] = {}
    for t in texts:
        if t:
            c[t] = c.get(t, 0) + 1
    return dict(sorted(c.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    raise SystemExit(main())
