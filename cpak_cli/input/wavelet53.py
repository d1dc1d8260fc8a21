"""The reversible LeGall 5/3 wavelet of JPEG 2000, forward, exactly: the low-pass (LL) band at a
reduction level of a film's stored values, equal bit for bit to what OpenJPEG's reduced-resolution
decode of the lossless codestream gives (:func:`cpak_cli.input.openjp2.decode` with ``level``).

Why it is exact: a lossless codestream holds the coefficients whose standard inverse transform is
the stored image; the inverse is a bijection on integers, so those coefficients are the standard
forward transform of the stored image (whatever encoder made them), and a reduced decode returns
the LL band of that transform (ISO/IEC 15444-1 Annex F). Per level, each tile's columns are
transformed first, then its rows (F.4.2, 2D_SD), each with the 1-D lifting of F.4.8.2::

    Y(2n+1) = X(2n+1) - floor((X(2n) + X(2n+2)) / 2)
    Y(2n)   = X(2n)   + floor((Y(2n-1) + Y(2n+1) + 2) / 4)

over whole-sample symmetric extension at the tile's edges (F.3.7); low-pass samples sit on even
absolute coordinates (the band's sample ``i`` lies on pixel ``2**level * i``; the image origin is
0, as :func:`cpak_cli.input.j2k_stream.codestream_info` requires). The DC level shift
(``- 2**(P-1)``) the encoder applies and the decoder undoes changes nothing here: the high-pass
samples do not see a constant and the low-pass ones carry it through. The decoder clips its
output to the component's range ``[0, 2**P - 1]``; so does :func:`ll_band`.

:func:`ll_window` computes only an area of the band (cost in proportion to the area): samples
farther than :func:`margin` pixels from a cut that is not a tile edge do not depend on the cut.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ll_band", "ll_window", "margin"]

Area = tuple[int, int, int, int]


def margin(level: int) -> int:
    """Full-resolution pixels around an area that :func:`ll_window` transforms with it: a band
    sample at ``level`` depends on the pixels within ``2**(level+1) - 2`` of its own (one level's
    low-pass reaches 2 samples; ``r(k) = 2 r(k-1) + 2``)."""
    return 2 ** (level + 1)


def _lift_low(x: np.ndarray, start: int, axis: int) -> np.ndarray:
    """Low-pass half (along ``axis``, 0 or 1) of one level of the forward 5/3 lifting of ``x``
    (int32), whose first sample along ``axis`` lies on absolute coordinate ``start``; symmetric
    extension at both ends."""

    def at(a: np.ndarray, sl: slice) -> np.ndarray:
        return a[sl] if axis == 0 else a[:, sl]

    def cat(*parts: np.ndarray) -> np.ndarray:
        return np.concatenate(parts, axis=axis)

    n = x.shape[axis]
    if n == 1:  # one sample: low-pass itself when even, else a high-pass sample only
        return x if start % 2 == 0 else at(x, slice(0, 0))
    if start % 2 == 0:
        s, o = at(x, slice(0, None, 2)), at(x, slice(1, None, 2))
        sn, dn = s.shape[axis], o.shape[axis]
        right = at(s, slice(1, None)) if sn > dn else cat(at(s, slice(1, None)), at(s, slice(-1, None)))
        d = o - ((at(s, slice(0, dn)) + right) >> 1)
        d_left = cat(at(d, slice(0, 1)), at(d, slice(0, sn - 1)))
        d_right = d if sn == dn else cat(d, at(d, slice(-1, None)))
        return s + ((d_left + d_right + 2) >> 2)
    o, s = at(x, slice(0, None, 2)), at(x, slice(1, None, 2))
    dn, sn = o.shape[axis], s.shape[axis]
    s_left = cat(at(s, slice(0, 1)), at(s, slice(0, dn - 1)))
    s_right = s if dn == sn else cat(s, at(s, slice(-1, None)))
    d = o - ((s_left + s_right) >> 1)
    d_right = at(d, slice(1, sn + 1)) if dn > sn else cat(at(d, slice(1, None)), at(d, slice(-1, None)))
    return s + ((at(d, slice(0, sn)) + d_right + 2) >> 2)


def _segments(lo: int, hi: int, tile: int, level: int) -> list[tuple[int, int, int, int]]:
    """The tiles along one axis that ``[lo, hi)`` of the level-``level`` band touches:
    ``(t0, t1, b0, b1)`` = the tile's full-resolution extent and the band samples it holds."""
    step = 2**level
    out = []
    first, last = (lo * step) // tile, max((hi * step - 1) // tile, (lo * step) // tile)
    for k in range(first, last + 1):
        t0, t1 = k * tile, (k + 1) * tile
        b0, b1 = max(math.ceil(t0 / step), lo), min(math.ceil(t1 / step), hi)
        if b0 < b1:
            out.append((t0, t1, b0, b1))
    return out


