"""Films labelled with three points per leg (hip, knee, ankle): reading, held-out split, centres.

This is the label format of the real-film sets the networks are checked and partly trained on
(see ``shared/data/real-eos/README.md``): a folder with ``labels.csv`` and ``images/<id>.png``.
``labels.csv`` columns: ``id, pixel_spacing_mm, width, height`` and, per leg as seen on the image
(``imgleft_`` = the leg on the image's left, ``imgright_``), ``hip_x, hip_y, knee_x, knee_y,
ankle_x, ankle_y`` in pixels of the image (x = column, y = row, origin at the centre of the
top-left pixel; docs/conventions.md). An empty cell is a missing point. Optional columns:
``pixel_spacing_row_mm``/``pixel_spacing_col_mm`` (anisotropic spacing), ``image`` (file name
relative to the folder), ``patient_right_on_image_left`` (1/0; default 1, the display convention).

Point meaning: ``hip`` = the TOP (most superior point) of the femoral head (a leg-length
convention), ``knee`` = knee joint centre (between the tibial spines, the tool's ``knee_center``),
``ankle`` = centre of the tibial plafond / talar dome (the mid-point of the tool's
``ankle_lateral``/``ankle_medial``). Pure Python + numpy; no torch.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Sequence

import numpy as np

from cpak_cli.errors import CpakInputError

POINTS: Final[tuple[str, ...]] = ("hip", "knee", "ankle")

#: Femoral head radius as a fraction of the distance head top -> knee centre (adult femoral head
#: radius 22-25 mm on a 430-470 mm femur; children are about the same in proportion). Used only
#: to place the head centre below a "head top" label; an error of 0.01 moves it ~4 mm along an
#: almost vertical femoral axis, which turns the axis by well under 0.1 degree.
HEAD_RADIUS_FRACTION: Final[float] = 0.054

#: The held-out part of a labelled set (:func:`is_held_out`): no training step reads those films.
HOLDOUT_FRACTION: Final[float] = 0.2
HOLDOUT_SEED: Final[int] = 2026


@dataclass(frozen=True)
class PointLabels:
    """Labels of one film. ``legs[side][point] = (x, y)`` pixels, ``side`` the PATIENT's side
    derived from ``patient_right_on_image_left``; ``spacing_mm = (row_mm, col_mm)``."""

    image_id: str
    image_path: Path
    spacing_mm: tuple[float, float]
    shape: tuple[int, int] | None  # (rows, cols) as stated in the CSV, None when not stated
    patient_right_on_image_left: bool
    legs: dict[str, dict[str, tuple[float, float]]]


def _num(row: dict[str, str], key: str, where: str) -> float | None:
    v = (row.get(key) or "").strip()
    if v == "":
        return None
    try:
        out = float(v)
    except ValueError:
        raise CpakInputError(where, f"column {key!r} is not a number: {v!r}") from None
    if not math.isfinite(out):
        raise CpakInputError(where, f"column {key!r} is not finite: {v!r}")
    return out


def read_point_labels(data_dir: str | Path) -> list[PointLabels]:
    """All labelled films of ``data_dir`` (``labels.csv`` + images), in CSV order.

    Raises:
        CpakInputError: no folder / no labels.csv, a missing column or image, a bad number or
            a non-positive spacing (one line naming the file and the row).
    """
    root = Path(data_dir)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise CpakInputError(root, "no labels.csv in this folder")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise CpakInputError(csv_path, "no rows")
    need = {"id", "pixel_spacing_mm"}
    missing = need - set(rows[0])
    if missing and not {"id", "pixel_spacing_row_mm", "pixel_spacing_col_mm"} <= set(rows[0]):
        raise CpakInputError(csv_path, f"missing column(s): {', '.join(sorted(missing))}")
    out = []
    for k, row in enumerate(rows, start=2):
        where = f"{csv_path}:{k}"
        iid = (row.get("id") or "").strip()
        if not iid:
            raise CpakInputError(where, "empty id")
        iso = _num(row, "pixel_spacing_mm", where)
        r_mm = _num(row, "pixel_spacing_row_mm", where) or iso
        c_mm = _num(row, "pixel_spacing_col_mm", where) or iso
        if r_mm is None or c_mm is None or r_mm <= 0 or c_mm <= 0:
            raise CpakInputError(where, "pixel spacing missing or not positive")
        name = (row.get("image") or "").strip() or f"images/{iid}.png"
        img = root / name
        if not img.is_file():
            raise CpakInputError(where, f"image not found: {img}")
        w, h = _num(row, "width", where), _num(row, "height", where)
        prl_txt = (row.get("patient_right_on_image_left") or "1").strip().lower()
        prl = prl_txt not in ("0", "false", "no")
        legs: dict[str, dict[str, tuple[float, float]]] = {}
        for img_side, on_left in (("imgleft", True), ("imgright", False)):
            side = "right" if on_left == prl else "left"
            pts = {}
            for p in POINTS:
                x, y = _num(row, f"{img_side}_{p}_x", where), _num(row, f"{img_side}_{p}_y", where)
                if x is not None and y is not None:
                    pts[p] = (x, y)
            if pts:
                legs[side] = pts
        out.append(PointLabels(iid, img, (float(r_mm), float(c_mm)),
                               None if w is None or h is None else (int(h), int(w)), prl, legs))
    return out


def load_pixels(labels: PointLabels) -> np.ndarray:
    """The film as float32 in [0, 1] (bone bright), shape (rows, cols), through the tool's loader."""
    from cpak_cli.input.loader import load_image

    return load_image(labels.image_path, pixel_spacing=labels.spacing_mm).pixels


