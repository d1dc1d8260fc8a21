"""Small, never-raising readers of DICOM attribute values (shared by the ``dicom_*`` modules).

Every function here turns a malformed or absent value into None instead of raising; the
callers decide whether that is an error (see :mod:`cpak_cli.input.loader`).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["short", "raw_str", "first_number", "positive_float", "dicom_pair", "dicom_pair_of"]


def short(exc: BaseException, limit: int = 160) -> str:
    """One line of at most ``limit`` characters describing ``exc``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def raw_str(ds: Any, keyword: str) -> str | None:
    """The value of ``keyword`` as a short string (multi-values joined by ``\\``), or None when
    absent/empty/unreadable."""
    try:
        elem = ds.get(keyword)
        if elem is None:
            return None
        if isinstance(elem, (list, tuple)) or type(elem).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in elem)
        else:
            text = str(elem)
    except Exception:  # noqa: BLE001 - a malformed value is just absent
        return None
    text = " ".join(text.split())
    return text or None


def first_number(value: Any) -> float | None:
    """The first value of a number or multi-value as a finite float, else None."""
    try:
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes, int, float)):
            seq = list(value)
            if not seq:
                return None
            value = seq[0]
        f = float(value)
    except Exception:  # noqa: BLE001
        return None
    return f if math.isfinite(f) else None


def positive_float(ds: Any, keyword: str) -> float | None:
    """The (first) value of ``keyword`` as a finite float > 0, else None."""
    try:
        value = ds[keyword].value if keyword in ds else None
    except Exception:  # noqa: BLE001
        return None
    f = first_number(value)
    return f if f is not None and f > 0 else None


def dicom_pair(value: Any) -> tuple[float, float] | None:
    """Two positive finite floats from a DS value (MultiValue/list/str), else None.

    A single value is read as an isotropic pair (seen in the wild)."""
    try:
        if isinstance(value, (str, bytes)):
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            seq: list[Any] = [v for v in text.replace(",", "\\").split("\\")]
        else:
            seq = list(value)
        if len(seq) == 1:
            seq = [seq[0], seq[0]]
        if len(seq) != 2:
            return None
        a, b = float(seq[0]), float(seq[1])
    except (TypeError, ValueError):
        return None
    if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0:
        return (a, b)
    return None


def dicom_pair_of(ds: Any, keyword: str) -> tuple[float, float] | None:
    """:func:`dicom_pair` of the value of ``keyword``; None when absent or unparsable."""
    try:
        value = ds[keyword].value
    except Exception:  # noqa: BLE001 - absent or unparsable DS value
        return None
    if value is None or value == "":
        return None
    return dicom_pair(value)
