"""Write measured accuracy (phantom AND real films) into the model cards of a weights folder.

    python scripts/record_model_accuracy.py --weights W --phantom-boxes RUN/report.json \
        [--phantom-detector RUN2/report.json] --real REAL/summary.json [--real-boxes REAL2/summary.json]

W is a weights folder: the shipped one is ``cpak_cli/weights`` (the package data), or the
``OUT_DIR/weights`` of scripts/train_shipped_models.sh before it is copied there.

The reports are those of benchmarks/evaluate_phantom.py (``report.json``) and
benchmarks/evaluate_real.py (``summary.json``). Each card gets ``accuracy`` with the figures of
its joint, each block naming its data; the weights files are not touched (hash checked).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cpak_cli.networks.model_cards import record_accuracy

JOINT_POINTS = {"hip": ["femoral_head"], "knee": ["femoral_condyle_lateral", "femoral_condyle_medial",
                "tibial_plateau_lateral", "tibial_plateau_medial", "knee_center"], "ankle": ["ankle_lateral", "ankle_medial"]}


def _load(p: Path | None) -> dict[str, Any] | None:
    return None if p is None else json.loads(p.read_text())


def _phantom_block(rep: dict[str, Any], joint: str | None, what: str) -> dict[str, Any]:
    lm = rep["landmarks"]
    out: dict[str, Any] = {"data": what, "films": rep["n_images"], "legs": rep["n_legs"], "mode": rep.get("mode")}
    keys = ["overall"] if joint is None else [f"joint:{joint}"] + JOINT_POINTS[joint]
    for k in keys:
        out[k] = {m: lm[k].get(m) for m in ("median", "p95", "missed", "sdr_1mm", "sdr_2mm", "sdr_5mm") if m in lm[k]}
    if joint is None or joint == "knee":
        out["angles_medae_deg"] = {a: v.get("medae") for a, v in rep["angles"].items()}
        out["cpak_accuracy"] = rep["cpak"].get("accuracy")
    return out


def _real_block(s: dict[str, Any], joint: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"data": f"{s['data']} ({s['subset']}: {s['films']} films, {s['legs']} legs, never trained on)",
                           "boxes": s["boxes"], "legs_with_all_angles_pct": s["all_angles"]["pct"],
                           "legs_typed_pct": s["typed"]["pct"]}
    if joint == "hip":
        out["head_centre_vs_estimate"] = s["hip"]
        out["head_dx_vs_top_label"] = s["hip_dx_top"]
    elif joint == "ankle":
        out["ankle_centre_vs_label"] = s["ankle"]
    elif joint == "knee":
        out["knee_joint_line_height_vs_label"] = s["knee_line"]
        out["knee_centre_vs_label"] = s["knee"]
        out["note"] = ("the knee labels of this set lie ~20 mm medial of the knee centre (docs/real-films.md): "
                       "their height is checked (joint line height), their horizontal position is not a reference")
        out["mhka_vs_label"] = s["mhka"]
    else:
        out["detector"] = s.get("detector")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--phantom-boxes", type=Path, required=True)
    ap.add_argument("--phantom-detector", type=Path)
    ap.add_argument("--real", type=Path, required=True)
    ap.add_argument("--real-boxes", type=Path)
    a = ap.parse_args()
    pb, pd, real, rb = _load(a.phantom_boxes), _load(a.phantom_detector), _load(a.real), _load(a.real_boxes)
    assert pb is not None and real is not None
    for name in ("hip", "knee", "ankle", "detector"):
        joint = None if name == "detector" else name
        acc: dict[str, Any] = {}
        if joint is not None:
            acc["phantom_heldout_true_boxes"] = _phantom_block(pb, joint, "60 held-out phantom films (seed 999), true boxes")
        if pd is not None:
            acc["phantom_heldout_detector"] = _phantom_block(pd, None, "held-out phantom films (seed 999), joint detector")
        acc["real_heldout"] = _real_block(real, joint)
        if rb is not None and joint is not None:
            acc["real_heldout_boxes_from_labels"] = _real_block(rb, joint)
        print(record_accuracy(name, acc, a.weights))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
