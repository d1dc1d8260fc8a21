"""Overlay drawing: the radiograph with landmarks, mechanical axes, joint lines, numbers and flags.

Used by ``cpak measure --overlay``, ``cpak batch --overlays``, the thumbnails of ``cpak batch
--report`` and the phantom preview. Input points are image pixels ``(x, y)`` of the source image
(docs/conventions.md); the picture is down-sampled to at most ``max_height`` rows and resampled
so that its pixels are square in mm. Text is sized relative to the picture's height, so that it
stays legible when a viewer fits the film to a screen, and drawn with a dark outline on a
translucent dark panel: white for numbers, red for flags that take the CPAK type away, amber for
informational flags. A scale bar (100 mm, or shorter on a narrow film) comes from the spacing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, Union

import numpy as np

from cpak_cli.atomic import atomic_write_bytes
from cpak_cli.errors import CpakInputError

if TYPE_CHECKING:  # pragma: no cover
    from cpak_cli.core.measurement import LegMeasurement
    from cpak_cli.pipeline.result import ScanResult

# BGR colours
_COL = {
    "femoral_head": (0, 200, 255),
    "femoral_condyle_lateral": (0, 255, 0),
    "femoral_condyle_medial": (0, 160, 0),
    "tibial_plateau_lateral": (255, 128, 0),
    "tibial_plateau_medial": (200, 80, 0),
    "knee_center": (0, 0, 255),
    "ankle_lateral": (255, 0, 255),
    "ankle_medial": (160, 0, 160),
}
_AXIS = (0, 255, 255)
_LINE = (255, 255, 0)

#: Text colours (BGR): numbers, flags that remove the CPAK type, informational flags.
WHITE = (255, 255, 255)
RED = (70, 70, 255)
AMBER = (0, 190, 255)

Colour = tuple[int, int, int]
#: One line of a leg's label: plain text (white) or ``(text, BGR colour)``.
Line = Union[str, tuple[str, Colour]]

#: Numbers drawn for each leg, one tuple per text line of ``(label, LegMeasurement attribute,
#: unit)``. A value the leg lacks (None, or an attribute it does not have) is drawn as ``-``.
#: LDFA, MPTA, aHKA and JLO are drawn as the tables print them (:func:`shown_values`). Add a line
#: here to draw more numbers (e.g. ``(("JLCA", "jlca", ""),)``).
NUMBER_LINES: tuple[tuple[tuple[str, str, str], ...], ...] = (
    (("LDFA", "ldfa", ""), ("MPTA", "mpta", "")),
    (("aHKA", "ahka", ""), ("JLO", "jlo", "")),
    (("mHKA", "mhka", ""), ("JLCA", "jlca", "")),
    (("MAD", "mad_mm", " mm"),),
)

#: Cap height of the text as a share of the picture's height (1.25 %: 25 px on a 2000-row
#: overlay, 12 px when a viewer shows it 1000 px tall), and the smallest font scale used when a
#: narrow film needs smaller text to fit half its width.
TEXT_HEIGHT = 0.0125
MIN_FONT_SCALE = 0.35
#: Scale bar lengths (mm) tried longest first; the first shorter than a third of the width is drawn.
SCALE_BAR_MM = (100.0, 50.0, 20.0, 10.0)

_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX (OpenCV 5 draws it from an outline font)


def shown_values(leg: "LegMeasurement") -> dict[str, float | None]:
    """The numbers of :data:`NUMBER_LINES` for ``leg`` (degrees / mm), by attribute name, as the
    tables print them: LDFA and MPTA rounded to 0.1 and aHKA and JLO computed from those, so the
    drawn numbers add up (:func:`cpak_cli.core.cpak.display_angles`)."""
    from cpak_cli.core.cpak import display_angles

    values = {attr: getattr(leg, attr, None) for line in NUMBER_LINES for _, attr, _ in line}
    if leg.ldfa is not None and leg.mpta is not None:
        ldfa, mpta, ahka, jlo = display_angles(leg.ldfa, leg.mpta)
        values.update(ldfa=ldfa, mpta=mpta)
        if leg.ahka is not None and leg.jlo is not None:
            values.update(ahka=ahka, jlo=jlo)
    return values


def leg_lines(leg: "LegMeasurement") -> list[Line]:
    """The label of one leg: side and CPAK type, the numbers of :data:`NUMBER_LINES`, then each
    flag in its colour (:func:`cpak_cli.outputs.flags.removes_type`: red, else amber) and, for a
    leg that is not measured, why (red)."""
    from cpak_cli.outputs.flags import removes_type

    lines: list[Line] = []
    if not leg.measured:
        lines.append((f"{leg.side.upper()}  not measured", RED))
    elif leg.cpak is None:
        lines.append((f"{leg.side.upper()}  no CPAK type", RED))
    else:
        lines.append(f"{leg.side.upper()}  CPAK {leg.cpak}")
    values = shown_values(leg)
    for items in NUMBER_LINES:
        cells = [f"{label} {'-' if values.get(attr) is None else f'{values[attr]:.1f}'}{unit}"
                 for label, attr, unit in items]
        lines.append("  ".join(cells))
    lines.extend((flag, RED if removes_type(flag) else AMBER) for flag in leg.flags)
    if leg.error:
        lines.append((leg.error, RED))
    return lines


def render_overlay(
    pixels: np.ndarray,
    legs: Mapping[str, Mapping[str, Sequence[float] | None]],
    labels: Mapping[str, Sequence[Line]] | None = None,
    max_height: int = 2000,
    title: str | None = None,
    spacing_mm: tuple[float, float] | None = None,
    boxes: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> np.ndarray:
    """An 8-bit BGR picture of ``pixels`` (float, bone bright) with each leg's geometry.

    ``legs[side][name]`` are source pixel points (None = missing): the mechanical axes (femoral
    head -> knee centre -> ankle centre), the condylar, plateau and ankle lines and a circle per
    landmark are drawn. ``labels[side]`` are lines of text (:data:`Line`) drawn beside that leg's
    femur, against the image border on its side; ``boxes[side][joint]`` crop boxes; ``title`` a
    line at the bottom. With ``spacing_mm`` (row, col) anisotropic pixels are drawn with their
    true mm aspect and a scale bar is drawn (:data:`SCALE_BAR_MM`).
    """
    import cv2

    img = np.asarray(pixels, dtype=np.float32)
    scale = min(1.0, max_height / img.shape[0])
    aspect = 1.0 if spacing_mm is None else spacing_mm[1] / spacing_mm[0]
    scale_x = scale * aspect
    small = cv2.resize(img, (max(1, round(img.shape[1] * scale_x)), max(1, round(img.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA) if (scale < 1 or aspect != 1) else img
    from cpak_cli.outputs.redact import to_grey

    out = cv2.cvtColor(to_grey(small), cv2.COLOR_GRAY2BGR)
    th = max(1, round(out.shape[0] / 900))

    def pt(p: Sequence[float]) -> tuple[int, int]:
        # pixel centre convention: scaled image pixel centre of source x is (x + 0.5) * scale - 0.5
        return (int(round((p[0] + 0.5) * scale_x - 0.5)), int(round((p[1] + 0.5) * scale - 0.5)))

    for joints in (boxes or {}).values():
        for box in joints.values():
            cv2.rectangle(out, pt((box[0], box[1])), pt((box[2], box[3])), (80, 200, 80), th, cv2.LINE_AA)
    for leg in legs.values():
        _draw_leg(out, leg, pt, th)
    fs = font_scale(out.shape[0], out.shape[1], [line for ls in (labels or {}).values() for line in ls])
    for side, lines in (labels or {}).items():
        leg = legs.get(side, {})
        anchor = next((leg[n] for n in ("knee_center", "femoral_head", "ankle_lateral") if leg.get(n) is not None),
                      None)
        if anchor is None:
            continue
        x_knee, y_knee = pt(anchor)
        hip = leg.get("femoral_head")
        y_mid = (pt(hip)[1] + y_knee) // 2 if hip is not None and leg.get("knee_center") is not None else y_knee
        draw_text_block(out, lines, fs, left=x_knee < out.shape[1] / 2, y_centre=y_mid)
    bottom = out.shape[0]
    if title:
        bottom = _draw_title(out, title, fs)
    if spacing_mm is not None:
        draw_scale_bar(out, spacing_mm[0] / scale, fs, bottom)
    return out


def _draw_leg(out: np.ndarray, leg: Mapping[str, Sequence[float] | None],
              pt: Callable[[Sequence[float]], tuple[int, int]], th: int) -> None:
    """Axes, joint lines and landmark circles of one leg (points in source pixels, ``pt`` maps
    them to the picture)."""
    import cv2

    r = max(3, round(out.shape[0] / 300))
    P = {n: leg.get(n) for n in _COL}
    ankle = None
    if P["ankle_lateral"] is not None and P["ankle_medial"] is not None:
        ankle = ((P["ankle_lateral"][0] + P["ankle_medial"][0]) / 2, (P["ankle_lateral"][1] + P["ankle_medial"][1]) / 2)
        cv2.line(out, pt(P["ankle_lateral"]), pt(P["ankle_medial"]), _LINE, th, cv2.LINE_AA)
    if P["knee_center"] is not None:
        for end in (P["femoral_head"], ankle):
            if end is not None:
                cv2.line(out, pt(end), pt(P["knee_center"]), _AXIS, th, cv2.LINE_AA)
    for a, b in (("femoral_condyle_lateral", "femoral_condyle_medial"), ("tibial_plateau_lateral", "tibial_plateau_medial")):
        if P[a] is not None and P[b] is not None:
            pa, pb = np.array(P[a], float), np.array(P[b], float)
            d = pb - pa
            cv2.line(out, pt(pa - 0.3 * d), pt(pb + 0.3 * d), _LINE, th, cv2.LINE_AA)
    for n, p in P.items():
        if p is not None:
            cv2.circle(out, pt(p), r, _COL[n], th, cv2.LINE_AA)


def _text(line: Line) -> tuple[str, Colour]:
    return (line, WHITE) if isinstance(line, str) else line


def _thickness(fs: float) -> int:
    return max(1, round(fs * 1.5))


def _cap(fs: float) -> float:
    """Height in pixels of a capital letter at font scale ``fs``."""
    import cv2

    return float(cv2.getTextSize("H", _FONT, fs, 1)[0][1])


def put_text(out: np.ndarray, text: str, org: tuple[int, int], fs: float, colour: Colour) -> None:
    """``text`` with its baseline starting at pixel ``org`` (x, y), in ``colour`` with a dark
    outline about a sixth of the letter height wide. The outline is the dilated letter mask, not
    the text drawn thicker: OpenCV 5 draws thicker text wider, which would shift the outline."""
    import cv2

    th = _thickness(fs)
    (w, h), base = cv2.getTextSize(text, _FONT, fs, th)
    halo = max(1, round(_cap(fs) / 6))
    x0, y0 = org[0] - halo - 1, org[1] - h - halo - 1
    x1, y1 = org[0] + w + halo + 1, org[1] + base + halo + 1
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(mask, text, (org[0] - x0, org[1] - y0), _FONT, fs, 255, th, cv2.LINE_AA)
    outline = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * halo + 1, 2 * halo + 1)))
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, out.shape[1]), min(y1, out.shape[0])
    if cx0 >= cx1 or cy0 >= cy1:
        return
    sl = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    a_out = outline[sl].astype(np.float32)[..., None] / 255
    a_txt = mask[sl].astype(np.float32)[..., None] / 255
    roi = out[cy0:cy1, cx0:cx1].astype(np.float32) * (1 - a_out)
    roi = roi * (1 - a_txt) + np.asarray(colour, np.float32) * a_txt
    out[cy0:cy1, cx0:cx1] = np.clip(np.round(roi), 0, 255).astype(np.uint8)


def font_scale(height: int, width: int, lines: Sequence[Line]) -> float:
    """Font scale for a picture ``height`` x ``width`` pixels: a cap height of
    :data:`TEXT_HEIGHT` of the height, made smaller (down to :data:`MIN_FONT_SCALE`) until every
    white line (the numbers) fits in 45 % of the width; longer lines are wrapped when drawn."""
    import cv2

    fs = max(MIN_FONT_SCALE, TEXT_HEIGHT * height / _cap(1.0))
    th = _thickness(fs)
    widest = max((cv2.getTextSize(t, _FONT, fs, th)[0][0] for t, c in map(_text, lines) if c == WHITE), default=0)
    if widest > 0.45 * width:
        fs = max(MIN_FONT_SCALE, fs * 0.45 * width / widest)
    return fs


def _wrap(text: str, fs: float, max_w: int) -> list[str]:
    """``text`` broken at spaces into lines at most ``max_w`` pixels wide; a word wider than that
    is broken after its underscores (a single part wider still stays whole)."""
    import cv2

    th = _thickness(fs)

    def fits(t: str) -> bool:
        return cv2.getTextSize(t, _FONT, fs, th)[0][0] <= max_w

    out: list[str] = []
    for word in text.split(" "):
        for k, part in enumerate([word] if fits(word) else re.findall(r"[^_]+_*|_+", word) or [word]):
            glue = " " if k == 0 else ""  # a space between words, nothing between parts of one
            if out and fits(out[-1] + glue + part):
                out[-1] += glue + part
            else:
                out.append(part)
    return out or [""]


def draw_text_block(out: np.ndarray, lines: Sequence[Line], fs: float, left: bool, y_centre: int) -> None:
    """Draw ``lines`` (wrapped to 48 % of the width) on a translucent dark panel against the left
    or right border, centred on row ``y_centre`` where the picture allows. Modifies ``out``."""
    import cv2

    th = _thickness(fs)
    pad = max(3, round(6 * fs))
    max_w = int(0.48 * out.shape[1]) - 2 * pad
    wrapped = [(part, colour) for line in lines for text, colour in [_text(line)] for part in _wrap(text, fs, max_w)]
    if not wrapped:
        return
    line_h = int(round(_cap(fs) * 1.7))
    w = max(cv2.getTextSize(t, _FONT, fs, th)[0][0] for t, _ in wrapped) + 2 * pad
    h = line_h * len(wrapped) + 2 * pad
    y0 = int(min(max(2, y_centre - h // 2), max(2, out.shape[0] - h - 2)))
    x0 = 2 if left else max(2, out.shape[1] - w - 2)
    roi = out[y0:y0 + h, x0:x0 + w]
    roi[:] = (roi.astype(np.float32) * 0.4).astype(np.uint8)
    for k, (text, colour) in enumerate(wrapped):
        put_text(out, text, (x0 + pad, y0 + pad + k * line_h + int(round((line_h + _cap(fs)) / 2))), fs, colour)


def _draw_title(out: np.ndarray, title: str, fs: float) -> int:
    """``title`` at the bottom left, shrunk to the width; returns the row above it."""
    import cv2

    size = fs * 0.8
    while size > 0.2 and cv2.getTextSize(title, _FONT, size, _thickness(size))[0][0] > out.shape[1] - 8:
        size *= 0.9
    y = out.shape[0] - 6
    put_text(out, title, (4, y), size, WHITE)
    return y - int(_cap(size)) - 6


def draw_scale_bar(out: np.ndarray, mm_per_px: float, fs: float, bottom: int) -> float | None:
    """A horizontal scale bar with 10 mm ticks at the bottom right, its lowest row above
    ``bottom``; ``mm_per_px`` is the picture's (square) pixel size in mm. The bar is the first
    length of :data:`SCALE_BAR_MM` shorter than a third of the width; returns that length (mm),
    or None when even the shortest does not fit (nothing drawn)."""
    import cv2

    if not mm_per_px > 0:
        return None
    for mm in SCALE_BAR_MM:
        length = mm / mm_per_px
        if length <= out.shape[1] / 3:
            break
    else:
        return None
    th = _thickness(fs)
    tick = max(3, round(10 * fs))
    x1 = out.shape[1] - 8
    x0 = int(round(x1 - length))
    y = bottom - 4
    label = f"{mm:g} mm"
    (tw, _), _ = cv2.getTextSize(label, _FONT, fs, th)
    n = int(round(mm / 10))
    for colour, extra in (((0, 0, 0), 2), (WHITE, 0)):
        cv2.line(out, (x0, y), (x1, y), colour, th + extra, cv2.LINE_AA)
        for k in range(n + 1):
            x = int(round(x0 + k * length / n)) if n else x0
            cv2.line(out, (x, y), (x, y - (tick if k in (0, n) else tick // 2)), colour, th + extra, cv2.LINE_AA)
    put_text(out, label, (x1 - tw, y - tick - 4), fs, WHITE)
    return mm


def write_png(path: str | Path, bgr: np.ndarray) -> Path:
    """Write a BGR picture as PNG atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise CpakInputError(path, "could not encode the overlay PNG")
    return atomic_write_bytes(path, buf.tobytes())


