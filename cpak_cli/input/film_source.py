"""A radiograph whose pixels are decoded on demand: a coarse overview for the joint detector and
full-resolution windows for the landmark crops, instead of the whole film at full resolution.

:class:`FilmSource` is a :class:`~cpak_cli.input.image.LoadedImage` (same metadata, same
head-up frame, same value mapping) whose ``pixels`` are only decoded, in full, when something
reads them (an overlay). The pipeline reads it through :meth:`FilmSource.overview` (the joint
detector, :func:`cpak_cli.networks.detector.detector_input`) and :meth:`FilmSource.window` (the
crops, :func:`cpak_cli.networks.crops.sample_crop`).

Partial decoding applies to single-frame JPEG 2000 with the reversible (lossless) wavelet, one
unsigned component whose precision equals BitsStored, a linear rescale or none and a VOI window
(WindowCenter/WindowWidth, no VOI LUT Sequence): then every value of a window is exactly the
value the full decode gives (the wavelet is integer and lossless) and the value mapping is the
loader's own per-pixel one. An overview is the wavelet's low-pass band ``2**level`` times
smaller (sample ``i`` lies on full-resolution pixel ``2**level * i``). Anything else, and any
decoded piece that fails its checks (wrong shape, a constant window, a decoder error), falls
back to the full decode of :func:`cpak_cli.input.loader.load_image` (then ``fast`` is False).

The loader picks the VOI window when the windowed film is not constant; a partial decode
cannot see the whole film, so :attr:`FilmSource.voi_proven` records whether a decoded window
has shown contrast under the VOI window (which proves the choice). :meth:`confirm_voi` decides
it with the full decode when no window did.
"""

from __future__ import annotations

import math
import threading
from typing import Any, ClassVar

import numpy as np

from cpak_cli.input.image import LoadedImage
from cpak_cli.input.j2k_pixels import J2KPixels, UnitMap
from cpak_cli.input.orientation import Orientation, turn
from cpak_cli.input.values import has_contrast

__all__ = ["FilmSource", "J2KPixels", "ReducedView", "UnitMap", "ViewLost"]


class ViewLost(RuntimeError):
    """A reduced view was asked of a source that has fallen back to its full decode (read the
    full-resolution film instead)."""


