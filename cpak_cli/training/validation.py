"""Validation of a landmark model during training: errors on un-augmented crops through the real chain.

Sigmoid -> ``extraction.extract_points`` Method 3 -> crop affine -> image pixels -> mm with the
anisotropic spacing ``(row_mm, col_mm)``; errors in mm and in crop pixels. :func:`metric_key` is
the number ``best.pt`` is chosen by (lower is better).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from cpak_cli.networks.models import ModelConfig
from cpak_cli.training.datasets import LegSample
from cpak_cli.training.training_crops import validation_crop

if TYPE_CHECKING:  # pragma: no cover
    import torch


def evaluate_samples(
    model: "torch.nn.Module", samples: list[LegSample], cfg: ModelConfig, device: str = "cpu",
    batch_size: int = 8, prepared: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Landmark errors on un-augmented crops through the real chain (Method 3, crop affine, spacing).

    Returns median/mean/p95 error in mm and median in crop pixels over all labelled landmarks (a
    landmark not found counts as infinitely wrong for the median), ``found_rate``, ``n_points`` and
    ``per_landmark_median_mm``. Partly labelled samples (real films) add the errors of their
    constraints (:func:`cpak_cli.training.supervision.constraint_errors_mm`) as ``real_median_mm`` and
    ``real_select_mm`` (:func:`real_selection_mm`); with both kinds, ``select_mm`` = fully labelled
    median + ``real_select_mm`` chooses ``best.pt``. Infinite values are reported as None.
    """
    from cpak_cli.core.extraction import extract_points
    from cpak_cli.networks import crops
    from cpak_cli.networks.models import predict
    from cpak_cli.training.supervision import constraint_errors_mm

    if not samples:
        return {}
    prepared = prepared or [validation_crop(s, cfg.input_size, cfg.input_norm) for s in samples]
    probs = predict(model, np.stack([c for c, _ in prepared]), device=device, batch_size=batch_size)
    err_mm, err_px, real_err = [], [], []
    for s, (_, m_img), pr in zip(samples, prepared, probs):
        est = extract_points(pr, method=3)
        uv = np.array([[e.x, e.y] for e in est], dtype=np.float64)
        xy = crops.crop_to_image(uv, m_img)
        if s.constraints:
            real_err.extend(constraint_errors_mm(xy, s))
        d = xy - s.points
        mm = np.hypot(d[:, 0] * s.spacing_mm[1], d[:, 1] * s.spacing_mm[0])
        px = np.hypot(*(uv - crops.image_to_crop(s.points, m_img)).T)
        labelled = np.isfinite(s.points).all(axis=1)
        err_mm.append(np.where(labelled, np.where(np.isfinite(mm), mm, np.inf), np.nan))
        err_px.append(np.where(labelled, np.where(np.isfinite(px), px, np.inf), np.nan))
    e_mm, e_px = np.stack(err_mm), np.stack(err_px)
    lab = ~np.isnan(e_mm)
    found = np.isfinite(e_mm)

    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    def med(a: np.ndarray) -> float | None:
        a = a[~np.isnan(a)]
        return num(float(np.median(a))) if a.size else None

    out: dict[str, Any] = {
        "median_mm": med(e_mm),
        "median_px": med(e_px),
        "mean_mm": num(float(e_mm[found].mean())) if found.any() else None,
        "p95_mm": num(float(np.percentile(e_mm[lab], 95))) if lab.any() else None,
        "found_rate": float(found.sum() / max(1, lab.sum())),
        "n_points": int(lab.sum()),
        "n_legs": len(samples),
        "per_landmark_median_mm": {n: med(e_mm[:, i]) for i, n in enumerate(cfg.landmarks)},
    }
    if real_err:
        r = np.asarray(real_err, dtype=np.float64)
        out.update(real_median_mm=num(float(np.median(r))), real_p90_mm=num(float(np.percentile(r, 90))),
                   real_found_rate=float(np.isfinite(r).mean()), real_n=int(r.size),
                   real_select_mm=real_selection_mm(r))
        out["select_mm"] = selection_mm(out["median_mm"] if lab.any() else 0.0, out["real_select_mm"])
    return out

#: Constraint errors count up to this many mm (a miss counts this much) when choosing ``best.pt``.
REAL_ERROR_CAP_MM = 30.0


def real_selection_mm(errors_mm: Any, cap_mm: float = REAL_ERROR_CAP_MM) -> float:
    """The mean of constraint errors (mm) capped at ``cap_mm``, a miss (inf) counting ``cap_mm``.

    A median would not do: band constraints are exactly 0 inside their band, so once most real
    knees sit inside, a median is 0 and no longer sees the others. NaN entries are skipped; no
    error gives 0."""
    r = np.asarray(errors_mm, dtype=np.float64)
    r = r[~np.isnan(r)]
    return float(np.minimum(r, cap_mm).mean()) if r.size else 0.0


def selection_mm(phantom_median_mm: float | None, real_select_mm: float) -> float | None:
    """What chooses ``best.pt`` with both kinds of samples: the fully labelled median plus
    :func:`real_selection_mm` (mm). None (scored as infinitely bad by :func:`metric_key`) when the
    fully labelled median is infinite (None): most phantom points missed, however good the real
    constraints look."""
    return None if phantom_median_mm is None else float(phantom_median_mm + real_select_mm)


def metric_key(metric: dict[str, Any] | None) -> float:
    if not metric:
        return math.inf
    key = metric.get("select_mm", metric.get("median_mm"))
    return math.inf if key is None else float(key)



__all__ = ["REAL_ERROR_CAP_MM", "evaluate_samples", "metric_key", "real_selection_mm", "selection_mm"]
