"""Optional GPU decoding of JPEG 2000 frames through NVIDIA nvImageCodec (``pip install -e
".[gpu]"``: the ``nvidia.nvimgcodec`` module with nvJPEG2000), and the pixels of a film decoded
that way.

:func:`decode_frames` decodes a batch of codestreams in one call and checks every frame against
its codestream header (shape, dtype, not constant, values within ``2**precision - 1``); a frame
that fails any check, or that the library returns as None, comes back as None and its film keeps
its CPU decoder. The first decode call that fails (raises, or returns fewer images than it was
given) turns GPU decoding off for the rest of the process (:func:`failure`; one warning is
logged) and synchronizes the CUDA device so that a poisoned context shows at once. The decode
runs with ``device_id`` as torch's current CUDA device (the library's output and the decoder on
the same GPU).

:class:`MemoryPixels` serves a film's pieces from such a decoded array: level 0 by slicing,
reduced levels as the 5/3 LL band (:mod:`cpak_cli.input.wavelet53`), which equals OpenJPEG's
reduced decode (:class:`cpak_cli.input.j2k_pixels.J2KPixels`) when the array equals OpenJPEG's
full decode. Nothing here proves that: the decode is lossless by specification, and a film
takes it only after a spot check against OpenJPEG on a grid of patches
(:meth:`cpak_cli.input.film_source.FilmSource.adopt_pixels`, :mod:`cpak_cli.input.spot_check`).

Only JPEG 2000 is decoded here. (A trap to remember for JPEG lossless: nvJPEG before 13.0.2
decodes 9-15-bit lossless JPEG to all zeros; the constant check would refuse such frames.)
Library code: nothing is printed; refused frames are logged at debug level.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from cpak_cli.input.j2k_pixels import J2KPixels
from cpak_cli.input.j2k_stream import CodestreamInfo, codestream_info, unpadded_end
from cpak_cli.input.wavelet53 import ll_window

__all__ = ["BATCH", "MemoryPixels", "available", "decode_frames", "failure"]

log = logging.getLogger(__name__)

#: Frames per decode call (bounds the GPU memory one call holds: 16 full-size 16-bit films are
#: about 0.7 GB).
BATCH = 16

_lock = threading.Lock()
_decoders: dict[tuple[int, int], Any] = {}
_failure: str | None = None


def failure() -> str | None:
    """Why GPU decoding was turned off in this process (the first failed decode call), or None
    while it is on."""
    return _failure


def _fail(reason: str, device_id: int) -> None:
    """Turn GPU decoding off for this process after a failed call (one warning) and synchronize
    the device so that a CUDA error left by the call surfaces now (a failing synchronize is
    logged; the models' next call on that device then fails as it would)."""
    global _failure
    with _lock:
        first, _failure = _failure is None, _failure or reason
    if not first:
        return
    try:
        import torch

        torch.cuda.synchronize(device_id)
        after = ""
    except Exception as exc:  # noqa: BLE001 - only reported: GPU decoding stays off either way
        after = f"; then the CUDA device failed to synchronize: {type(exc).__name__}: {exc}"
    log.warning("GPU decoding (nvImageCodec) is off for the rest of this process: %s%s", reason, after)


@lru_cache(maxsize=1)
def available() -> bool:
    """True when ``nvidia.nvimgcodec`` imports and torch sees a CUDA device (checked once per
    process; never raises)."""
    try:
        import torch
        from nvidia import nvimgcodec  # noqa: F401

        return bool(torch.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 - an optional extra: any failure means "not here"
        log.debug("nvImageCodec not available: %s", exc)
        return False


def _decoder(device_id: int) -> tuple[Any, Any]:
    """The module and a (cached) decoder on ``device_id`` restricted to the GPU backends."""
    from nvidia import nvimgcodec

    key = (id(nvimgcodec), device_id)
    if key not in _decoders:
        try:
            kinds = [nvimgcodec.BackendKind.GPU_ONLY, nvimgcodec.BackendKind.HYBRID_CPU_GPU]
            _decoders[key] = nvimgcodec.Decoder(device_id=device_id, backend_kinds=kinds)
        except (AttributeError, TypeError):  # an older binding: all backends
            _decoders[key] = nvimgcodec.Decoder(device_id=device_id)
    return nvimgcodec, _decoders[key]


def _checked(image: Any, info: CodestreamInfo | None) -> np.ndarray | None:
    """The decoded frame as a host array ``(height, width)`` when it passes the checks, else
    None."""
    if image is None or info is None:
        return None
    host = image.cpu() if hasattr(image, "cpu") else image
    arr = np.array(host, copy=True)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    dtype = np.uint8 if info.precision <= 8 else np.uint16
    if arr.shape != (info.height, info.width) or arr.dtype != dtype or arr.size == 0:
        return None
    lo, hi = int(arr.min()), int(arr.max())
    if lo == hi or hi > (1 << info.precision) - 1:
        return None
    return np.ascontiguousarray(arr)


def _trimmed(cs: bytes) -> bytes:
    """``cs`` without the zero bytes DICOM may pad after its EOC marker."""
    end = unpadded_end(cs, 2)
    return cs[:end] if cs[end - 2 : end] == b"\xff\xd9" else cs


def decode_frames(codestreams: Sequence[bytes], device_id: int = 0,
                  infos: Sequence[CodestreamInfo | None] | None = None) -> list[np.ndarray | None]:
    """Decode JPEG 2000 codestreams (single component, unsigned, at most 16 bits) on GPU
    ``device_id`` in batches of :data:`BATCH`: per codestream its stored values ``(height,
    width)`` uint8 (precision <= 8) or uint16, or None when that frame could not be decoded or
    failed a check (see the module docstring). ``infos``: the codestreams'
    :func:`~cpak_cli.input.j2k_stream.codestream_info` when the caller has them. Never raises:
    a failing call gives None for its whole batch and turns GPU decoding off (:func:`failure`);
    once off, every frame is None without a call."""
    if infos is None:
        infos = [codestream_info(cs) for cs in codestreams]
    todo = [i for i, info in enumerate(infos) if info is not None and not info.signed and info.precision <= 16]
    out: list[np.ndarray | None] = [None] * len(codestreams)
    for k in range(0, len(todo), BATCH):
        if _failure is not None:
            break
        part = todo[k : k + BATCH]
        try:
            import torch

            with torch.cuda.device(device_id):
                with _lock:
                    nvimgcodec, decoder = _decoder(device_id)
                    params = nvimgcodec.DecodeParams(allow_any_depth=True, color_spec=nvimgcodec.ColorSpec.UNCHANGED)
                    images = decoder.decode([_trimmed(codestreams[i]) for i in part], params=params)
                if len(images) != len(part):
                    raise ValueError(f"{len(images)} images for {len(part)} codestreams")
                frames = [_checked(image, info) for image, info in zip(images, (infos[i] for i in part))]
        except Exception as exc:  # noqa: BLE001 - the CPU decoder takes these frames
            _fail(f"a batch of {len(part)} failed: {type(exc).__name__}: {exc}", device_id)
            continue
        for i, arr in zip(part, frames):
            out[i] = arr
            if arr is None:
                log.debug("nvImageCodec frame %d refused (None or a failed check)", i)
    return out


def _same(pixels: J2KPixels) -> J2KPixels:
    return pixels


class MemoryPixels(J2KPixels):
    """A film's :class:`J2KPixels` served from its stored values decoded whole (``stored``,
    rows x cols, the base's dtype): a level-0 area is sliced, a reduced one computed as the 5/3
    LL band of that area (:func:`cpak_cli.input.wavelet53.ll_window`), with the checks and
    errors of :meth:`J2KPixels.stored`. ``base`` (the source it replaces) still does the full
    decode (:meth:`load_full`); after :meth:`release` the array is dropped and pieces come from
    ``base`` again (a read that races :meth:`release` gets either). Lives in one process: it
    pickles as ``base`` (the codestream, not pixels)."""

    def __init__(self, base: J2KPixels, stored: np.ndarray, precision: int, tile_size: tuple[int, int]) -> None:
        super().__init__(base.codestream, base.shape, base.levels, base.dtype, base.unit_map)
        self.base, self.precision, self.tile_size = base, precision, tile_size
        self._array: np.ndarray | None = stored

    def __reduce__(self) -> tuple[Any, tuple[J2KPixels]]:
        return _same, (self.base,)

    def stored(self, level: int = 0, area: tuple[int, int, int, int] | None = None,
               check_constant: bool = True) -> np.ndarray:
        arr = self._array  # read once: release() may drop it meanwhile
        if arr is None:
            return self.base.stored(level, area, check_constant)
        if level > self.levels:
            raise ValueError(f"codestream has no resolution level {level}")
        return self._checked(ll_window(arr, level, area, self.precision, self.tile_size), level, area, check_constant)

    def load_full(self, path: str, pixel_spacing: Any, fallback_spacing: Any) -> Any:
        return self.base.load_full(path, pixel_spacing, fallback_spacing)

    def release(self) -> None:
        """Drop the decoded array (pieces are decoded by ``base`` from now on) and free
        ``base``'s decoders."""
        self._array = None
        self.base.release()
