"""Pseudo-labels for the knee network on real films with three-point labels (self-training).

    python scripts/pseudo_label_knees.py --real DIR [--weights W] --out OUT [--agree-mm MM]

(the shipped knee of 2026-11-27's second session was trained on ``--agree-mm 3``, teacher: the
knee of commit 7cae550).

For every leg of the TRAINING part of DIR (``labels.csv`` + ``images/``; the held-out part of
:func:`cpak_cli.training.pointlabels.is_held_out` is never read), the knee network of ``W``
predicts its five knee landmarks on several views of the same knee: the box the detector would
give (``BOX_SIDE_MM`` square on the labelled knee), shifted, scaled and with another tone
curve. A leg becomes a pseudo-label only when

* every view finds every landmark and each landmark's views agree within ``--agree-mm``
  (the median over views is the label), and
* the five points make an anatomical knee (``knee_is_plausible``): the condyles above the
  plateau by a joint space (not a growth plate above it), the lateral points lateral of the
  medial ones, widths and the two lines' tilt plausible, the knee centre between them, and the
  joint line within ``--label-band-mm`` of the label's height (the EOS knee label sits at the
  joint's height but medial of the centre, docs/real-films.md, so only its height is used).

Films with anisotropic pixel spacing are skipped (the checks take one mm per pixel).
Writes OUT/real-<id>.<ext> (a copy of the film) + OUT/<id>.landmarks.json (knee points of the accepted
legs) + OUT/<id>.boxes.json (a knee box on the pseudo-labelled knee centre, as the pipeline's
re-centred box), the ``--data`` format of ``cpak train``, and OUT/summary.json.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.geometry import lateral_sign
from cpak_cli.core.landmarks import LandmarkFile, write_landmarks
from cpak_cli.input.boxes import BOX_SIDE_MM, BoxFile, square_box, write_boxes
from cpak_cli.networks.inference import make_crop, make_job, points_from_probs
from cpak_cli.networks.model_cards import load_model
from cpak_cli.networks.models import predict
from cpak_cli.training.pointlabels import is_held_out, load_pixels, read_point_labels

NAMES = ("femoral_condyle_lateral", "femoral_condyle_medial", "tibial_plateau_lateral",
         "tibial_plateau_medial", "knee_center")
#: Rows (mm, relative to the knee label's row, + = down) where each channel may answer with
#: ``--band``: the condyles just above the joint line, the plateau margins just below it; rows
#: further away (a growth plate 10-25 mm above or below the joint) are not searched.
BANDS_MM = {"femoral_condyle_lateral": (-9.0, 3.0), "femoral_condyle_medial": (-9.0, 3.0),
            "tibial_plateau_lateral": (-3.0, 9.0), "tibial_plateau_medial": (-3.0, 9.0),
            "knee_center": (-12.0, 4.0)}
# (centre shift as a fraction of the box side (x, y), box scale, gamma of the normalised crop)
VIEWS = ((0.0, 0.0, 1.0, 1.0), (0.08, -0.05, 1.0, 1.0), (-0.08, 0.05, 1.0, 1.0),
         (0.0, 0.0, 0.88, 1.0), (0.0, 0.0, 1.12, 1.0), (0.0, 0.0, 1.0, 0.7))


def knee_is_plausible(p: dict[str, np.ndarray], lateral_dir: float, label_y: float, mm: float,
                      band_mm: float) -> str:
    """Empty string when the five knee points (image pixels, y down) make an anatomical knee;
    otherwise the reason. ``lateral_dir`` is +1 when lateral is toward larger x; ``mm`` the
    pixel spacing (isotropic)."""
    cl, cm = p["femoral_condyle_lateral"], p["femoral_condyle_medial"]
    tl, tm = p["tibial_plateau_lateral"], p["tibial_plateau_medial"]
    kc = p["knee_center"]
    if (cl[0] - cm[0]) * lateral_dir <= 0 or (tl[0] - tm[0]) * lateral_dir <= 0:
        return "lateral/medial order"
    cw, tw = abs(cl[0] - cm[0]) * mm, abs(tl[0] - tm[0]) * mm
    if not (20 <= cw <= 75 and 35 <= tw <= 100 and tw >= cw):
        return f"widths {cw:.0f}/{tw:.0f} mm"
    gap = ((tl[1] + tm[1]) - (cl[1] + cm[1])) / 2 * mm
    if not (0.5 <= gap <= 9.0):
        return f"condyle-plateau gap {gap:.1f} mm"
    tilt = math.degrees(math.atan2(cl[1] - cm[1], cl[0] - cm[0]) - math.atan2(tl[1] - tm[1], tl[0] - tm[0]))
    tilt = (tilt + 180) % 360 - 180
    if abs(tilt) > 10:
        return f"lines tilted {tilt:.0f} deg"
    if not (min(cl[0], cm[0]) < kc[0] < max(cl[0], cm[0])):
        return "knee centre not between the condyles"
    line_y = (cl[1] + cm[1] + tl[1] + tm[1]) / 4
    if not (-12 <= (kc[1] - line_y) * mm <= 6):
        return "knee centre off the joint line"
    if abs(line_y - label_y) * mm > band_mm:
        return f"joint line {abs(line_y - label_y) * mm:.0f} mm from the label's height"
    return ""


def band_masks(matrix: np.ndarray, size: int, label_y: float, mm: float, names: Any) -> np.ndarray:
    """``(C, S, S)`` 0/1 masks of the crop pixels whose image row lies in each channel's band."""
    from cpak_cli.networks.crops import crop_to_image

    v = np.arange(size, dtype=np.float64)
    uv = np.stack([np.zeros(size), v], axis=1)
    rows = crop_to_image(uv, matrix)[:, 1]  # an axis-aligned crop: the row depends on v only
    out = np.zeros((len(names), size, size), np.float32)
    ok = (rows - label_y) * mm
    for c, n in enumerate(names):
        lo, hi = BANDS_MM[n]
        out[c, (ok >= lo) & (ok <= hi), :] = 1.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", required=True)
    ap.add_argument("--weights", default=None, help="weights dir of the knee network (default: shipped)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--agree-mm", type=float, default=2.0)
    ap.add_argument("--label-band-mm", type=float, default=8.0)
    ap.add_argument("--band", action="store_true", help="search each channel only in its rows of BANDS_MM")
    a = ap.parse_args()
    model, card = load_model("knee", a.weights)
    size = int(card["input_size"])
    norm = card["architecture"].get("input_norm", "max")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    reasons: Counter[str] = Counter()
    kept = legs = 0
    for lab in read_point_labels(a.real):
        if is_held_out(lab.image_id):
            continue
        row_mm, col_mm = lab.spacing_mm
        if abs(row_mm - col_mm) > 1e-6 * max(row_mm, col_mm):  # the checks below take one mm per pixel
            reasons["anisotropic pixel spacing (film skipped)"] += 1
            continue
        if not any("knee" in pts for pts in lab.legs.values()):
            continue  # nothing to label: the film is not decoded
        pixels = load_pixels(lab).astype(np.float32)
        mm = float(col_mm)
        accepted: dict[str, dict[str, tuple[float, float] | None]] = {}
        boxes: dict[str, dict[str, Any]] = {}
        for side, pts in lab.legs.items():
            if "knee" not in pts:
                continue
            legs += 1
            kx, ky = pts["knee"]
            side_px = BOX_SIDE_MM["knee"] / mm
            crops, jobs = [], []
            for dx, dy, sc, gamma in VIEWS:
                box = square_box((kx + dx * side_px, ky + dy * side_px), BOX_SIDE_MM["knee"] * sc, lab.spacing_mm)
                job = make_job(0, side, "knee", box, size, lab.patient_right_on_image_left)
                crops.append(np.clip(make_crop(pixels, job, size, norm), 0, 1) ** gamma)
                jobs.append(job)
            probs = predict(model, np.stack(crops).astype(np.float32), "cpu")
            if a.band:
                probs = probs * np.stack([band_masks(job.matrix, size, ky, mm, card["landmarks"]) for job in jobs])
            views = [points_from_probs(pr, job.matrix, card["landmarks"], lab.spacing_mm) for pr, job in zip(probs, jobs)]
            if not all(p.found for v in views for p in v):
                reasons["not found in every view"] += 1
                continue
            med = {}
            spread = 0.0
            for i, name in enumerate(card["landmarks"]):
                xy = np.array([[v[i].x, v[i].y] for v in views])
                m = np.median(xy, axis=0)
                med[name] = m
                spread = max(spread, float(np.max(np.hypot(*(xy - m).T))) * mm)
            if spread > a.agree_mm:
                reasons["views disagree"] += 1
                continue
            why = knee_is_plausible(med, lateral_sign(side, lab.patient_right_on_image_left), ky, mm, a.label_band_mm)
            if why:
                key = why.split(" ")[0] if why[0].isalpha() else why
                reasons[key] += 1
                continue
            kept += 1
            accepted[side] = {n: (float(med[n][0]), float(med[n][1])) for n in NAMES}
            # the box the pipeline measures in after re-centring: on the knee centre found, not on
            # the label (which sits medially, docs/real-films.md)
            kc = accepted[side]["knee_center"]
            boxes[side] = {"knee": square_box(kc, BOX_SIDE_MM["knee"], lab.spacing_mm)}
        if not accepted:
            continue
        name = f"real-{lab.image_id}"
        image_name = f"{name}{lab.image_path.suffix}"
        shutil.copy(lab.image_path, out / image_name)
        write_landmarks(out / f"{name}.landmarks.json", LandmarkFile(
            image_name, lab.spacing_mm, accepted,
            {"patient_right_on_image_left": lab.patient_right_on_image_left,
             "source": "pseudo-labels (scripts/pseudo_label_knees.py)"}))
        write_boxes(out / f"{name}.boxes.json", BoxFile(image_name, boxes))
    summary = {"legs": legs, "accepted": kept, "rejected": reasons, "weights": a.weights or "shipped",
               "agree_mm": a.agree_mm, "label_band_mm": a.label_band_mm, "views": VIEWS}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
