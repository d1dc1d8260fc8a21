"""Recognise a file by its first bytes: DICOM (with or without preamble), PNG or TIFF.

Reads at most 256 bytes; never parses the whole file.
"""

from __future__ import annotations

import struct
from pathlib import Path

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic + BigTIFF
# Groups a DICOM data set without preamble plausibly starts with (file meta, identifying,
# patient, acquisition, relationship, image pixel description; 0x0000/0x0004 for old files).
_FIRST_GROUPS = frozenset({0x0000, 0x0002, 0x0004, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028})


def read_head(path: Path, n: int = 256) -> bytes:
    with open(path, "rb") as fh:  # read-only
        return fh.read(n)


def looks_like_dicom(head: bytes) -> bool:
    """Cheap DICOM test on the first bytes of a file (no parsing of the whole file)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # No preamble: the first element's tag must be in a plausible low group, followed either by
    # an explicit VR (two upper-case letters) or an implicit 32-bit length that is not absurd.
    for endian in ("<", ">"):
        group, elem = struct.unpack(endian + "HH", head[:4])
        if group not in _FIRST_GROUPS:
            continue
        vr = head[4:6]
        if len(vr) == 2 and all(65 <= b <= 90 for b in vr):
            return True
        (length,) = struct.unpack(endian + "I", head[4:8])
        if length < 0x0100_0000 or length == 0xFFFF_FFFF:
            return True
    return False


def image_format(head: bytes) -> str | None:
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    return None


def is_probably_dicom(path: str | Path) -> bool:
    """Return True if ``path`` is a readable file that looks like DICOM.

    Cheap: reads only the first 256 bytes. True when the bytes 128..131 are ``b"DICM"`` (Part 10
    file with preamble) or, for files without preamble, when the first element tag is in a
    plausible low group (0002, 0008, 0010, 0018, 0020, 0028, ...) followed by an explicit VR or a
    sane implicit length. Never raises (unreadable paths and directories give False).
    """
    try:
        p = Path(path)
        if not p.is_file():
            return False
        return looks_like_dicom(read_head(p))
    except (OSError, ValueError):
        return False
