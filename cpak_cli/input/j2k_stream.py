"""JPEG 2000 codestreams inside DICOM: take the one frame's codestream out of the encapsulated
Pixel Data and check, from its markers alone, that it can be decoded piecewise exactly.

:func:`codestream_info` reads the main header (SIZ, COD) and walks the tile-parts (SOT lengths up
to the EOC marker) without decoding anything. It returns None for whatever the partial decoder
does not handle exactly (irreversible 9/7 wavelet, component-specific coding styles, coding
style changes in tile-part headers, an image or tile grid origin off 0, more than one component) and for a
codestream that is truncated or malformed; the caller then decodes the whole image the usual
way (pydicom), which reports a damaged file as before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["CodestreamInfo", "codestream_info", "frame_codestream", "tile_coverage"]

_SOC, _SIZ, _COD, _COC, _SOT, _SOD, _EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF90, 0xFF93, 0xFFD9
#: Markers without a length field (ISO/IEC 15444-1 A.1.2).
_NO_LENGTH = {0xFF4F, 0xFF93, 0xFFD9}


@dataclass(frozen=True)
class CodestreamInfo:
    """What the markers say: ``width``/``height`` in pixels, ``precision`` (bits), ``signed``,
    ``levels`` (wavelet decomposition levels: the coarsest reduced view is ``2**levels``
    smaller), ``reversible`` (5/3 wavelet, lossless), ``tiles`` (tile-parts walked) and
    ``tile_size`` (width, height of the tile grid's tiles, from the origin 0; the wavelet is
    applied per tile)."""

    width: int
    height: int
    precision: int
    signed: bool
    levels: int
    reversible: bool
    tiles: int
    tile_size: tuple[int, int]


def frame_codestream(pixel_data: bytes) -> bytes | None:
    """The codestream of the single frame of encapsulated Pixel Data (fragments joined), or None
    when the encapsulation cannot be read."""
    from pydicom.encaps import generate_frames

    try:
        frames = generate_frames(pixel_data, number_of_frames=1)
        data = next(frames)
    except Exception:  # noqa: BLE001 - hostile encapsulation: the full decoder reports it
        return None
    return bytes(data) if data else None


def _u16(b: bytes, i: int) -> int:
    return int(struct.unpack_from(">H", b, i)[0])


def _u32(b: bytes, i: int) -> int:
    return int(struct.unpack_from(">I", b, i)[0])


def _main_header(cs: bytes) -> tuple[dict[str, Any], int] | None:
    """Parse SOC..first SOT; return (fields, offset of the first SOT) or None."""
    if len(cs) < 4 or _u16(cs, 0) != _SOC:
        return None
    pos = 2
    fields: dict[str, Any] = {}
    while pos + 4 <= len(cs):
        marker = _u16(cs, pos)
        if marker == _SOT:
            return (fields, pos) if {"siz", "cod"} <= set(fields) else None
        if marker >> 8 != 0xFF or marker in _NO_LENGTH:
            return None
        length = _u16(cs, pos + 2)
        seg = cs[pos + 4 : pos + 2 + length]
        if length < 2 or len(seg) != length - 2:
            return None
        if marker == _SIZ:
            if len(seg) < 36 + 3:
                return None
            xsiz, ysiz, xo, yo, xt, yt, xto, yto = (_u32(seg, 2 + 4 * k) for k in range(8))
            comps = _u16(seg, 34)
            ssiz = seg[36]
            if seg[37] != 1 or seg[38] != 1 or xto or yto or xt < 1 or yt < 1:  # sub-sampled, odd tile grid
                return None
            fields["siz"] = (xsiz - xo, ysiz - yo, xo, yo, comps, (ssiz & 0x7F) + 1, bool(ssiz & 0x80), (xt, yt))
        elif marker == _COD:
            if len(seg) < 10:
                return None
            fields["cod"] = (seg[5], seg[9])  # decomposition levels, transformation (1 = 5/3 reversible)
        elif marker == _COC:
            fields["coc"] = True
        pos += 2 + length
    return None


def unpadded_end(cs: bytes, floor: int = 0) -> int:
    """The length of ``cs`` without the zero bytes DICOM pads after the EOC marker (fragments
    have an even length), never below ``floor``."""
    end = len(cs)
    while end > floor and cs[end - 1] == 0:
        end -= 1
    return end


def _tile_parts_ok(cs: bytes, pos: int) -> int | None:
    """Walk the tile-parts from the first SOT; the number walked when they end exactly at EOC
    and no tile-part header changes the coding style, else None."""
    end = unpadded_end(cs, pos)
    if end - pos < 2 or _u16(cs, end - 2) != _EOC:
        return None
    eoc = end - 2
    count = 0
    while pos < eoc:
        if pos + 12 > eoc or _u16(cs, pos) != _SOT or _u16(cs, pos + 2) != 10:
            return None
        psot = _u32(cs, pos + 6)
        nxt = eoc if psot == 0 else pos + psot
        if nxt > eoc or nxt <= pos + 12:
            return None
        hpos = pos + 12  # tile-part header markers up to SOD
        while True:
            if hpos + 2 > nxt:
                return None
            marker = _u16(cs, hpos)
            if marker == _SOD:
                break
            if marker >> 8 != 0xFF or marker in _NO_LENGTH or marker in (_COD, _COC) or hpos + 4 > nxt:
                return None
            hpos += 2 + _u16(cs, hpos + 2)
        count += 1
        pos = nxt
    return count if pos == eoc else None


def codestream_info(cs: bytes) -> CodestreamInfo | None:
    """The :class:`CodestreamInfo` of a codestream that can be decoded piecewise exactly, else
    None (see the module docstring). Never raises."""
    try:
        parsed = _main_header(cs)
        if parsed is None:
            return None
        fields, sot = parsed
        width, height, xo, yo, comps, precision, signed, tile_size = fields["siz"]
        levels, transform = fields["cod"]
        if fields.get("coc") or comps != 1 or xo or yo or width < 1 or height < 1:
            return None
        tiles = _tile_parts_ok(cs, sot)
        coverage = tile_coverage(cs)
        if tiles is None or coverage is None or coverage[0] < coverage[1]:  # missing tiles: the full
            return None  # decode refuses the film (cpak_cli.input.dicom_decode.check_jpeg2000_tiles)
        return CodestreamInfo(width, height, precision, signed, int(levels), transform == 1, tiles, tile_size)
    except (struct.error, IndexError):
        return None


def tile_coverage(cs: bytes) -> tuple[int, int] | None:
    """``(tiles present, tiles declared)`` of a codestream: the tile grid of its SIZ marker
    (ISO/IEC 15444-1 B.3: ceil((Xsiz - XTOsiz) / XTsiz) x ceil((Ysiz - YTOsiz) / YTsiz)) and the
    distinct tile indices (Isot) of the tile-parts walked by their Psot lengths. None when the
    markers cannot be walked (the decoder then reports the damage itself). Never raises.

    A codestream missing tiles decodes "successfully" in OpenJPEG with the missing tiles as
    zeros, a damaged film that looks whole; the loader refuses it with this count."""
    try:
        if len(cs) < 4 or _u16(cs, 0) != _SOC:
            return None
        pos, grid = 2, None
        while pos + 4 <= len(cs):
            marker = _u16(cs, pos)
            if marker == _SOT:
                break
            if marker >> 8 != 0xFF or marker in _NO_LENGTH:
                return None
            length = _u16(cs, pos + 2)
            if marker == _SIZ and length >= 38:
                xsiz, ysiz, _, _, xt, yt, xto, yto = (_u32(cs, pos + 6 + 4 * k) for k in range(8))
                if xt < 1 or yt < 1 or xsiz <= xto or ysiz <= yto:
                    return None
                grid = -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)
            pos += 2 + length
        if grid is None:
            return None
        seen: set[int] = set()
        while pos + 12 <= len(cs) and _u16(cs, pos) == _SOT:
            seen.add(_u16(cs, pos + 4))
            psot = _u32(cs, pos + 6)
            if psot == 0:  # the last tile-part runs to EOC
                break
            if psot < 14:
                return None
            pos += psot
        return len({i for i in seen if i < grid}), grid
    except (struct.error, IndexError):
        return None
