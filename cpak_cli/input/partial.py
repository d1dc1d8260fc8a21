"""Which DICOM films can be decoded piecewise exactly, and the lazy pixels for those.

:func:`partial_pixels` returns a :class:`~cpak_cli.input.film_source.J2KPixels` only when every
value a piece gives equals the value the full decode (:func:`cpak_cli.input.dicom_decode.decode_unit`)
gives for the same pixel; otherwise None and the loader decodes the whole film as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cpak_cli.input.j2k_pixels import J2KPixels, UnitMap
from cpak_cli.input.tags import first_number, raw_str
from cpak_cli.input.values import polarity, window_to_unit

__all__ = ["partial_pixels", "PARTIAL_SYNTAXES"]

#: JPEG 2000 Image Compression (Lossless Only) and JPEG 2000 Image Compression (the latter only
#: with the reversible wavelet, checked in the codestream).
PARTIAL_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")


def _number(value: Any) -> float | None:
    """A single finite float from a DS value, else None (a multi-value or text is not used)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if np.isfinite(v) else None


def _unit_map(ds: Any, phot_u: str) -> UnitMap | None:
    """The loader's per-pixel mapping when it is rescale + VOI window + inversion, else None."""
    if "VOILUTSequence" in ds or ds.get("ModalityLUTSequence"):
        return None
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    center = first_number(ds.get("WindowCenter"))
    width = first_number(ds.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = raw_str(ds, "VOILUTFunction") or ""
    if window_to_unit(np.zeros(1), center, width, function) is None:
        return None
    slope: float | None = None
    intercept = 0.0
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, icpt = _number(ds.RescaleSlope), _number(ds.RescaleIntercept)
        if slope is None or icpt is None:
            return None
        intercept = icpt
    return UnitMap(center, width, function, polarity(phot_u, ds) != "none", slope, intercept)


def partial_pixels(ds: Any, ts: Any, phot_u: str) -> J2KPixels | None:
    """Lazy pixels of a checked single-frame greyscale data set ``ds`` (transfer syntax ``ts``,
    upper-case photometric ``phot_u``), or None when the film must be decoded whole: another
    transfer syntax, no OpenJPEG library, a signed or rescaled-by-LUT or min-max-mapped film, a
    codestream that disagrees with the header, is truncated or is not reversible. Never raises."""
    try:
        if str(ts) not in PARTIAL_SYNTAXES:
            return None
        from cpak_cli.input import openjp2
        from cpak_cli.input.j2k_stream import codestream_info, frame_codestream

        if not openjp2.available():
            return None
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits_stored = int(ds.get("BitsStored") or 0)
        if int(ds.PixelRepresentation) != 0 or not 1 <= bits_stored <= 16 or rows < 2 or cols < 2:
            return None
        unit_map = _unit_map(ds, phot_u)
        if unit_map is None:
            return None
        codestream = frame_codestream(ds.PixelData)
        if codestream is None:
            return None
        info = codestream_info(codestream)
        if (info is None or not info.reversible or info.signed or info.precision != bits_stored
                or (info.width, info.height) != (cols, rows) or info.levels < 1):
            return None
        head = openjp2.read_header(codestream)
        if (head.width, head.height, head.precision, head.signed) != (cols, rows, bits_stored, False):
            return None
        dtype = "uint8" if bits_stored <= 8 else "uint16"
        return J2KPixels(codestream, (rows, cols), info.levels, dtype, unit_map, reuse=info.tiles == 1)
    except Exception:  # noqa: BLE001 - anything odd: the full decoder decides and reports
        return None
