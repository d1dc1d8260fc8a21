"""Lines of text in a greyscale picture, found by shape (no OCR, no model weights).

:func:`find_text` looks for bright or dark strokes a few millimetres high (morphological top-hat)
that stand out from a flat background, grouped into horizontal lines of at least two
character-sized marks or one word-shaped mark, in the picture and turned by 90 degrees. A lone
letter (a lead L/R side marker) is not a line. Used by :mod:`cpak_cli.outputs.redact` to blank
burned-in patient text before an anonymized image is written.

Boxes are ``(x0, y0, x1, y1)`` in pixel coordinates of the picture they refer to (x = column,
y = row, origin at the centre of the top-left pixel, docs/conventions.md); a box covers the
pixels whose centres satisfy ``x0 <= x <= x1, y0 <= y <= y1``.

The box arithmetic (``Box``, subtraction, merging) is in :mod:`cpak_cli.outputs.text_boxes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cpak_cli.outputs.text_boxes import Box, merge_boxes, outside_all

#: Working resolution of the search, mm per pixel (films finer than this are reduced to it).
WORK_MM = 0.5
#: Height range of a character that is searched for, mm (cap height of burned-in annotations).
CHAR_MM = (1.5, 16.0)
#: Least contrast of text marks against their background, grey levels of the 0..255 stretched film.
MIN_CONTRAST = 70
#: Text marks stand out from their background by at least this many times its texture.
CONTRAST_TO_TEXTURE = 4.5
#: Least number of strokes one row through the middle of a text line crosses.
MIN_STROKES = 3
#: Least strokes per character height of line width (text: about 1.5-2.5; a screw, a bar or the
#: edge of a foot platform: below 0.7).
MIN_STROKE_DENSITY = 1.0
#: A lone letter at least this many times taller than the text marks around it is a lead side
#: marker (L/R) stacked with a stamp; it is not blanked.
MARKER_TO_TEXT = 1.5
#: Margin added around a found text line (halo of anti-aliased strokes), in character heights.
PAD_CHARS = 0.35
#: Margin added at both ends of a found text line before blanking, in character heights: the
#: first or last characters of a line that fades into bright film are often too faint to find.
END_PAD_CHARS = 1.0


# --------------------------------------------------------------------------- text search
@dataclass(frozen=True)
class TextFound:
    """Text lines found in a picture (:func:`find_text`), boxes in its pixels.

    Attributes:
        lines: each line's marks, padded by :data:`PAD_CHARS` mark heights.
        blank: what to blank: the lines reaching :data:`END_PAD_CHARS` mark heights past their
            ends, overlapping ones merged, clipped to the picture.
        keep: lead side-marker letters standing in a blank box, never to be blanked.
    """

    lines: tuple[Box, ...]
    blank: tuple[Box, ...]
    keep: tuple[Box, ...]

    def boxes(self, protected: Sequence[Box] = ()) -> list[Box]:
        """The boxes to blank: :attr:`blank` less :attr:`keep` and ``protected``."""
        return outside_all(self.blank, list(protected) + list(self.keep))


def find_text_boxes(
    grey: np.ndarray,
    protected: Sequence[Box] = (),
    mm_per_px: float = WORK_MM,
    char_mm: tuple[float, float] = CHAR_MM,
    min_contrast: float = MIN_CONTRAST,
) -> list[Box]:
    """Boxes to blank over the text in ``grey`` (:func:`find_text`), ``protected`` boxes cut out.

    Args:
        grey: uint8 ``(rows, cols)`` picture, contrast stretched to 0..255, square pixels.
        protected: boxes (pixels of ``grey``) whose pixels must never be blanked.
        mm_per_px, char_mm, min_contrast: as :func:`find_text`.

    Returns:
        Disjoint boxes in pixels of ``grey`` (integer bounds), none overlapping a protected box
        or a lead side-marker letter.

    Raises:
        ValueError: ``grey`` is not a 2-D uint8 array.
    """
    return find_text(grey, mm_per_px, char_mm, min_contrast).boxes(protected)


def find_text(
    grey: np.ndarray,
    mm_per_px: float = WORK_MM,
    char_mm: tuple[float, float] = CHAR_MM,
    min_contrast: float = MIN_CONTRAST,
) -> TextFound:
    """The lines of text in ``grey`` (pixels of ``grey``).

    A mark is a thin stroke (morphological top-hat, bright or dark) that also stands out from
    the local background (median over two character heights, so the gaps and counters between
    bold strokes are not marks). Marks of character height are grouped into horizontal lines;
    a line is text when it crosses at least :data:`MIN_STROKES` strokes along its middle (and
    :data:`MIN_STROKE_DENSITY` per character height of its width), its marks stand out by
    ``min_contrast`` and by :data:`CONTRAST_TO_TEXTURE` times the texture of its background
    (anatomy is textured, burned-in text sits on flat film). Lines just above or below a text
    line with marks of about its height join it (two-line stamps such as the initials on a lead
    marker), and a line grows along its row over fainter marks (hysteresis). The same search
    runs on the transposed picture for text turned by 90 degrees. A lone letter (a lead L/R
    marker) is not a line; one standing :data:`MARKER_TO_TEXT` times taller than the text it is
    stamped with is kept.

    Args:
        grey: uint8 ``(rows, cols)`` picture, contrast stretched to 0..255, square pixels.
        mm_per_px: size of one pixel of ``grey`` in mm (sets the searched character sizes).
        char_mm: least and largest character height searched for, mm.
        min_contrast: least contrast of the marks against their background, grey levels.

    Raises:
        ValueError: ``grey`` is not a 2-D uint8 array.
    """
    g = np.asarray(grey)
    if g.ndim != 2 or g.dtype != np.uint8:
        raise ValueError(f"grey must be a 2-D uint8 picture, got {g.dtype} {g.shape}")
    rows, cols = g.shape
    h_min = max(3.0, char_mm[0] / mm_per_px)
    h_max = max(h_min + 1.0, char_mm[1] / mm_per_px)
    level, lone = _search(g, h_min, h_max, min_contrast, 2)
    lines = [line.box for line in level]
    blank = [line.blank_box for line in level]
    # text turned by 90 degrees (initials along a lead marker): the same search, transposed, with
    # three marks or more, and not made of marks that already read as level text (transposed, a
    # side-marker letter above two lines of initials reads as a line with one letter of each)
    for line in _search(np.ascontiguousarray(g.T), h_min, h_max, min_contrast, 3)[0]:
        turned = [(m[1], m[0], m[3], m[2]) for m in line.marks]
        inside = sum(1 for m in turned if any(_centre_in(m, b) for b in blank[:len(level)]))
        if 2 * inside < len(turned):
            lines.append((line.box[1], line.box[0], line.box[3], line.box[2]))
            blank.append((line.blank_box[1], line.blank_box[0], line.blank_box[3], line.blank_box[2]))

    def clip(b: Box) -> Box:
        return (max(0.0, b[0]), max(0.0, b[1]), min(cols - 1.0, b[2]), min(rows - 1.0, b[3]))

    merged = [clip(b) for b in merge_boxes(blank)]
    # a lone letter clearly taller than the upright marks it stands with is a lead side marker: kept
    marks = [m for line in level for m in line.marks] + list(lone)
    keep = []
    for m in lone:
        for b in merged:
            # upright stamps have marks of one height; turned text has marks of many (letter widths)
            others = [o[3] - o[1] + 1 for o in marks if _centre_in(o, b) and not _centre_in(o, m)]
            if (_centre_in(m, b) and others and max(others) <= 1.5 * min(others)
                    and m[3] - m[1] + 1 >= MARKER_TO_TEXT * float(np.median(others))):
                keep.append((m[0] - 1.0, m[1] - 1.0, m[2] + 1.0, m[3] + 1.0))
                break
    return TextFound(tuple(clip(b) for b in lines), tuple(merged), tuple(keep))


def _centre_in(m: Sequence[float], b: Box) -> bool:
    """Whether the centre of box ``m`` lies in box ``b``."""
    x, y = (m[0] + m[2]) / 2.0, (m[1] + m[3]) / 2.0
    return b[0] <= x <= b[2] and b[1] <= y <= b[3]


def _search(g: np.ndarray, h_min: float, h_max: float, min_contrast: float,
            min_marks: int) -> tuple[list[_Line], list[tuple[int, int, int, int]]]:
    """The horizontal text lines of ``g`` (see :func:`find_text_boxes`; a line needs
    ``min_marks`` marks, or one mark shaped like a word) and the lone marks that stand out like
    text (each as its inclusive pixel bounds)."""
    import cv2

    # strokes are at most ~1/4 of a character high: an opening this wide removes them
    k = 2 * max(1, int(round(0.25 * h_max))) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    back = cv2.medianBlur(g, min(255, 2 * int(h_max) + 1))
    texture = cv2.absdiff(g, cv2.medianBlur(g, 2 * int(h_max / 2) + 1))  # follows edges closer than back
    gi, bi = g.astype(np.int16), back.astype(np.int16)
    lines: list[_Line] = []
    lone: list[tuple[int, int, int, int]] = []
    for op, sign in ((cv2.MORPH_TOPHAT, 1), (cv2.MORPH_BLACKHAT, -1)):
        hat, above = cv2.morphologyEx(g, op, kernel), sign * (gi - bi)
        mask = (hat >= min_contrast / 2) & (above >= min_contrast / 2)
        cands = _candidates(mask.astype(np.uint8), h_min, h_max)
        feats = [_features(g, texture, mask, c, sign) for c in cands]
        text = [c for c, f in zip(cands, feats) if _is_text(f, min_contrast, min_marks)]
        # stacked lines need not cross enough strokes, but a lone letter (a lead side marker
        # above its initials) is never one
        clear = [(c, f) for c, f in zip(cands, feats) if c not in text and f["contrast"] >= min_contrast / 2
                 and f["contrast"] >= CONTRAST_TO_TEXTURE * max(f["texture"], 1.0)]
        lone += [c.bounds for c, f in clear if len(c.marks) == 1 and f["contrast"] >= min_contrast]
        neighbours = [c for c, f in clear if not _lone(f)]
        found = text + _stacked(text, neighbours)
        if found:  # hysteresis: faint characters at the ends of a line (text fading into bright film)
            faint = ((hat >= min_contrast / 4) & (above >= min_contrast / 4)).astype(np.uint8)
            found = _extended(found, faint)
        lines += found
    return lines, lone


@dataclass(frozen=True)
class _Line:
    """A candidate line of text: its marks' boxes (inclusive pixel bounds) and padded box."""

    marks: tuple[tuple[int, int, int, int], ...]
    height: float  # median mark height, px
    grown: tuple[int, int, int, int] | None = None  # bounds after :func:`_extended`

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        if self.grown is not None:
            return self.grown
        return (min(m[0] for m in self.marks), min(m[1] for m in self.marks),
                max(m[2] for m in self.marks), max(m[3] for m in self.marks))

    @property
    def box(self) -> Box:
        """The line's bounds padded by :data:`PAD_CHARS` mark heights (where its features are read)."""
        return self._padded(PAD_CHARS)

    @property
    def blank_box(self) -> Box:
        """:attr:`box` reaching :data:`END_PAD_CHARS` mark heights past both ends (what is blanked)."""
        return self._padded(END_PAD_CHARS)

    def _padded(self, end_chars: float) -> Box:
        x0, y0, x1, y1 = self.bounds
        pad, end = PAD_CHARS * self.height + 1, end_chars * self.height + 1
        return (float(math.floor(x0 - end)), float(math.floor(y0 - pad)),
                float(math.ceil(x1 + end)), float(math.ceil(y1 + pad)))