class FilmSource(LoadedImage):
    """A :class:`LoadedImage` decoded on demand (see the module docstring).

    ``fast`` is True while pieces are decoded from the codestream; after a fallback the full
    image is held and every view is cut from it. Pickles with the codestream (for worker
    processes) and any overview decoded so far, not with decoded full-resolution pixels (after
a fallback: with the full decode). Thread-safe.
    """

    decodes_on_demand: ClassVar[bool] = True
    voi_proven: bool
    windows_read: bool
    _src: J2KPixels
    _orientation: Orientation
    _reload: tuple[str, Any, Any]
    _full: np.ndarray | None
    _overviews: dict[int, tuple[np.ndarray, np.ndarray]]
    _fallback_reason: str | None
    _lock: threading.Lock

    def __init__(self, pixels: J2KPixels, orientation: Orientation, reload: tuple[str, Any, Any], **meta: Any) -> None:
        for name, value in meta.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_src", pixels)
        object.__setattr__(self, "_orientation", orientation)
        object.__setattr__(self, "_reload", reload)
        object.__setattr__(self, "_full", None)
        object.__setattr__(self, "_overviews", {})
        object.__setattr__(self, "_fallback_reason", None)
        object.__setattr__(self, "voi_proven", False)
        object.__setattr__(self, "windows_read", False)
        object.__setattr__(self, "_lock", threading.Lock())

    # ------------------------------------------------------------------ plumbing
    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        if self.fast:  # the codestream travels, not a decoded copy of the whole film
            state["_full"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_lock", threading.Lock())

    def __repr__(self) -> str:
        return (f"FilmSource({self.path!r}, {self.rows}x{self.cols}, spacing {self.spacing_mm}, "
                f"fast={self.fast})")

    @property
    def fast(self) -> bool:
        """True while pieces are decoded from the codestream (no fallback yet)."""
        return self._fallback_reason is None

    @property
    def fallback_reason(self) -> str | None:
        """Why the source fell back to the full decode (None while fast)."""
        return self._fallback_reason

    @property
    def pixels(self) -> np.ndarray:
        """The whole film, float32 ``[0, 1]`` head-up (decoded in full on first use; raises
        CpakInputError as :func:`load_image` does)."""
        with self._lock:
            if self._full is None:
                self._set("_full", self._src.load_full(*self._reload).pixels)
            return self._full  # type: ignore[return-value]

    def release(self) -> None:
        """Free the kept JPEG 2000 decoders (views can still be read; they decode again)."""
        self._src.release()

    def _fall_back(self, reason: str) -> None:
        if self._fallback_reason is None:
            self._set("_fallback_reason", reason)
        _ = self.pixels

    # ------------------------------------------------------------------ views
    def level_for(self, max_factor: float) -> int:
        """The reduction level (``2**level`` times smaller) for a view at most ``max_factor``
        times coarser than the film: 0 after a fallback, at most the codestream's levels."""
        if max_factor < 2 or not self.fast:
            return 0
        return min(int(math.floor(math.log2(max_factor))), self._src.levels)

    def view_matrix(self, level: int) -> np.ndarray:
        """2x3 affine from pixels ``(u, v)`` of the head-up view at ``level`` to the film's
        pixels ``(x, y)``: view sample ``i`` lies on stored pixel ``2**level * i``."""
        step = float(2**level)
        m = np.array([[step, 0.0, 0.0], [0.0, step, 0.0]])
        if self._orientation.flip_vertical:  # head-up row y = rows-1 - step*(R-1-v)
            m[1, 2] = (self.rows - 1) - step * (math.ceil(self.rows / step) - 1)
        return m

    def overview(self, max_factor: float) -> tuple[np.ndarray, np.ndarray]:
        """The whole film reduced by ``2**level`` (:meth:`level_for`), head-up, float32
        ``[0, 1]``, and :meth:`view_matrix` (view pixels -> film pixels); cached. At level 0
        (``max_factor < 2``, or after a fallback) the full film and the identity."""
        level = self.level_for(max_factor)
        if level > 0:
            with self._lock:
                cached = self._overviews.get(level)
            if cached is not None:
                return cached
            step = 2**level
            rows, cols = math.ceil(self.rows / step), math.ceil(self.cols / step)
            try:
                view = self.read(level, 0, 0, cols, rows)
            except ViewLost:
                pass
            else:
                with self._lock:
                    self._overviews[level] = (view, self.view_matrix(level))
                return view, self.view_matrix(level)
        return self.pixels, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def reduced(self, max_factor: float) -> "ReducedView | None":
        """Windows of the film at the coarsest level not above ``max_factor`` (None at level 0:
        read :meth:`window` itself)."""
        level = self.level_for(max_factor)
        return ReducedView(self, level) if level > 0 else None

    def window(self, xa: int, ya: int, xb: int, yb: int) -> np.ndarray:
        """Head-up pixels ``[ya:yb, xa:xb]`` as float32 ``(yb - ya, xb - xa)``; area outside the
        film reads 0 (the convention of :func:`cpak_cli.networks.crops.sample_crop`). Exactly the
        full decode's values."""
        self._set("windows_read", True)
        return self.read(0, xa, ya, xb, yb)

    def read(self, level: int, ua: int, va: int, ub: int, vb: int) -> np.ndarray:
        """Head-up view pixels ``[va:vb, ua:ub]`` at ``level`` (float32, 0 outside the film).
        A level-0 window with contrast under the VOI window proves the VOI choice
        (:attr:`voi_proven`); a coarser one checks a small level-0 patch at its centre."""
        step = 2**level
        rows, cols = math.ceil(self.rows / step), math.ceil(self.cols / step)
        out = np.zeros((vb - va, ub - ua), dtype=np.float32)
        u0, v0, u1, v1 = max(ua, 0), max(va, 0), min(ub, cols), min(vb, rows)
        if u0 >= u1 or v0 >= v1:
            return out
        if self.fast:
            try:
                block = self._piece(self._src, level, u0, v0, u1, v1)
            except (RuntimeError, ValueError, MemoryError) as exc:
                self._fall_back(f"level {level} window: {exc}")
            else:
                out[v0 - va : v1 - va, u0 - ua : u1 - ua] = block
                if level == 0 and not self.voi_proven and has_contrast(block):
                    self._set("voi_proven", True)
                elif level > 0 and not self.voi_proven:
                    x, y = self.view_matrix(level) @ np.array([(u0 + u1) / 2, (v0 + v1) / 2, 1.0])
                    self._probe_voi(int(x), int(y))
                return out
        if level > 0:
            raise ViewLost(f"{self.path}: no level-{level} view after falling back to the full decode "
                           f"({self._fallback_reason})")
        out[v0 - va : v1 - va, u0 - ua : u1 - ua] = self.pixels[v0:v1, u0:u1]
        return out

    def _piece(self, src: J2KPixels, level: int, u0: int, v0: int, u1: int, v1: int,
               check_constant: bool = True) -> np.ndarray:
        """Head-up view pixels ``[v0:v1, u0:u1]`` (inside the view) at ``level`` of ``src``,
        float32 ``[0, 1]`` through the value map; raises what :meth:`J2KPixels.stored` raises
        (J2KError, ValueError, MemoryError; CpakInputError from a caged source)."""
        step = 2**level
        c0, r0, c1, r1 = self._stored_area(u0, v0, u1, v1, math.ceil(self.rows / step))
        srows, scols = src.shape
        area = (c0 * step, r0 * step, min(c1 * step, scols), min(r1 * step, srows))
        return self._oriented(src.unit_map.apply(src.stored(level, area, check_constant)))

    @property
    def piece_source(self) -> J2KPixels:
        """The stored pixels that pieces are decoded from now (replaced by :meth:`adopt_pixels`)."""
        return self._src

    def adopt_pixels(self, pixels: J2KPixels, tile_size: tuple[int, int] | None = None) -> bool:
        """Read pieces from ``pixels`` (this film's stored values from another decoder, e.g.
        decoded whole on the GPU) from now on, keeping the overviews, when the source is still
        fast, no crop window was read and ``pixels`` gives exactly the current source's raw
        stored values on every patch of :func:`cpak_cli.input.spot_check.patch_grid` (the
        codestream's tiles are ``tile_size``, None: one tile): a spot check, not a proof (see
        :mod:`cpak_cli.input.spot_check` for what it catches for sure and its cost). Returns
        whether it was adopted; False also when either decoder raises on a patch (the error is
        swallowed: the film keeps its source)."""
        from cpak_cli.errors import CpakInputError
        from cpak_cli.input.spot_check import patch_grid, same_stored

        src = self._src
        if not self.fast or self.windows_read or (pixels.shape, pixels.dtype) != (src.shape, src.dtype):
            return False
        try:
            if not same_stored(src, pixels, patch_grid(src.shape, tile_size)):
                return False
        except (RuntimeError, ValueError, MemoryError, CpakInputError):
            return False
        with self._lock:
            if not self.fast or self.windows_read or self._src is not src:
                return False
            self._set("_src", pixels)
        return True

    def confirm_voi(self) -> bool:
        """Whether results from the pieces stand: True when a window proved the VOI choice (or
        the source already holds the full decode); otherwise the full film is decoded, and True
        when the loader also chose the VOI window (its mapping equals the pieces'), False when
        it did not (the source falls back; measure again)."""
        if self.voi_proven or not self.fast:
            return True
        full = self._src.load_full(*self._reload)
        self._set("_full", full.pixels)
        if full.voi_source == "window":
            self._set("voi_proven", True)
            return True
        self._set("_fallback_reason", f"the film is constant under its VOI window (full decode: {full.voi_source})")
        self._set("voi_source", full.voi_source)
        return False

    # ------------------------------------------------------------------ frames
    def _probe_voi(self, x: int, y: int, half: int = 32) -> None:
        """Decode a small full-resolution patch around film pixel ``(x, y)``; contrast under the
        VOI window proves the VOI choice. A failure here proves nothing and changes nothing."""
        x0, y0 = max(x - half, 0), max(y - half, 0)
        x1, y1 = min(x + half, self.cols), min(y + half, self.rows)
        if x0 >= x1 or y0 >= y1:
            return
        try:
            patch = self._piece(self._src, 0, x0, y0, x1, y1, check_constant=False)
        except (RuntimeError, ValueError, MemoryError):
            return
        if has_contrast(patch):
            self._set("voi_proven", True)

    def _stored_area(self, x0: int, y0: int, x1: int, y1: int, rows: int) -> tuple[int, int, int, int]:
        """Head-up window (end exclusive) of a view ``rows`` high -> the stored view's
        (x0, y0, x1, y1)."""
        o = self._orientation
        if o.flip_vertical:
            y0, y1 = rows - y1, rows - y0
        return (y0, x0, y1, x1) if o.transpose else (x0, y0, x1, y1)

    def _oriented(self, stored: np.ndarray) -> np.ndarray:
        return turn(stored, self._orientation)


class ReducedView:
    """Windows of a :class:`FilmSource` at one reduction level: ``window(ua, va, ub, vb)`` gives
    head-up view pixels (float32, 0 outside) and ``to_image`` maps view pixels to film pixels
    (what :func:`cpak_cli.networks.crops.sample_crop` needs to resample from it)."""

    def __init__(self, source: FilmSource, level: int) -> None:
        self.source, self.level = source, level
        self.to_image = source.view_matrix(level)

    def window(self, ua: int, va: int, ub: int, vb: int) -> np.ndarray:
        self.source._set("windows_read", True)
        return self.source.read(self.level, ua, va, ub, vb)
