"""Accuracy (and speed) of the shipped models on held-out phantom films.

    python benchmarks/evaluate_phantom.py --data DIR --out RUN [--boxes] [--limit N] [--device cpu]

DIR holds caseNNNN.dcm + .landmarks.json + .boxes.json (``cpak phantom`` output with a seed
not used in training). With ``--boxes`` the landmark models get the true boxes (issue: models);
without, the joint detector finds the joints (issue: product). Writes RUN/pred/*.json, the
`cpak evaluate` report (RUN/report.json, RUN/legs.csv) and prints the headline figures plus how
many wrongly typed legs carry a borderline / low-confidence flag.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cpak_cli.core.landmarks import write_landmarks
from cpak_cli.evaluation.files import evaluate_pairs, format_summary, pair_files, write_report
from cpak_cli.input.boxes import read_boxes
from cpak_cli.input.loader import load_image
from cpak_cli.pipeline.film import Measurer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--boxes", action="store_true", help="use the true boxes instead of the detector")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--chunk", type=int, default=4, help="films per batched forward pass")
    args = ap.parse_args(argv)

    dicoms = sorted(args.data.glob("case*.dcm"))
    if args.limit:
        dicoms = dicoms[: args.limit]
    pred_dir = args.out / "pred"
    pred_dir.mkdir(parents=True, exist_ok=True)
    measurer = Measurer(weights_dir=args.weights_dir, device=args.device, need_detector=not args.boxes)
    t_load = t_measure = 0.0
    flags_by_leg = {}
    for start in range(0, len(dicoms), args.chunk):
        group = dicoms[start : start + args.chunk]
        t0 = time.perf_counter()
        images = [load_image(p) for p in group]
        boxes = [read_boxes(p.with_name(p.name[:-4] + ".boxes.json")) for p in group] if args.boxes else None
        t1 = time.perf_counter()
        results = measurer.measure_images(images, boxes)
        t2 = time.perf_counter()
        t_load += t1 - t0
        t_measure += t2 - t1
        for p, r in zip(group, results):
            write_landmarks(pred_dir / (p.name[:-4] + ".landmarks.json"), r.to_landmark_file())
            for side, leg in r.legs.items():
                flags_by_leg[(p.name[:-4], side)] = leg.flags
        print(f"{start + len(group)}/{len(dicoms)} films", file=sys.stderr, flush=True)
    report = evaluate_pairs(pair_files(pred_dir, args.data))
    report["timing"] = {"films": len(dicoms), "load_s_per_film": t_load / len(dicoms),
                        "measure_s_per_film": t_measure / len(dicoms), "device": measurer.device}
    report["mode"] = "true boxes" if args.boxes else "detector"
    wrong = [r for r in report["legs"] if r["cpak_pred"] != r["cpak_true"]]
    flagged = [r for r in wrong if {"borderline", "low_confidence", "implausible_geometry", "angle_out_of_range"}
               & set(flags_by_leg.get((r["case"], r["side"]), []))]
    report["wrong_cpak"] = {"legs": len(wrong), "flagged": len(flagged),
                            "cases": [f"{r['case']}:{r['side']} {r['cpak_true']}->{r['cpak_pred']}" for r in wrong]}
    write_report(report, args.out / "report.json", args.out / "legs.csv")
    print(f"mode: {report['mode']}, {report['n_images']} films, {report['n_legs']} legs")
    for label, value in format_summary(report):
        print(f"{label:28s} {value}")
    print(f"{'wrong CPAK legs':28s} {len(wrong)} of {report['n_legs']}, {len(flagged)} of them flagged")
    print(f"{'time per film':28s} load {report['timing']['load_s_per_film']:.2f} s, "
          f"measure {report['timing']['measure_s_per_film']:.2f} s ({measurer.device})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
