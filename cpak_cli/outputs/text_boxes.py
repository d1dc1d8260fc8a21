"""Pixel-box arithmetic for the burned-in text search and its redaction.

A box is ``(x0, y0, x1, y1)`` in pixel coordinates of the picture it refers to (x = column,
y = row, origin at the centre of the top-left pixel, docs/conventions.md) and covers the pixels
whose centres satisfy ``x0 <= x <= x1, y0 <= y <= y1``. Holds the integer pixel range of a box,
box subtraction (what is left of a box outside another), cutting protected boxes out of a set,
and merging overlapping boxes.
"""

from __future__ import annotations

import math
from typing import Iterable

Box = tuple[float, float, float, float]


def pixel_range(b: Box) -> tuple[int, int, int, int]:
    """Inclusive integer pixel range (c0, r0, c1, r1) of the pixel centres inside ``b``."""
    return (math.ceil(b[0]), math.ceil(b[1]), math.floor(b[2]), math.floor(b[3]))


def subtract_box(box: Box, cut: Box) -> list[Box]:
    """The pixels of ``box`` outside ``cut`` as at most four boxes (integer pixel bounds).

    Both boxes cover pixel centres ``x0 <= x <= x1``; an empty result means ``box`` lies
    inside ``cut``."""
    c0, r0, c1, r1 = pixel_range(box)
    k0, q0, k1, q1 = pixel_range(cut)
    if c0 > c1 or r0 > r1:
        return []
    if k0 > c1 or k1 < c0 or q0 > r1 or q1 < r0 or k0 > k1 or q0 > q1:
        return [(float(c0), float(r0), float(c1), float(r1))]
    out = []
    if q0 > r0:  # band above the cut
        out.append((c0, r0, c1, q0 - 1))
    if q1 < r1:  # band below
        out.append((c0, q1 + 1, c1, r1))
    m0, m1 = max(r0, q0), min(r1, q1)
    if k0 > c0:  # left of the cut, between the bands
        out.append((c0, m0, k0 - 1, m1))
    if k1 < c1:
        out.append((k1 + 1, m0, c1, m1))
    return [tuple(float(v) for v in b) for b in out]  # type: ignore[misc]


def outside_all(boxes: Iterable[Box], protected: Iterable[Box]) -> list[Box]:
    """``boxes`` with every ``protected`` box cut out (integer pixel bounds)."""
    out = list(boxes)
    for cut in protected:
        out = [piece for b in out for piece in subtract_box(b, cut)]
    return out


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Overlapping boxes merged into their bounding boxes (until none overlap)."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return out


__all__ = ["Box", "pixel_range", "subtract_box", "outside_all", "merge_boxes"]
