"""Inline SVG charts of the HTML batch report: the CPAK grid and angle histograms.

Pure functions from numbers to SVG text (no scripts, no external references). Every piece of
text that comes from outside this module (a film's name in a tooltip) is HTML-escaped here.
Angles are degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

from cpak_cli.core.cpak import AHKA_BOUNDARIES, CPAK_TYPES, JLO_BOUNDARIES, cpak_type

#: Point colours of the grid by kind: no flag, informational flags only, flags that take the type away.
KIND_COLOURS = {"none": "#1f77b4", "info": "#e69f00", "untyped": "#d62728"}
KIND_LABELS = {"none": "no flag", "info": "flagged (informational)", "untyped": "flagged, no CPAK type"}

#: Grid extent at least (aHKA, JLO) and at most; points beyond the cap sit on the border, hollow.
GRID_MIN = ((-10.0, 10.0), (168.0, 192.0))
GRID_CAP = ((-30.0, 30.0), (150.0, 210.0))


@dataclass(frozen=True)
class GridPoint:
    """One measured leg on the CPAK grid: aHKA and JLO (degrees), ``kind`` (a key of
    :data:`KIND_COLOURS`) and ``label``, the tooltip (plain text; escaped when drawn)."""

    ahka: float
    jlo: float
    kind: str
    label: str


def _extent(values: Sequence[float], least: tuple[float, float], cap: tuple[float, float]) -> tuple[float, float]:
    lo = min([least[0], *[math.floor(v - 1) for v in values]])
    hi = max([least[1], *[math.ceil(v + 1) for v in values]])
    return max(lo, cap[0]), min(hi, cap[1])


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) // step) + 1)]


def cpak_grid_svg(points: Sequence[GridPoint], size: int = 460) -> str:
    """The CPAK grid (MacDessi et al., Bone Joint J 2021): aHKA on x (varus left, boundaries -2
    and +2), JLO on y increasing downwards (apex distal at the top, boundaries 177 and 183), the
    nine types labelled in their cells with their counts, and one ``<circle class="leg">`` per
    point (colour by kind, tooltip ``label``). A point outside :data:`GRID_CAP` is drawn hollow
    on the border and its tooltip gives its values."""
    (x_lo, x_hi) = _extent([p.ahka for p in points], GRID_MIN[0], GRID_CAP[0])
    (y_lo, y_hi) = _extent([p.jlo for p in points], GRID_MIN[1], GRID_CAP[1])
    left, top, right, bottom = 52, 14, 14, 76
    w, h = size - left - right, size - top - bottom

    def sx(v: float) -> float:
        return left + (min(max(v, x_lo), x_hi) - x_lo) / (x_hi - x_lo) * w

    def sy(v: float) -> float:
        return top + (min(max(v, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * h

    counts = {t: 0 for t in CPAK_TYPES}
    for p in points:
        counts[cpak_type(p.ahka, p.jlo)] += 1
    xs = [x_lo, *AHKA_BOUNDARIES, x_hi]
    ys = [y_lo, *JLO_BOUNDARIES, y_hi]
    out = [f'<svg class="cpak-grid" width="{size}" height="{size}" '
           f'viewBox="0 0 {size} {size}" role="img" aria-label="CPAK grid, {len(points)} legs">']
    for r in range(3):
        for c in range(3):
            t = CPAK_TYPES[3 * r + c]
            x0, x1, y0, y1 = sx(xs[c]), sx(xs[c + 1]), sy(ys[r]), sy(ys[r + 1])
            fill = "#f4f4f4" if (r + c) % 2 else "#e9eef5"
            out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="{fill}"/>')
            out.append(f'<text class="cell" x="{(x0 + x1) / 2:.1f}" y="{y0 + 16:.1f}" text-anchor="middle" '
                       f'font-size="13" font-weight="bold" fill="#555">{t}'
                       f'<tspan font-weight="normal" font-size="11"> n={counts[t]}</tspan></text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#333"/>')
    for b in AHKA_BOUNDARIES:
        out.append(f'<line x1="{sx(b):.1f}" y1="{top}" x2="{sx(b):.1f}" y2="{top + h}" stroke="#333"/>')
    for b in JLO_BOUNDARIES:
        out.append(f'<line x1="{left}" y1="{sy(b):.1f}" x2="{left + w}" y2="{sy(b):.1f}" stroke="#333"/>')
    for v in _ticks(x_lo, x_hi, 2 if x_hi - x_lo <= 24 else 5):
        out.append(f'<text x="{sx(v):.1f}" y="{top + h + 14}" text-anchor="middle" font-size="10">{v:g}</text>')
    for v in _ticks(y_lo, y_hi, 3 if y_hi - y_lo <= 30 else 5):
        out.append(f'<text x="{left - 4}" y="{sy(v) + 3:.1f}" text-anchor="end" font-size="10">{v:g}</text>')
    out.append(f'<text x="{left + w / 2:.1f}" y="{top + h + 30}" text-anchor="middle" font-size="12">'
               'aHKA (degrees): varus &#8592; &#8594; valgus</text>')
    out.append(f'<text transform="translate(13 {top + h / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="12">'
               'JLO (degrees): apex distal &#8593; &#8595; apex proximal</text>')
    for p in points:
        inside = x_lo <= p.ahka <= x_hi and y_lo <= p.jlo <= y_hi
        colour = KIND_COLOURS.get(p.kind, "#000")
        fill = colour if inside else "none"
        note = "" if inside else " (outside the chart: drawn on its border)"
        out.append(f'<circle class="leg" data-kind="{escape(p.kind)}" cx="{sx(p.ahka):.1f}" cy="{sy(p.jlo):.1f}" '
                   f'r="4.5" fill="{fill}" fill-opacity="0.8" stroke="{colour}" stroke-width="1.5">'
                   f'<title>{escape(p.label + note)}</title></circle>')
    for k, (kind, colour) in enumerate(KIND_COLOURS.items()):  # legend: two columns under the x axis title
        n = sum(1 for p in points if p.kind == kind)
        x, y = left + (k % 2) * (w / 2), top + h + 47 + (k // 2) * 14
        out.append(f'<circle cx="{x + 5:.1f}" cy="{y - 4}" r="4.5" fill="{colour}"/>'
                   f'<text x="{x + 13:.1f}" y="{y}" font-size="11">{KIND_LABELS[kind]} ({n})</text>')
    out.append("</svg>")
    return "".join(out)


def histogram_svg(values: Sequence[float], name: str, band: tuple[float, float] | None = None,
                  bin_width: float = 1.0, width: int = 460, height: int = 210) -> str:
    """Histogram of ``values`` (degrees) in bins of ``bin_width`` over at least 80-100, with
    ``band`` (e.g. the normal range) shaded and the count above each bar; "no values" when empty."""
    out = [f'<svg class="histogram" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(name)} histogram, {len(values)} legs">']
    left, top, right, bottom = 34, 22, 10, 40
    w, h = width - left - right, height - top - bottom
    out.append(f'<text x="{left}" y="14" font-size="13" font-weight="bold">{escape(name)} '
               f'<tspan font-weight="normal" font-size="11">(n={len(values)})</tspan></text>')
    # angles: anything outside 0-180 degrees (a hand-edited CSV) is drawn in the edge bins
    finite = [min(180.0, max(0.0, v)) for v in values if math.isfinite(v)]
    if not finite:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12">no values</text></svg>')
        return "".join(out)
    lo = min(80.0, math.floor(min(finite) / bin_width) * bin_width)
    hi = max(100.0, (math.floor(max(finite) / bin_width) + 1) * bin_width)
    n_bins = int(round((hi - lo) / bin_width))
    counts = [0] * n_bins
    for v in finite:
        counts[min(n_bins - 1, int((v - lo) // bin_width))] += 1
    top_count = max(counts)

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * w

    if band is not None:
        out.append(f'<rect x="{sx(band[0]):.1f}" y="{top}" width="{sx(band[1]) - sx(band[0]):.1f}" height="{h}" '
                   f'fill="#dff0d8"><title>normal range {band[0]:g}-{band[1]:g} degrees</title></rect>')
    for k, c in enumerate(counts):
        if not c:
            continue
        bh = c / top_count * (h - 12)
        x0, x1 = sx(lo + k * bin_width), sx(lo + (k + 1) * bin_width)
        out.append(f'<rect class="bar" x="{x0 + 0.5:.1f}" y="{top + h - bh:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                   f'height="{bh:.1f}" fill="#4a78a8"><title>{lo + k * bin_width:g}-{lo + (k + 1) * bin_width:g}: '
                   f'{c}</title></rect>')
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{top + h - bh - 2:.1f}" text-anchor="middle" '
                   f'font-size="9">{c}</text>')
    out.append(f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>')
    for v in _ticks(lo, hi, 5):
        out.append(f'<line x1="{sx(v):.1f}" y1="{top + h}" x2="{sx(v):.1f}" y2="{top + h + 4}" stroke="#333"/>'
                   f'<text x="{sx(v):.1f}" y="{top + h + 15}" text-anchor="middle" font-size="10">{v:g}</text>')
    caption = f"degrees, {bin_width:g}-degree bins" + (
        f"; shaded: normal {band[0]:g}-{band[1]:g}" if band is not None else "")
    out.append(f'<text x="{left + w / 2:.1f}" y="{top + h + 32}" text-anchor="middle" font-size="11">'
               f"{escape(caption)}</text></svg>")
    return "".join(out)
