"""Evaluation metrics of the paper (Section II.F.1): point errors in mm, SDR, MedAE, and
per-class precision / recall / F1 for CPAK classification. Pure functions, no I/O.

Conventions (docs/conventions.md): points are pixel ``(x = column, y = row)`` arrays of shape
``(N, 2)``; pixel spacing is ``(row_mm, col_mm)``; ``x_mm = x * col_mm``, ``y_mm = y * row_mm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

SDR_THRESHOLDS_MM: Final[tuple[float, ...]] = (1.0, 2.0, 3.0, 5.0)
NOT_MEASURED: Final[str] = "not measured"


def point_errors_mm(
    pred_xy: np.ndarray, true_xy: np.ndarray, spacing_mm: tuple[float, float]
) -> np.ndarray:
    """Euclidean distance in mm between predicted and true pixel points (paper eq. 4).

    ``pred_xy``, ``true_xy``: ``(N, 2)`` pixel ``(x, y)`` arrays (a single ``(2,)`` point is also
    accepted). ``spacing_mm`` is ``(row_mm, col_mm)``: the x (column) difference is scaled by
    ``col_mm``, the y (row) difference by ``row_mm``. Returns ``(N,)`` float errors in mm; a NaN
    in either point (a missed detection) gives NaN.
    """
    pred = np.asarray(pred_xy, dtype=np.float64)
    true = np.asarray(true_xy, dtype=np.float64)
    if pred.shape != true.shape or pred.shape[-1:] != (2,) or pred.ndim > 2:
        raise ValueError(
            f"pred_xy and true_xy must both be (N, 2) arrays; got {pred.shape} and {true.shape}"
        )
    row_mm, col_mm = (float(s) for s in spacing_mm)
    if not (row_mm > 0 and col_mm > 0):
        raise ValueError(f"pixel spacing must be positive, got {spacing_mm!r}")
    d = pred - true
    return np.hypot(d[..., 0] * col_mm, d[..., 1] * row_mm)


def summarize_errors(errors_mm: np.ndarray) -> dict[str, float | int]:
    """Summary of landmark errors in mm; NaN entries are missed detections.

    Keys: ``n`` (all entries, incl. missed), ``missed`` (NaN count), ``median``, ``q1``, ``q3``,
    ``iqr``, ``p95``, ``mean`` (over the non-missed errors; NaN if there are none; percentiles
    with numpy's default linear interpolation), and ``sdr_1mm``, ``sdr_2mm``, ``sdr_3mm``,
    ``sdr_5mm``: successful detection rate (paper eq. 5) = (number of errors ``<= z`` mm) / ``n``,
    i.e. a fraction of ALL detections, missed ones counting as failures (NaN if ``n == 0``).
    """
    e = np.asarray(errors_mm, dtype=np.float64).ravel()
    n = int(e.size)
    ok = e[~np.isnan(e)]
    out: dict[str, float | int] = {"n": n, "missed": n - int(ok.size)}
    if ok.size:
        q1, med, q3, p95 = np.percentile(ok, [25.0, 50.0, 75.0, 95.0])
        out.update(
            median=float(med), q1=float(q1), q3=float(q3), iqr=float(q3 - q1),
            p95=float(p95), mean=float(ok.mean()),
        )
    else:
        out.update({k: float("nan") for k in ("median", "q1", "q3", "iqr", "p95", "mean")})
    for z in SDR_THRESHOLDS_MM:
        out[f"sdr_{z:g}mm"] = float(np.count_nonzero(ok <= z) / n) if n else float("nan")
    return out


def median_abs_error(true: np.ndarray, pred: np.ndarray) -> dict[str, float | int]:
    """Median absolute error (paper eq. 6) of ``|true - pred|`` (e.g. angles in degrees).

    Pairs where either value is NaN are ignored. Returns ``medae``, ``q1``, ``q3`` (25th/75th
    percentiles of the absolute errors, linear interpolation; NaN when no pair is left) and ``n``
    (pairs used). Inputs of any equal shape; they are flattened.
    """
    t = np.asarray(true, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"true and pred must have the same size, got {t.size} and {p.size}")
    a = np.abs(t - p)
    a = a[~np.isnan(a)]
    if a.size == 0:
        nan = float("nan")
        return {"medae": nan, "q1": nan, "q3": nan, "n": 0}
    q1, med, q3 = np.percentile(a, [25.0, 50.0, 75.0])
    return {"medae": float(med), "q1": float(q1), "q3": float(q3), "n": int(a.size)}


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's ``zero_division=0``)."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def classification_report(
    true_labels: Sequence[str],
    pred_labels: Sequence[str | None],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Per-class precision / recall / F1 (paper eqs. 7-12) and a confusion matrix.

    ``true_labels[i]`` must be one of ``classes`` (e.g. the nine CPAK classes ``"I"``..``"IX"``);
    ``pred_labels[i]`` is one of ``classes`` or ``None`` (not measured, e.g. a landmark missing).

    Counting, per class c: TP = true c and predicted c; FP = predicted c, true other;
    FN = true c, predicted other *or None* (a missing measurement is a miss of the true class).
    ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``,
    ``f1 = 2 TP / (2 TP + FP + FN)`` (= harmonic mean of the two), each 0 when its denominator
    is 0 (sklearn's ``zero_division=0``): a class never predicted has precision 0, a class with
    no support has recall 0, a class with neither has 0 for all three. Macro averages are plain
    means over ALL the given ``classes`` (N = ``len(classes)``), so such classes pull the macro
    averages down, exactly like sklearn with ``labels=classes, zero_division=0``.

    Returns a dict with keys:

    - ``"classes"``: list of the class names (order of ``classes``);
    - ``"per_class"``: ``{class: {"precision", "recall", "f1", "support"}}`` (support = number of
      true labels of that class, int);
    - ``"macro"``: ``{"precision", "recall", "f1"}``;
    - ``"confusion"``: list of lists, rows = true class (order of ``classes``), columns = predicted
      class (same order) followed by one last column ``"not measured"`` (None predictions);
    - ``"confusion_columns"``: ``[*classes, "not measured"]``;
    - ``"n"`` (number of samples), ``"not_measured"`` (number of None predictions),
      ``"accuracy"`` (sum of TP / n, None counted as wrong; NaN when n == 0).

    Raises ``ValueError`` for unequal lengths, duplicate classes, or a label outside ``classes``.
    """
    classes = list(classes)
    k = len(classes)
    if len(set(classes)) != k:
        raise ValueError(f"duplicate class names in {classes!r}")
    if len(true_labels) != len(pred_labels):
        raise ValueError(
            "true_labels and pred_labels differ in length: "
            f"{len(true_labels)} vs {len(pred_labels)}"
        )
    index = {c: i for i, c in enumerate(classes)}
    try:
        t_idx = np.fromiter((index[t] for t in true_labels), dtype=np.intp, count=len(true_labels))
    except KeyError as exc:
        raise ValueError(f"true label {exc.args[0]!r} is not one of {classes!r}") from None
    try:
        p_idx = np.fromiter(
            (k if p is None else index[p] for p in pred_labels), dtype=np.intp,
            count=len(pred_labels),
        )
    except KeyError as exc:
        raise ValueError(f"predicted label {exc.args[0]!r} is not one of {classes!r}") from None

    cm = np.bincount(t_idx * (k + 1) + p_idx, minlength=k * (k + 1)).reshape(k, k + 1)
    tp = np.diag(cm[:, :k])
    support = cm.sum(axis=1)  # true count per class (incl. not-measured)
    predicted = cm[:, :k].sum(axis=0)  # predicted count per class
    fp = predicted - tp
    fn = support - tp
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)

    n = int(t_idx.size)
    nan = float("nan")
    return {
        "classes": classes,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "macro": {
            "precision": float(precision.mean()) if k else nan,
            "recall": float(recall.mean()) if k else nan,
            "f1": float(f1.mean()) if k else nan,
        },
        "confusion": cm.astype(int).tolist(),
        "confusion_columns": [*classes, NOT_MEASURED],
        "n": n,
        "not_measured": int(cm[:, k].sum()),
        "accuracy": float(tp.sum() / n) if n else nan,
    }
