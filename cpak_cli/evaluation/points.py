"""Accuracy against three-point labels (hip top, knee centre, ankle centre per leg). Pure metrics.

Compares what the tool found on a film (its 8 landmarks, angles and, when the joint detector
ran, its joint centres) with the labels of :mod:`cpak_cli.training.pointlabels`, leg by leg, and
summarises many legs. Used by ``benchmarks/evaluate_real.py`` (real films) and
``benchmarks/resolution_robustness.py`` (the same film at two resolutions). No I/O, no torch.

Conventions (docs/conventions.md): points are pixel ``(x = column, y = row)``, origin at the
centre of the top-left pixel; spacing is ``(row_mm, col_mm)``; sides are the PATIENT's.

Missed and not-applicable values: an error is ``math.inf`` when the tool did not find the point
(a miss counts as infinitely wrong, so a median over legs is honest about misses) and ``NaN``
when there is nothing to compare with (no label). Summaries skip NaN, count ``inf`` as missed,
and give the quantiles both over all legs (misses included) and over the found points only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Mapping, Sequence

import numpy as np

from cpak_cli.core.geometry import ankle_center, mhka_from_centres
from cpak_cli.core.panel import JLCA_LANDMARKS

Point = Sequence[float]

#: The angles a fully measured leg carries (``LegMeasurement`` attributes).
ANGLES: Final[tuple[str, ...]] = ("ldfa", "mpta", "ahka", "jlo", "mhka")
#: mHKA thresholds (degrees) for the "share within" figures.
MHKA_WITHIN_DEG: Final[tuple[float, ...]] = (1.0, 2.0, 3.0)
#: Label point -> the detector joint whose centre it gives (see ``pointlabels.joint_centres``).
DETECTOR_JOINTS: Final[tuple[str, ...]] = ("hip", "knee", "ankle")


# --------------------------------------------------------------------------- points and errors


def distance_mm(pred: Point | None, true: Point | None, spacing_mm: tuple[float, float]) -> float:
    """Distance in mm between a predicted and a labelled pixel point.

    ``inf`` when ``pred`` is None or not finite (a miss), ``NaN`` when ``true`` is None (nothing
    to compare with). The x difference is scaled by ``col_mm``, the y difference by ``row_mm``.
    """
    if true is None:
        return float("nan")
    if pred is None or not all(math.isfinite(float(v)) for v in pred):
        return math.inf
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    return math.hypot((float(pred[0]) - float(true[0])) * col_mm, (float(pred[1]) - float(true[1])) * row_mm)


def horizontal_distance_mm(pred: Point | None, true: Point | None, spacing_mm: tuple[float, float]) -> float:
    """``|x_pred - x_true|`` in mm (columns scaled by ``col_mm``); ``inf`` / ``NaN`` as :func:`distance_mm`."""
    if true is None:
        return float("nan")
    if pred is None or not math.isfinite(float(pred[0])):
        return math.inf
    return abs(float(pred[0]) - float(true[0])) * float(spacing_mm[1])


def joint_line_height_error_mm(pred_points: Mapping[str, Point | None], knee_label: Point | None,
                                spacing_mm: tuple[float, float]) -> float:
    """Vertical distance (mm, absolute) between the knee's predicted joint line (mean row of
    :data:`JLCA_LANDMARKS`) and the knee label's row: ``inf`` when any of the four was not
    found, NaN without a label. Only the height is compared, so a label that sits to one side of
    the knee centre (the EOS set's, docs/real-films.md) still measures whether the network put the
    joint line on the joint and not on a growth plate 10-25 mm above or below it."""
    if knee_label is None:
        return math.nan
    ys = [pred_points.get(n) for n in JLCA_LANDMARKS]
    if any(p is None for p in ys):
        return math.inf
    line_y = sum(float(p[1]) for p in ys if p is not None) / len(ys)
    return abs(line_y - float(knee_label[1])) * float(spacing_mm[0])


def midpoint(a: Point | None, b: Point | None) -> tuple[float, float] | None:
    """Mid-point of two pixel points, None when either is missing (the tool's ankle centre)."""
    if a is None or b is None:
        return None
    c = ankle_center(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return (float(c[0]), float(c[1]))


def box_centre(box: Sequence[float] | None) -> tuple[float, float] | None:
    """Centre of an ``(x0, y0, x1, y1)`` box (the detector centres its boxes on the joint)."""
    if box is None:
        return None
    return ((float(box[0]) + float(box[2])) / 2.0, (float(box[1]) + float(box[3])) / 2.0)


def map_points_between_grids(
    points_xy: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]
) -> np.ndarray:
    """Pixel points of an image resampled from ``from_shape`` to ``to_shape`` (rows, cols), same
    field of view: ``x_to = (x_from + 0.5) * cols_to / cols_from - 0.5`` (pixel-centre origin),
    likewise for y. Any leading shape ``(..., 2)``; NaN stays NaN."""
    pts = np.asarray(points_xy, dtype=np.float64)
    sx = to_shape[1] / from_shape[1]
    sy = to_shape[0] / from_shape[0]
    return (pts + 0.5) * np.array([sx, sy]) - 0.5


def pred_side_for(label_side: str, label_right_on_image_left: bool, image_right_on_image_left: bool) -> str:
    """The side name the tool gave the leg that the labels call ``label_side``.

    Both name the PATIENT's side, each under its own orientation assumption: the labels under
    ``label_right_on_image_left``, the loaded image (hence the tool) under
    ``image_right_on_image_left``. The same physical leg (the same image half) keeps its name when
    the two agree and swaps it when they do not.
    """
    if label_side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {label_side!r}")
    if bool(label_right_on_image_left) == bool(image_right_on_image_left):
        return label_side
    return "left" if label_side == "right" else "right"


# --------------------------------------------------------------------------- quantiles and summaries


def quantile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """Linear-interpolated quantile (numpy's default) that lets ``inf`` (misses) take part.

    NaN entries are dropped. A quantile that falls on or next to an ``inf`` is ``inf``: with 3 of
    10 legs missed the median is finite and the p90 is ``inf``. NaN when nothing is left.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.sort(v[~np.isnan(v)])
    if v.size == 0:
        return float("nan")
    pos = q * (v.size - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if not math.isfinite(v[hi]):
        return math.inf
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def error_summary(errors: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """Summary of per-leg errors (``inf`` = missed, NaN = not applicable and skipped).

    Keys: ``n`` (applicable legs), ``missed``, ``found_pct`` (100 * found / n), ``median`` and
    ``p90`` over all ``n`` (misses counted as infinitely wrong), ``median_found`` and
    ``p90_found`` over the found ones only (NaN when none).
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    found = e[np.isfinite(e)]
    n = int(e.size)
    return {
        "n": n,
        "missed": n - int(found.size),
        "found_pct": 100.0 * found.size / n if n else float("nan"),
        "median": quantile(e, 0.5),
        "p90": quantile(e, 0.9),
        "median_found": quantile(found, 0.5),
        "p90_found": quantile(found, 0.9),
    }


def share_within(errors: Sequence[float] | np.ndarray, thresholds: Sequence[float]) -> dict[str, float]:
    """Percent of applicable entries (NaN skipped, ``inf`` = miss = outside) with ``error <= t``,
    keyed ``within_<t>`` (e.g. ``within_2``)."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    return {f"within_{t:g}": (100.0 * np.count_nonzero(e <= t) / e.size if e.size else float("nan"))
            for t in thresholds}


def angle_differences(
    a: Mapping[str, float | None], b: Mapping[str, float | None], names: Sequence[str] = ANGLES
) -> dict[str, float]:
    """``|a[name] - b[name]|`` per angle; ``inf`` when exactly one side lacks it (one measured,
    the other not), NaN when both lack it."""
    out = {}
    for n in names:
        va, vb = a.get(n), b.get(n)
        ok_a = va is not None and math.isfinite(va)
        ok_b = vb is not None and math.isfinite(vb)
        if ok_a and ok_b:
            out[n] = abs(float(va) - float(vb))  # type: ignore[arg-type]
        else:
            out[n] = math.inf if ok_a != ok_b else float("nan")
    return out


# --------------------------------------------------------------------------- one leg


@dataclass
class LegEval:
    """One labelled leg against the tool's result. Errors in mm (degrees for mHKA); ``inf`` =
    the tool missed it, NaN = no label to compare with. ``det_*`` are None when the joint
    detector did not run (boxes from the labels)."""

    image_id: str
    side: str
    measured_all: bool
    knee_error_mm: float
    ankle_error_mm: float
    hip_found: bool
    hip_error_mm: float          # pred femoral_head vs head centre estimated below the top label
    hip_dx_top_mm: float         # |x| distance pred femoral_head vs the head-TOP label
    mhka_pred: float | None
    mhka_label: float | None
    mhka_error_deg: float
    angles: dict[str, float | None] = field(default_factory=dict)
    det_found: dict[str, bool] | None = None
    det_error_mm: dict[str, float] | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    typed: bool = False          # the leg got a CPAK type (all angles and no flag that withholds it)
    knee_line_dy_mm: float = math.nan  # :func:`joint_line_height_error_mm`

    def row(self) -> dict[str, Any]:
        """A flat CSV row: misses as empty cells (see the ``*_found`` columns), floats rounded."""

        def num(v: float | None, nd: int = 3) -> Any:
            return "" if v is None or not math.isfinite(v) else round(float(v), nd)

        out: dict[str, Any] = {
            "id": self.image_id, "side": self.side, "measured_all": int(self.measured_all),
            "typed": int(self.typed),
            "knee_found": int(math.isfinite(self.knee_error_mm)), "knee_error_mm": num(self.knee_error_mm),
            "ankle_found": int(math.isfinite(self.ankle_error_mm)), "ankle_error_mm": num(self.ankle_error_mm),
            "hip_found": int(self.hip_found), "hip_error_mm": num(self.hip_error_mm),
            "hip_dx_top_mm": num(self.hip_dx_top_mm), "knee_line_dy_mm": num(self.knee_line_dy_mm),
            "mhka_pred": num(self.mhka_pred, 2), "mhka_label": num(self.mhka_label, 2),
            "mhka_error_deg": num(self.mhka_error_deg, 2),
        }
        for a in ("ldfa", "mpta", "ahka", "jlo"):
            out[a] = num(self.angles.get(a), 2)
        for j in DETECTOR_JOINTS:
            found = None if self.det_found is None else self.det_found.get(j)
            err = None if self.det_error_mm is None else self.det_error_mm.get(j)
            out[f"det_{j}_found"] = "" if found is None else int(found)
            out[f"det_{j}_error_mm"] = num(err)
        out["flags"] = ";".join(self.flags)
        out["error"] = self.error or ""
        return out


def evaluate_leg(
    image_id: str,
    side: str,
    labels: Mapping[str, Point],
    label_centres: Mapping[str, Point],
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool,
    pred_points: Mapping[str, Point | None],
    angles: Mapping[str, float | None],
    leg_error: str | None = None,
    flags: Sequence[str] = (),
    detected_centres: Mapping[str, Point] | None = None,
    cpak: str | None = None,
) -> LegEval:
    """Compare one leg's prediction with its labels.

    Args:
        labels: ``{"hip": top of the femoral head, "knee": knee centre, "ankle": ankle centre}``
            in pixels (a missing key = not labelled).
        label_centres: the joint centres from the labels (``pointlabels.joint_centres``; hip =
            head centre estimated below the top label).
        spacing_mm, patient_right_on_image_left: the film's; the label mHKA uses them.
        pred_points: the tool's found landmarks by name (None / absent = not found).
        angles: the tool's ``ldfa, mpta, ahka, jlo, mhka`` (None = not measured); a leg the
            tool did not return at all has all None and ``leg_error`` set.
        detected_centres: the joint detector's centres for this leg (absent joint = not found),
            or None when the detector did not run.
        cpak: the leg's CPAK type (None when the tool withheld it).
    """
    knee_p = pred_points.get("knee_center")
    ankle_p = midpoint(pred_points.get("ankle_lateral"), pred_points.get("ankle_medial"))
    head_p = pred_points.get("femoral_head")
    ang = {a: (None if angles.get(a) is None or not math.isfinite(angles[a]) else float(angles[a]))  # type: ignore[arg-type]
           for a in ANGLES}
    measured_all = leg_error is None and all(ang[a] is not None for a in ANGLES)
    mhka_label: float | None = None
    if all(p in labels for p in ("hip", "knee", "ankle")):
        v = mhka_from_centres(labels["hip"], labels["knee"], labels["ankle"], spacing_mm, side,
                              patient_right_on_image_left)
        mhka_label = v if math.isfinite(v) else None
    mhka_pred = ang["mhka"]
    if mhka_label is None:
        mhka_err = float("nan")
    elif mhka_pred is None:
        mhka_err = math.inf
    else:
        mhka_err = abs(mhka_pred - mhka_label)
    det_found = det_err = None
    if detected_centres is not None:
        det_found, det_err = {}, {}
        for j in DETECTOR_JOINTS:
            if j not in label_centres:
                continue
            det_found[j] = j in detected_centres
            det_err[j] = distance_mm(detected_centres.get(j), label_centres[j], spacing_mm)
    return LegEval(
        image_id=image_id, side=side, measured_all=measured_all,
        knee_error_mm=distance_mm(knee_p, labels.get("knee"), spacing_mm),
        ankle_error_mm=distance_mm(ankle_p, labels.get("ankle"), spacing_mm),
        hip_found=head_p is not None,
        hip_error_mm=distance_mm(head_p, label_centres.get("hip"), spacing_mm),
        hip_dx_top_mm=horizontal_distance_mm(head_p, labels.get("hip"), spacing_mm),
        mhka_pred=mhka_pred, mhka_label=mhka_label, mhka_error_deg=mhka_err,
        angles=ang, det_found=det_found, det_error_mm=det_err, flags=list(flags), error=leg_error,
        typed=measured_all and cpak is not None,
        knee_line_dy_mm=joint_line_height_error_mm(pred_points, labels.get("knee"), spacing_mm),
    )


# --------------------------------------------------------------------------- many legs


def summarize_legs(legs: Sequence[LegEval]) -> dict[str, Any]:
    """Headline figures over legs (see the README's "evaluation on real films").

    ``all_angles`` (count and percent of legs with all five angles and no error), ``typed``
    (of those, the legs with a CPAK type: no flag withheld it), ``knee_line`` (the joint line's
    height against the knee label, :func:`joint_line_height_error_mm`), per point
    ``knee``/``ankle``/``hip`` (:func:`error_summary`; ``hip_dx_top`` the horizontal error against
    the head-top label), ``mhka`` (:func:`error_summary` plus ``within_1/2/3`` percent and
    ``bias_found``, the median signed pred - label over found legs, and ``spread_found``, the
    median absolute deviation of those signed errors from ``bias_found``: a small spread with a
    large bias is a steady offset, e.g. labels that define a point differently), ``detector`` per joint
    (None when the detector did not run).
    """
    n = len(legs)
    n_all = sum(1 for leg in legs if leg.measured_all)
    n_typed = sum(1 for leg in legs if leg.typed)
    mhka_errs = [leg.mhka_error_deg for leg in legs]
    signed = [leg.mhka_pred - leg.mhka_label for leg in legs
              if leg.mhka_pred is not None and leg.mhka_label is not None]
    bias = quantile(signed, 0.5)
    out: dict[str, Any] = {
        "legs": n,
        "all_angles": {"count": n_all, "pct": 100.0 * n_all / n if n else float("nan")},
        "typed": {"count": n_typed, "pct": 100.0 * n_typed / n if n else float("nan")},
        "knee_line": error_summary([leg.knee_line_dy_mm for leg in legs]),
        "knee": error_summary([leg.knee_error_mm for leg in legs]),
        "ankle": error_summary([leg.ankle_error_mm for leg in legs]),
        "hip": error_summary([leg.hip_error_mm for leg in legs]),
        "hip_dx_top": error_summary([leg.hip_dx_top_mm for leg in legs]),
        "mhka": {**error_summary(mhka_errs), **share_within(mhka_errs, MHKA_WITHIN_DEG),
                 "bias_found": bias, "spread_found": quantile([abs(v - bias) for v in signed], 0.5)},
    }
    with_det = [leg for leg in legs if leg.det_found is not None]
    if with_det:
        out["detector"] = {
            j: error_summary([d[j] for d in (leg.det_error_mm for leg in with_det) if d is not None and j in d])
            for j in DETECTOR_JOINTS
        }
    else:
        out["detector"] = None
    return out


def worst_legs(legs: Sequence[LegEval], k: int) -> list[LegEval]:
    """The ``k`` worst legs by mHKA error: misses (``inf``) first, then the largest errors; legs
    without a label mHKA (NaN) last. Ties keep their input order."""

    def key(leg: LegEval) -> float:
        e = leg.mhka_error_deg
        return -math.inf if math.isnan(e) else e

    return sorted(legs, key=key, reverse=True)[: max(0, k)]


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN as None and infinities as the strings ``"inf"`` / ``"-inf"`` (strict
    JSON has neither), numpy scalars as Python numbers, tuples as lists."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def fmt_mm(v: float, unit: str = "mm", digits: int = 1) -> str:
    """A short text for a summary figure: ``"3.2 mm"``, ``"miss"`` for inf, ``"-"`` for NaN."""
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "miss"
    return f"{v:.{digits}f} {unit}".rstrip()


__all__ = [
    "ANGLES", "MHKA_WITHIN_DEG", "DETECTOR_JOINTS", "LegEval", "distance_mm", "horizontal_distance_mm", "midpoint",
    "box_centre", "map_points_between_grids", "pred_side_for", "quantile", "error_summary", "share_within",
    "angle_differences", "evaluate_leg", "summarize_legs", "worst_legs", "jsonable", "fmt_mm",
]