def _candidates(mask: np.ndarray, h_min: float, h_max: float) -> list[_Line]:
    """Marks of a binary stroke ``mask`` of character size grouped into horizontal lines."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    chars = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if not h_min <= h <= h_max:
            continue
        if area < 0.08 * w * h or (area > 0.9 * w * h and w * h > 16):
            continue  # a hair-thin diagonal or a filled blob
        if w > 8 * h and (labels[y:y + h, x:x + w] == i).sum(axis=1).max() >= 0.85 * w:
            continue  # a bar, or a comb (a ruler's spine with its ticks), not merged characters
        chars.append((x, y, x + w - 1, y + h - 1))
    # union characters into lines: similar height, overlapping rows, gaps below ~1.2 heights
    parent = list(range(len(chars)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(chars)), key=lambda i: chars[i][0])
    for a_i, a in enumerate(order):
        ax0, ay0, ax1, ay1 = chars[a]
        ah = ay1 - ay0 + 1
        for b in order[a_i + 1:]:
            bx0, by0, bx1, by1 = chars[b]
            if bx0 - ax1 > 1.2 * max(ah, h_min) + 1:
                break
            bh = by1 - by0 + 1
            overlap = min(ay1, by1) - max(ay0, by0) + 1
            if overlap >= 0.5 * min(ah, bh) and max(ah, bh) <= 2.0 * min(ah, bh):
                parent[find(b)] = find(a)
    groups: dict[int, list[tuple[int, int, int, int]]] = {}
    for i in range(len(chars)):
        groups.setdefault(find(i), []).append(chars[i])
    return [_Line(tuple(m), float(np.median([c[3] - c[1] + 1 for c in m]))) for m in groups.values()]


def _features(g: np.ndarray, texture: np.ndarray, mask: np.ndarray, line: _Line, sign: int) -> dict[str, float]:
    """Shape and contrast of a candidate line (``sign`` +1: bright marks, -1: dark marks).

    ``n``: marks; ``strokes``: most mark runs crossed by one row of the line's middle half;
    ``w_h``: width / mark height; ``contrast``: median mark level minus median background level
    (times ``sign``); ``texture``: 75th percentile of the background's deviation from its local
    median (grey levels). The background is the padded box less the marks grown by one pixel."""
    import cv2

    x0, y0, x1, y1 = line.bounds
    m = mask[y0:y1 + 1, x0:x1 + 1].astype(np.int8)
    top = int(0.25 * m.shape[0])
    mid = m[top:max(top + 1, int(math.ceil(0.75 * m.shape[0])))]
    strokes = int((np.diff(mid, axis=1, prepend=0) == 1).sum(axis=1).max())
    b = line.box
    win = (slice(max(int(b[1]), 0), int(b[3]) + 1), slice(max(int(b[0]), 0), int(b[2]) + 1))
    wm = mask[win].astype(np.uint8)
    near = cv2.dilate(wm, np.ones((3, 3), np.uint8)).astype(bool)
    marks, backg = g[win][wm.astype(bool)], g[win][~near]
    aspect = float(np.median([(c[2] - c[0] + 1) / (c[3] - c[1] + 1) for c in line.marks]))
    out = {"n": float(len(line.marks)), "strokes": float(strokes), "w_h": (x1 - x0 + 1) / line.height,
           "aspect": aspect,
           "contrast": 0.0, "texture": 255.0}
    if marks.size and backg.size >= 4:
        out["contrast"] = float(sign * (np.median(marks) - np.median(backg)))
        out["texture"] = float(np.percentile(texture[win][~near], 75))
    return out


def _lone(f: Mapping[str, float], min_marks: int = 2) -> bool:
    """A candidate of fewer than ``min_marks`` marks that is not shaped like a word (a lead
    side-marker letter, a screw head)."""
    return f["n"] < min_marks and not (f["n"] == 1 and f["w_h"] >= 2.5)


def _is_text(f: Mapping[str, float], min_contrast: float, min_marks: int = 2) -> bool:
    """Whether a candidate's :func:`_features` read as a line of text."""
    if _lone(f, min_marks):
        return False
    return (f["strokes"] >= MIN_STROKES and f["w_h"] >= 1.5 and f["aspect"] >= 0.3
            and f["strokes"] >= MIN_STROKE_DENSITY * f["w_h"] and f["contrast"] >= min_contrast
            and f["contrast"] >= CONTRAST_TO_TEXTURE * max(f["texture"], 1.0))