def write_overlay(path: str | Path, bgr: np.ndarray, source_path: str | Path | None = None,
                  anonymize_salt: str | None = None) -> Path:
    """PNG, or DICOM Secondary Capture (:mod:`cpak_cli.outputs.dicom_sc`) when the name ends in .dcm.

    ``source_path`` (the measured film) and ``anonymize_salt`` are for the Secondary Capture.
    """
    if str(path).lower().endswith(".dcm"):
        from cpak_cli.outputs.dicom_sc import write_secondary_capture

        return write_secondary_capture(path, bgr, source_path, anonymize_salt=anonymize_salt)
    return write_png(path, bgr)


def overlay_for_result(result: "ScanResult", max_height: int = 2000, title: str | None = None) -> np.ndarray:
    """The overlay of a measured scan (BGR, at most ``max_height`` rows): the found landmarks,
    axes and joint lines, per leg its numbers and flags (:func:`leg_lines`), a scale bar, and
    ``title`` at the bottom (None: the film's path; ``""``: no title)."""
    legs = {side: {n: p.xy for n, p in preds.items()} for side, preds in result.landmarks.items()}
    labels = {side: leg_lines(leg) for side, leg in result.legs.items()}
    assert result.image is not None
    return render_overlay(result.image.pixels, legs, labels, max_height=max_height,
                          title=result.path if title is None else title, spacing_mm=result.image.spacing_mm)
