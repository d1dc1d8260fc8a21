"""The stored pixels of a JPEG 2000 frame decoded piecewise (:class:`J2KPixels`) and the map from
stored values to the loader's float32 ``[0, 1]`` (:class:`UnitMap`): what a
:class:`~cpak_cli.input.film_source.FilmSource` reads its overview and windows from. Re-exported
by :mod:`cpak_cli.input.film_source`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from cpak_cli.input.image import LoadedImage
from cpak_cli.input.values import window_to_unit

__all__ = ["MIN_CHECKED_SIDE", "J2KPixels", "UnitMap"]

#: The smallest window side (pixels) that must not be constant (a joint window of a real film
#: never is: a constant one means a broken decode); smaller ones are not checked.
MIN_CHECKED_SIDE = 48


@dataclass(frozen=True)
class UnitMap:
    """Stored values -> float32 ``[0, 1]`` bone bright, per pixel, exactly as the loader maps
    them (:func:`cpak_cli.input.dicom_decode.decode_unit`): linear rescale (when ``slope`` is
    not None: ``v * slope + intercept`` in float64), VOI window
    (:func:`cpak_cli.input.values.window_to_unit`), inversion ``1 - v``, clip, float32."""

    center: float
    width: float
    function: str
    invert: bool
    slope: float | None = None
    intercept: float = 0.0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        arr: np.ndarray = raw
        if self.slope is not None:
            arr = raw.astype(np.float64) * self.slope
            arr += self.intercept
        unit = window_to_unit(arr, self.center, self.width, self.function)
        if unit is None:  # checked when the map was made; kept for type safety
            raise ValueError("invalid VOI window")
        if self.invert:
            unit = 1.0 - unit
        return np.clip(unit, 0.0, 1.0).astype(np.float32)


class J2KPixels:
    """The stored pixels of one JPEG 2000 frame, decoded piecewise: ``codestream`` bytes,
    ``shape`` (stored rows, cols), ``levels`` (wavelet levels), ``dtype`` (uint8/uint16, as
    pydicom returns them), the value map, and ``reuse`` (a single-tile codestream: parsed
    decoders are kept per level and reused, one thread at a time each). Pickles without them."""

    def __init__(self, codestream: bytes, shape: tuple[int, int], levels: int, dtype: str, unit_map: UnitMap,
                 reuse: bool = False) -> None:
        self.codestream, self.shape, self.levels, self.dtype = codestream, shape, levels, dtype
        self.unit_map, self.reuse = unit_map, reuse
        self._free: dict[int, list[Any]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_free", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._free, self._lock = {}, threading.Lock()

    def _decode(self, level: int, area: tuple[int, int, int, int] | None) -> np.ndarray:
        from cpak_cli.input.openjp2 import Decoder, decode

        if not self.reuse:
            return decode(self.codestream, level, area)
        with self._lock:
            free = self._free.setdefault(level, [])
            dec = free.pop() if free else None
        if dec is None:
            dec = Decoder(self.codestream, level)
        try:
            out = dec.decode(area)
        except BaseException:
            dec.close()
            raise
        with self._lock:
            self._free.setdefault(level, []).append(dec)
        return out

    def load_full(self, path: str, pixel_spacing: Any, fallback_spacing: Any) -> LoadedImage:
        """The whole film as :func:`cpak_cli.input.loader.load_image` decodes it (in this process;
        a caged subclass decodes it in a worker)."""
        from cpak_cli.input.loader import load_image

        return load_image(path, pixel_spacing=pixel_spacing, fallback_spacing=fallback_spacing)

    def release(self) -> None:
        """Free the kept decoders (they are made again when needed)."""
        with self._lock:
            decoders = [d for ds in self._free.values() for d in ds]
            self._free = {}
        for d in decoders:
            d.close()

    def stored(self, level: int = 0, area: tuple[int, int, int, int] | None = None,
               check_constant: bool = True) -> np.ndarray:
        """Stored values of ``area`` (x0, y0, x1, y1 in stored full-resolution pixels, end
        exclusive; None = all) at ``level``; raises J2KError / ValueError when the decoder fails
        or returns a wrong array, or (``check_constant``) a constant one at least
        :data:`MIN_CHECKED_SIDE` pixels on each side."""
        return self._checked(self._decode(level, area), level, area, check_constant)

    def _checked(self, out: np.ndarray, level: int, area: tuple[int, int, int, int] | None,
                 check_constant: bool) -> np.ndarray:
        """``out`` (decoded values of ``area`` at ``level``) in :attr:`dtype` after the checks of
        :meth:`stored` (raises ValueError)."""
        rows, cols = self.shape
        x0, y0, x1, y1 = area if area is not None else (0, 0, cols, rows)
        step = 2**level
        want = (math.ceil(y1 / step) - math.ceil(y0 / step), math.ceil(x1 / step) - math.ceil(x0 / step))
        if tuple(out.shape) != want:
            raise ValueError(f"decoded {tuple(out.shape)} pixels, expected {want}")
        lo, hi = int(out.min()), int(out.max())
        if check_constant and min(want) >= MIN_CHECKED_SIDE and lo == hi:
            raise ValueError("decoded window is constant")
        info = np.iinfo(self.dtype)
        if lo < info.min or hi > info.max:
            raise ValueError("decoded values outside the stored range")
        return out.astype(self.dtype, copy=False)  # both decoders hand over a fresh array
