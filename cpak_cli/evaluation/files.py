"""`cpak evaluate`: compare predicted landmark files with truth files using the paper's metrics.

Predictions and truth are landmark JSON files (docs/conventions.md). Errors are in mm with the
*truth* file's pixel spacing; angles are recomputed from both sets of landmarks with the same
math (:mod:`cpak_cli.core.geometry`), so a truth file needs only landmarks and spacing.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.cpak import CPAK_TYPES
from cpak_cli.core.landmarks import JOINTS, LANDMARKS, SIDES, LandmarkFile, read_landmarks
from cpak_cli.core.measurement import measure_leg
from cpak_cli.core.metrics import classification_report, median_abs_error, point_errors_mm, summarize_errors
from cpak_cli.errors import CpakInputError

ANGLES = ("ldfa", "mpta", "ahka", "jlo")


@dataclass(frozen=True)
class Pair:
    """A prediction file and its truth file (same image)."""

    name: str
    pred: LandmarkFile
    truth: LandmarkFile


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".landmarks.json", ".pred.json", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".json" and not p.name.endswith(".boxes.json"))
    if path.is_file():
        return [path]
    raise CpakInputError(path, "no such file or folder")


def pair_files(pred: Path, truth: Path) -> list[Pair]:
    """Match prediction and truth landmark files by name (``caseNNNN[.landmarks].json``)."""
    truth_by = {_stem(p): p for p in _files(Path(truth))}
    pairs = []
    for p in _files(Path(pred)):
        t = truth_by.get(_stem(p))
        if t is not None:
            pairs.append(Pair(_stem(p), read_landmarks(p), read_landmarks(t)))
    if not pairs:
        raise CpakInputError(pred, f"no prediction file matches a truth file in {truth}")
    return pairs


def evaluate_pairs(pairs: Sequence[Pair]) -> dict[str, Any]:
    """The paper's metrics over all legs that have truth landmarks.

    Returns a JSON-ready dict: ``landmarks`` (per landmark and ``overall``, and per joint:
    median, IQR, p95, SDR at 1/2/3/5 mm, missed), ``angles`` (MedAE of LDFA, MPTA, aHKA, JLO),
    ``cpak`` (per-class precision/recall/F1, macro averages, confusion matrix), ``legs`` rows.
    """
    per_landmark: dict[str, list[float]] = {n: [] for n in LANDMARKS}
    angle_true: dict[str, list[float]] = {a: [] for a in ANGLES}
    angle_pred: dict[str, list[float]] = {a: [] for a in ANGLES}
    cls_true: list[str] = []
    cls_pred: list[str | None] = []
    legs: list[dict[str, Any]] = []
    for pair in pairs:
        spacing = pair.truth.spacing_mm
        if spacing is None:
            raise CpakInputError(pair.name, "truth file has no pixel_spacing_mm")
        orient = pair.truth.patient_right_on_image_left
        for side in SIDES:
            t_leg = pair.truth.legs.get(side)
            if not t_leg or any(t_leg.get(n) is None for n in LANDMARKS):
                continue
            p_leg = (pair.pred.legs.get(side) or {})
            row: dict[str, Any] = {"case": pair.name, "side": side}
            for n in LANDMARKS:
                pp = p_leg.get(n)
                pred_xy = np.array(pp if pp is not None else (np.nan, np.nan), dtype=np.float64)
                err = float(point_errors_mm(pred_xy[None], np.array([t_leg[n]], dtype=np.float64), spacing)[0])
                per_landmark[n].append(err)
                row[f"err_{n}_mm"] = err
            tm = measure_leg(side, t_leg, spacing, orient)
            pm = measure_leg(side, p_leg, spacing, orient)
            for a in ANGLES:
                tv, pv = getattr(tm, a), getattr(pm, a)
                angle_true[a].append(np.nan if tv is None else tv)
                angle_pred[a].append(np.nan if pv is None else pv)
                row[f"{a}_true"], row[f"{a}_pred"] = tv, pv
            cls_true.append(str(tm.cpak))
            cls_pred.append(pm.cpak)
            row["cpak_true"], row["cpak_pred"] = tm.cpak, pm.cpak
            row["flags"] = ";".join(pm.flags)
            legs.append(row)
    if not legs:
        raise CpakInputError(None, "no leg with complete truth landmarks to evaluate")
    lm_report: dict[str, Any] = {n: summarize_errors(np.array(v)) for n, v in per_landmark.items()}
    for joint, names in JOINTS.items():
        lm_report[f"joint:{joint}"] = summarize_errors(np.concatenate([np.array(per_landmark[n]) for n in names]))
    lm_report["overall"] = summarize_errors(np.concatenate([np.array(v) for v in per_landmark.values()]))
    angles = {a: median_abs_error(np.array(angle_true[a]), np.array(angle_pred[a])) for a in ANGLES}
    cpak = classification_report(cls_true, cls_pred, CPAK_TYPES)
    return {
        "n_images": len(pairs),
        "n_legs": len(legs),
        "landmarks": lm_report,
        "angles": angles,
        "cpak": cpak,
        "legs": legs,
    }


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def legs_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Per-leg rows as CSV text."""
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def write_report(report: dict[str, Any], json_path: Path | None, csv_path: Path | None) -> None:
    """Write the report as JSON and the per-leg rows as CSV (both atomically)."""
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(_clean(report), indent=2) + "\n")
    if csv_path is not None:
        atomic_write_text(csv_path, legs_csv(report["legs"]))


def format_summary(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of the headline figures, for printing."""
    out = []
    for key in ["overall", "joint:hip", "joint:knee", "joint:ankle"]:
        s = report["landmarks"][key]
        out.append((f"landmark error {key.replace('joint:', '')}",
                    f"median {s['median']:.2f} mm (IQR {s['iqr']:.2f}), p95 {s['p95']:.2f} mm, "
                    f"SDR 1/2/3/5 mm {s['sdr_1mm']:.2f}/{s['sdr_2mm']:.2f}/{s['sdr_3mm']:.2f}/{s['sdr_5mm']:.2f}, "
                    f"missed {s['missed']}"))
    for a in ANGLES:
        m = report["angles"][a]
        out.append((f"{a} MedAE", f"{m['medae']:.2f} deg (IQR {m['q1']:.2f}-{m['q3']:.2f}), n={m['n']}"))
    c = report["cpak"]
    out.append(("CPAK", f"accuracy {c['accuracy']:.3f}, macro P/R/F1 {c['macro']['precision']:.3f}/"
                        f"{c['macro']['recall']:.3f}/{c['macro']['f1']:.3f}, not measured {c['not_measured']}"))
    return out
