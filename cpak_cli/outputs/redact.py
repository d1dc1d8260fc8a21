"""Blank text burned into a film's pixels (names, dates, IDs) before an anonymized image is written.

The overlay of an anonymized batch shows the film; a film often carries the patient's name, date
of birth or ID in its pixels. :func:`find_text_boxes` (grey picture + protected boxes -> boxes to
blank; the search itself is :mod:`cpak_cli.outputs.text_find`) finds lines of text by shape,
without OCR; :func:`blank_boxes` applies them. :func:`redact_pixels` does both on a film at its
own spacing and :func:`redact_result` on a measured film, keeping the legs' region
(:func:`result_protected_boxes`: each leg's joint boxes, landmarks and shafts, expanded) intact:
the bones and landmarks a reviewer checks are never blanked, so text over them stays.

Not found: text inside the legs' region, text smaller or larger than
:data:`cpak_cli.outputs.text_find.CHAR_MM`, fainter than ``MIN_CONTRAST``, on textured anatomy,
or a lone letter (lead side markers are kept on purpose). README "De-identification" states
what is and is not removed.

Boxes are ``(x0, y0, x1, y1)`` in pixel coordinates of the picture they refer to (x = column,
y = row, origin at the centre of the top-left pixel, docs/conventions.md); a box covers the
pixels whose centres satisfy ``x0 <= x <= x1, y0 <= y <= y1``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from cpak_cli.outputs.text_boxes import Box, outside_all, pixel_range, subtract_box
from cpak_cli.outputs.text_find import WORK_MM, TextFound, find_text, find_text_boxes

if TYPE_CHECKING:  # pragma: no cover
    from cpak_cli.pipeline.result import ScanResult

__all__ = [
    "Box", "Redaction", "TextFound", "blank_boxes", "covered_fraction", "film_text", "film_text_boxes",
    "find_text", "find_text_boxes", "outside_all", "protected_boxes", "redact_pixels", "redact_result",
    "pixel_range", "result_protected_boxes", "subtract_box", "to_grey",
]

#: Margin added around each leg's joint boxes and landmarks (protected, never blanked), mm.
PROTECT_MARGIN_MM = 10.0
#: Half width of the protected band along each shaft (joint centre to joint centre), mm.
SHAFT_HALF_WIDTH_MM = 45.0
#: Length of one protected box along a shaft, mm (the band is a staircase of such boxes).
SHAFT_STEP_MM = 40.0


@dataclass(frozen=True)
class Redaction:
    """What :func:`redact_pixels` blanked on one film.

    Attributes:
        boxes: blanked boxes, pixels of the film (clipped to the film, none inside ``protected``).
        protected: the protected boxes used, pixels of the film.
        blanked_fraction: fraction of the film's pixels set to the fill value (0..1).
        lines_in_legs: text lines found that reach into a protected box (that part is kept).
    """

    boxes: tuple[Box, ...]
    protected: tuple[Box, ...]
    blanked_fraction: float
    lines_in_legs: int = 0


def blank_boxes(pixels: np.ndarray, boxes: Iterable[Box], value: float = 0.0) -> np.ndarray:
    """A copy of ``pixels`` (2-D, any dtype) with the pixels of each box set to ``value``.

    Boxes are in pixels of ``pixels`` and are clipped to the image."""
    out = np.array(pixels, copy=True)
    rows, cols = out.shape[:2]
    for b in boxes:
        c0, r0, c1, r1 = pixel_range(b)
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, cols - 1), min(r1, rows - 1)
        if c0 <= c1 and r0 <= r1:
            out[r0:r1 + 1, c0:c1 + 1] = value
    return out


def covered_fraction(shape: tuple[int, int], boxes: Iterable[Box]) -> float:
    """Fraction of an image of ``shape`` (rows, cols) covered by the union of ``boxes``."""
    mask = blank_boxes(np.zeros(shape, np.bool_), boxes, True)
    return float(mask.mean()) if mask.size else 0.0


# --------------------------------------------------------------------------- films
def to_grey(pixels: np.ndarray) -> np.ndarray:
    """uint8 0..255 stretch of ``pixels`` between its 0.5 and 99.5 percentiles: the overlay's
    picture (:func:`cpak_cli.outputs.overlay.render_overlay`) and the text search read the same."""
    p = np.asarray(pixels, dtype=np.float32)
    lo, hi = np.percentile(p, [0.5, 99.5])
    return np.clip((p - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def film_text(pixels: np.ndarray, spacing_mm: tuple[float, float]) -> TextFound:
    """The text lines of a film (:func:`find_text`), boxes in its own pixels.

    ``pixels`` is a float ``(rows, cols)`` film, ``spacing_mm`` its ``(row_mm, col_mm)``; the
    search runs on a square-pixel copy of :data:`WORK_MM` mm per pixel (or the film's coarser
    spacing: never up-sampled). Each box covers every film pixel that overlaps a working pixel
    of the box found, clipped to the film."""
    import cv2

    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    work_mm = max(WORK_MM, row_mm, col_mm)
    fx, fy = col_mm / work_mm, row_mm / work_mm
    rows, cols = pixels.shape
    small: np.ndarray = np.asarray(pixels, np.float32)
    if (fx, fy) != (1.0, 1.0):
        small = cv2.resize(small, (max(1, round(cols * fx)), max(1, round(rows * fy))), interpolation=cv2.INTER_AREA)
    found = find_text(to_grey(small), work_mm)

    def back(b: Box) -> Box:  # a working pixel j spans film x in [j / f - 0.5, (j + 1) / f - 0.5]
        return (max(0.0, math.floor(b[0] / fx - 0.5)), max(0.0, math.floor(b[1] / fy - 0.5)),
                min(cols - 1.0, math.ceil((b[2] + 1.0) / fx - 0.5)), min(rows - 1.0, math.ceil((b[3] + 1.0) / fy - 0.5)))

    # a kept marker is shrunk back by a film pixel so that rounding never uncovers text around it
    keep = [(k[0] + 1.0, k[1] + 1.0, k[2] - 1.0, k[3] - 1.0) for k in map(back, found.keep)]
    return TextFound(tuple(map(back, found.lines)), tuple(map(back, found.blank)), tuple(keep))


def film_text_boxes(pixels: np.ndarray, spacing_mm: tuple[float, float], protected: Sequence[Box] = ()) -> list[Box]:
    """Boxes to blank over the text of a film (:func:`film_text`), ``protected`` cut out; film pixels."""
    return film_text(pixels, spacing_mm).boxes(protected)


def protected_boxes(
    joint_boxes: Mapping[str, Mapping[str, Box]],
    landmarks: Mapping[str, Mapping[str, tuple[float, float] | None]],
    spacing_mm: tuple[float, float],
    margin_mm: float = PROTECT_MARGIN_MM,
    shaft_half_mm: float = SHAFT_HALF_WIDTH_MM,
) -> list[Box]:
    """The legs' region as boxes in film pixels, never to be blanked.

    Per leg (``joint_boxes[side][joint]``, ``landmarks[side][name]``, film pixels): every joint
    box and every found landmark expanded by ``margin_mm``, and the shafts between consecutive
    joints (hip, knee, ankle: centres of their boxes) covered by boxes at most
    :data:`SHAFT_STEP_MM` long reaching ``shaft_half_mm`` either side of the line between them.
    """
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])

    def grow(b: Box, mm: float) -> Box:
        return (b[0] - mm / col_mm, b[1] - mm / row_mm, b[2] + mm / col_mm, b[3] + mm / row_mm)

    out: list[Box] = []
    for side in sorted(set(joint_boxes) | set(landmarks)):
        jb = joint_boxes.get(side, {})
        out += [grow(b, margin_mm) for b in jb.values()]
        out += [grow((p[0], p[1], p[0], p[1]), margin_mm) for p in landmarks.get(side, {}).values() if p is not None]
        centres = [((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0) for j in ("hip", "knee", "ankle")
                   if (b := jb.get(j)) is not None]
        for (ax, ay), (bx, by) in zip(centres, centres[1:]):
            length_mm = math.hypot((bx - ax) * col_mm, (by - ay) * row_mm)
            n = max(1, math.ceil(length_mm / SHAFT_STEP_MM))
            for k in range(n):
                x0, y0 = ax + (bx - ax) * k / n, ay + (by - ay) * k / n
                x1, y1 = ax + (bx - ax) * (k + 1) / n, ay + (by - ay) * (k + 1) / n
                out.append(grow((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), shaft_half_mm))
    return out


def result_protected_boxes(result: ScanResult) -> list[Box]:
    """:func:`protected_boxes` of a measured film: its joint boxes and found landmarks."""
    assert result.image is not None
    points = {side: {n: p.xy for n, p in preds.items()} for side, preds in result.landmarks.items()}
    return protected_boxes(result.boxes, points, result.image.spacing_mm)


def redact_pixels(pixels: np.ndarray, spacing_mm: tuple[float, float], protected: Sequence[Box] = (),
                  value: float = 0.0) -> tuple[np.ndarray, Redaction]:
    """A copy of ``pixels`` (float ``(rows, cols)``, spacing ``(row_mm, col_mm)``) with the text
    lines set to ``value`` (0: black in a bone-bright film) except inside the ``protected`` boxes
    (film pixels), and what was blanked."""
    found = film_text(pixels, spacing_mm)
    boxes = found.boxes(protected)
    in_legs = sum(1 for b in found.lines if any(subtract_box(b, p) != [_int_float(b)] for p in protected))
    shape = (int(pixels.shape[0]), int(pixels.shape[1]))
    red = Redaction(tuple(boxes), tuple(protected), covered_fraction(shape, boxes), in_legs)
    return blank_boxes(pixels, boxes, value), red


def _int_float(b: Box) -> Box:
    c0, r0, c1, r1 = pixel_range(b)
    return (float(c0), float(r0), float(c1), float(r1))


def redact_result(result: ScanResult, protected: Sequence[Box] | None = None) -> tuple[ScanResult, Redaction]:
    """``result`` with its film's burned-in text blanked (a copy; ``result`` is not changed), for
    drawing an anonymized overlay. The legs' region (:func:`result_protected_boxes`) is never blanked.
    With the default protection the outcome is kept on ``result`` (``result.redacted``), so the
    overlay PNG and the report thumbnail of one film search its text once."""
    assert result.image is not None
    if protected is None and result.redacted is not None:
        return result.redacted
    prot = result_protected_boxes(result) if protected is None else list(protected)
    pixels, red = redact_pixels(result.image.pixels, result.image.spacing_mm, prot)
    image = result.image.with_pixels(pixels)
    outcome = dataclasses.replace(result, image=image), red
    if protected is None:
        result.redacted = outcome
    return outcome