def _transform(block: np.ndarray, y0: int, x0: int, level: int) -> np.ndarray:
    """``level`` levels of columns-then-rows lifting of ``block`` whose corner lies on absolute
    full-resolution pixel ``(x0, y0)``; the LL band from ``(ceil(x0/2**level), ...)``."""
    arr = block
    for j in range(level):
        step = 2**j
        arr = _lift_low(arr, math.ceil(y0 / step), 0)
        arr = _lift_low(arr, math.ceil(x0 / step), 1)
    return arr


def ll_window(stored: np.ndarray, level: int, area: Area | None = None, precision: int = 16,
              tile: tuple[int, int] | None = None) -> np.ndarray:
    """The LL band at ``level`` of ``stored`` (2-D unsigned stored values, rows x cols), only
    over ``area`` = ``(x0, y0, x1, y1)`` in full-resolution pixels (end exclusive; None = all):
    band rows ``ceil(y0 / 2**level) .. ceil(y1 / 2**level)`` and the same for columns, as
    OpenJPEG's reduced decode of that area returns them, clipped to ``[0, 2**precision - 1]``,
    in ``stored``'s dtype. ``tile`` = ``(tile_width, tile_height)`` of the codestream's tile grid
    (None: one tile). Raises ValueError for a level below 0 or an area outside the image."""
    rows, cols = stored.shape
    x0, y0, x1, y1 = area if area is not None else (0, 0, cols, rows)
    if level < 0 or not (0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows):
        raise ValueError(f"level {level}, area {(x0, y0, x1, y1)} outside the {cols}x{rows} image")
    if level == 0:
        return stored[y0:y1, x0:x1].copy()
    step, pad = 2**level, margin(level)
    tw, th = tile if tile is not None else (cols, rows)
    r0, r1, c0, c1 = math.ceil(y0 / step), math.ceil(y1 / step), math.ceil(x0 / step), math.ceil(x1 / step)
    out = np.empty((r1 - r0, c1 - c0), dtype=stored.dtype)
    top = (1 << precision) - 1
    for ty0, ty1, b0, b1 in _segments(r0, r1, th, level):
        ya, yb = max(ty0, b0 * step - pad), min(ty1, rows, (b1 - 1) * step + pad + 1)
        for tx0, tx1, a0, a1 in _segments(c0, c1, tw, level):
            xa, xb = max(tx0, a0 * step - pad), min(tx1, cols, (a1 - 1) * step + pad + 1)
            band = _transform(stored[ya:yb, xa:xb].astype(np.int32), ya, xa, level)
            br, bc = math.ceil(ya / step), math.ceil(xa / step)
            part = band[b0 - br : b1 - br, a0 - bc : a1 - bc]
            out[b0 - r0 : b1 - r0, a0 - c0 : a1 - c0] = np.clip(part, 0, top)
    return out


def ll_band(stored: np.ndarray, level: int, precision: int = 16, tile: tuple[int, int] | None = None) -> np.ndarray:
    """The whole LL band at ``level`` (``ceil(rows / 2**level) x ceil(cols / 2**level)``):
    :func:`ll_window` over the whole image."""
    return ll_window(stored, level, None, precision, tile)