def head_centre_from_top(hip_top: Sequence[float], knee: Sequence[float], spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """Estimated femoral head centre (pixels) below a head-TOP label: ``HEAD_RADIUS_FRACTION`` x
    the top-knee distance straight down (the most superior point of a sphere lies vertically
    above its centre). Pixel in, pixel out; spacing ``(row_mm, col_mm)``."""
    row_mm, col_mm = spacing_mm
    dx_mm = (float(knee[0]) - float(hip_top[0])) * col_mm
    dy_mm = (float(knee[1]) - float(hip_top[1])) * row_mm
    r_mm = HEAD_RADIUS_FRACTION * math.hypot(dx_mm, dy_mm)
    return (float(hip_top[0]), float(hip_top[1]) + r_mm / row_mm)


def joint_centres(labels: PointLabels) -> dict[str, dict[str, tuple[float, float]]]:
    """Joint centres as the detector defines them (``{side: {joint: (x, y)}}``): hip = head
    centre (estimated from the top label, needs the knee), knee = knee label, ankle = ankle label."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for side, pts in labels.legs.items():
        c: dict[str, tuple[float, float]] = {}
        if "hip" in pts and "knee" in pts:
            c["hip"] = head_centre_from_top(pts["hip"], pts["knee"], labels.spacing_mm)
        if "knee" in pts:
            c["knee"] = pts["knee"]
        if "ankle" in pts:
            c["ankle"] = pts["ankle"]
        if c:
            out[side] = c
    return out


def is_held_out(image_id: str) -> bool:
    """Whether a film belongs to the held-out part: ``sha1("HOLDOUT_SEED:id")`` read as a number in
    [0, 1) is below ``HOLDOUT_FRACTION``. A property of the id alone, so a copy of part of a set
    (or a set that grows) keeps every film on its side of the split."""
    h = hashlib.sha1(f"{HOLDOUT_SEED}:{image_id}".encode("utf-8")).hexdigest()
    return int(h[:12], 16) / float(16**12) < HOLDOUT_FRACTION


def holdout_split(image_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(usable_for_training, held_out)`` ids, each sorted (see :func:`is_held_out`)."""
    ids = sorted(set(image_ids))
    return [i for i in ids if not is_held_out(i)], [i for i in ids if is_held_out(i)]


__all__ = [
    "POINTS", "HEAD_RADIUS_FRACTION", "HOLDOUT_FRACTION", "HOLDOUT_SEED", "PointLabels", "read_point_labels",
    "load_pixels", "head_centre_from_top", "joint_centres", "is_held_out", "holdout_split",
]