def _stacked(text: list[_Line], others: list[_Line]) -> list[_Line]:
    """``others`` directly above or below a text line (gap below one mark height, overlapping
    columns, mark heights within a factor 1.5), repeated so that a stack joins line by line."""
    found: list[_Line] = []
    todo = list(text)
    rest = list(others)
    while todo:
        t = todo.pop()
        tx0, ty0, tx1, ty1 = t.bounds
        for o in list(rest):
            ox0, oy0, ox1, oy1 = o.bounds
            gap = max(oy0 - ty1, ty0 - oy1)
            if (0 <= gap <= t.height and min(tx1, ox1) >= max(tx0, ox0)
                    and max(t.height, o.height) <= 1.5 * min(t.height, o.height)):
                rest.remove(o)
                found.append(o)
                todo.append(o)
    return found


def _extended(lines: list[_Line], faint: np.ndarray) -> list[_Line]:
    """``lines`` grown along their rows by the marks of the ``faint`` mask (a lower threshold)
    that continue them: marks overlapping the line's rows by half their height, at most 1.5 times
    its mark height high and at least half of it, within 1.2 mark heights of its current end."""
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(faint, connectivity=8)
    marks = [(int(x), int(y), int(x + w - 1), int(y + h - 1)) for x, y, w, h, _ in stats[1:n]]
    out = []
    for line in lines:
        h = line.height
        x0, y0, x1, y1 = line.bounds
        near = [m for m in marks if 0.5 * h <= m[3] - m[1] + 1 <= 1.5 * h
                and min(y1, m[3]) - max(y0, m[1]) + 1 >= 0.5 * (m[3] - m[1] + 1)]
        grown = True
        while grown:
            grown = False
            for m in near:
                if x1 < m[0] <= x1 + 1.2 * h + 1 or x0 > m[2] >= x0 - 1.2 * h - 1:
                    x0, x1 = min(x0, m[0]), max(x1, m[2])
                    grown = True
        out.append(_Line(line.marks, h, (x0, y0, x1, y1)))
    return out

