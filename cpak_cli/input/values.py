"""Pixel value transforms: modality-LUT output -> [0, 1] (VOI), then polarity (bone bright).

Order (PS3.3 C.11): stored values -> modality LUT (done by pydicom) -> VOI (:func:`voi_to_unit`:
first VOI LUT Sequence item, else the first WindowCenter/WindowWidth pair, else min-max) ->
polarity (:func:`polarity`): the result is inverted (``1 - v``) when the film displays its
minimum as white, so that bone / high attenuation ends up bright:

====================  ===========================  =============================
PhotometricInterp.    PresentationLUTShape         result
====================  ===========================  =============================
MONOCHROME2           absent / IDENTITY            as is (``"none"``)
MONOCHROME2           INVERSE                      inverted (``"PresentationLUTShape INVERSE"``)
MONOCHROME1           absent / IDENTITY            inverted (``"MONOCHROME1"``)
MONOCHROME1           INVERSE                      inverted once (``"MONOCHROME1+INVERSE"``)
====================  ===========================  =============================

MONOCHROME1 with INVERSE does *not* cancel: PS3.3 (General Image C.7.6.1.1, DX Image C.8.11)
says INVERSE "shall be used if Photometric Interpretation is MONOCHROME1", i.e. it states the
same single inversion that MONOCHROME1 states (every conformant MONOCHROME1 DX film carries
it). Other shape values are ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cpak_cli.errors import CpakInputError
from cpak_cli.input.tags import first_number, raw_str

#: A [0, 1] image (or window of one) whose values span no more than this has no contrast.
CONTRAST_EPS = 1e-6


def has_contrast(unit: np.ndarray) -> bool:
    """True when the values of ``unit`` (mapped to [0, 1]) span more than :data:`CONTRAST_EPS`;
    the one rule for the whole film (:func:`voi_to_unit`) and for its decoded windows."""
    return float(unit.max()) - float(unit.min()) > CONTRAST_EPS

__all__ = ["window_to_unit", "minmax", "voi_to_unit", "polarity", "INVERSIONS"]

#: The possible values of :attr:`LoadedImage.inversion`.
INVERSIONS: tuple[str, ...] = ("none", "MONOCHROME1", "PresentationLUTShape INVERSE", "MONOCHROME1+INVERSE")


def window_to_unit(
    arr: np.ndarray, center: float, width: float, function: str
) -> np.ndarray | None:
    """Apply a VOI window (PS3.3 C.11.2.1.2) and return values in [0, 1]; None if invalid."""
    function = (function or "LINEAR").strip().upper()
    x = arr.astype(np.float64, copy=False)
    if function == "SIGMOID":
        if width <= 0:
            return None
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            return None
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    # LINEAR (default; unknown functions are treated as LINEAR)
    if width < 1:
        return None
    if width == 1:
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def minmax(path: str, arr: np.ndarray) -> np.ndarray:
    x = arr.astype(np.float64, copy=False)
    if x.size == 0:
        raise CpakInputError(path, "image is empty")
    finite = np.isfinite(x)
    if not finite.all():
        if not finite.any():
            raise CpakInputError(path, "image has no finite pixel values")
        x = np.where(finite, x, np.nanmin(np.where(finite, x, np.nan)))
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise CpakInputError(path, f"image has no contrast (all pixels equal {lo:g})")
    if not np.isfinite(hi - lo):  # e.g. a rescale slope of 1e308: halve so the span is finite
        x, lo, hi = x * 0.5, lo * 0.5, hi * 0.5
    return (x - lo) / (hi - lo)


def voi_to_unit(path: str, ds: Any, arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Map modality-LUT output ``arr`` to [0, 1] with the file's VOI, else min-max."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        try:
            item = ds.VOILUTSequence[0]
            out = apply_voi_lut(arr, ds, index=0, prefer_lut=True).astype(np.float64)
            nbits = int(item.LUTDescriptor[2])
            lut = item.get("LUTData")
            lo, hi = 0.0, float(2**nbits - 1)
            if isinstance(lut, (list, tuple)) or type(lut).__name__ == "MultiValue":
                vals = [float(v) for v in lut]
                if vals:
                    lo, hi = min(vals), max(vals)
            hi = max(hi, float(out.max()))
            lo = min(lo, float(out.min()))
            if hi > lo:
                unit = np.clip((out - lo) / (hi - lo), 0.0, 1.0)
                if has_contrast(unit):
                    return unit, "voi_lut"
        except Exception:  # noqa: BLE001 - a broken VOI LUT falls back to the window/min-max
            pass
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = first_number(ds.get("WindowCenter"))
        width = first_number(ds.get("WindowWidth"))
        if center is not None and width is not None:
            windowed = window_to_unit(arr, center, width, raw_str(ds, "VOILUTFunction") or "")
            # a window that misses the data (constant result) is ignored
            if windowed is not None and has_contrast(windowed):
                return windowed, "window"
    return minmax(path, arr), "minmax"


def polarity(photometric: str, ds: Any) -> str:
    """How the VOI output must be inverted to make bone bright: one of :data:`INVERSIONS`
    (``"none"``: keep; anything else: ``1 - v``). ``photometric`` is upper case."""
    inverse = (raw_str(ds, "PresentationLUTShape") or "").upper() == "INVERSE"
    if photometric == "MONOCHROME1":
        return "MONOCHROME1+INVERSE" if inverse else "MONOCHROME1"
    return "PresentationLUTShape INVERSE" if inverse else "none"
