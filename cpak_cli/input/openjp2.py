"""A minimal ctypes binding to the OpenJPEG 2 C library: decode a JPEG 2000 codestream at a
reduced resolution level and/or only a rectangle of it.

pydicom decodes JPEG 2000 through pylibjpeg-openjpeg, which always decodes the whole image at
full resolution. OpenJPEG itself can do much less work: a reduced resolution level (the LL band
of the wavelet, ``2**level`` times smaller) and a sub-window (only the code-blocks that touch
it). No pip-installable Python binding offers both, so this module calls the library directly.
The library is the one pip already installed (:func:`find_library`): pylibjpeg-openjpeg's
extension module (which links OpenJPEG statically and exports its C API on Linux and macOS),
else the copy Pillow bundles, else a system ``libopenjp2``. When none can be loaded
:func:`available` is False and callers decode the whole image the usual way.

Coordinates: ``area = (x0, y0, x1, y1)`` in full-resolution pixels of the codestream's image
(column, row; end exclusive), as OpenJPEG's reference grid for an image whose origin is 0.
A reduced level ``r`` returns ``ceil((x1 - x0) / 2**r)``-ish pixels whose sample ``i`` lies on
full-resolution pixel ``2**r * i`` (the 5/3 and 9/7 low-pass filters are centred on even
samples).

Every failure raises :class:`J2KError` (one line); nothing is printed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["Decoder", "J2KError", "J2KHeader", "available", "find_library", "read_header", "decode"]

_CODEC_J2K = 0
_MIN_VERSION = (2, 3, 0)  # repeated / sub-window decoding with reduced resolution works from 2.3


class J2KError(RuntimeError):
    """Decoding with the OpenJPEG library failed (or the library is unusable)."""


class _ImageComp(ctypes.Structure):
    _fields_ = [
        ("dx", ctypes.c_uint32), ("dy", ctypes.c_uint32), ("w", ctypes.c_uint32), ("h", ctypes.c_uint32),
        ("x0", ctypes.c_uint32), ("y0", ctypes.c_uint32), ("prec", ctypes.c_uint32), ("bpp", ctypes.c_uint32),
        ("sgnd", ctypes.c_uint32), ("resno_decoded", ctypes.c_uint32), ("factor", ctypes.c_uint32),
        ("data", ctypes.POINTER(ctypes.c_int32)), ("alpha", ctypes.c_uint16),
    ]


class _Image(ctypes.Structure):
    _fields_ = [
        ("x0", ctypes.c_uint32), ("y0", ctypes.c_uint32), ("x1", ctypes.c_uint32), ("y1", ctypes.c_uint32),
        ("numcomps", ctypes.c_uint32), ("color_space", ctypes.c_int), ("comps", ctypes.POINTER(_ImageComp)),
        ("icc_profile_buf", ctypes.c_void_p), ("icc_profile_len", ctypes.c_uint32),
    ]


_READ_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_MSG_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_DPARAMS_BYTES = 1 << 16  # opj_dparameters_t is about 9 KiB; a generous buffer for any 2.x layout

_lock = threading.Lock()
_lib: Any = None
_lib_tried = False


def _candidates() -> list[str]:
    """Library files to try, best first (all installed by pip, then the system's)."""
    out: list[str] = []
    spec = importlib.util.find_spec("openjpeg")
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent.parent
        out += [str(p) for p in sorted(site.glob("_openjpeg*.so")) + sorted(site.glob("_openjpeg*.dylib"))]
    spec = importlib.util.find_spec("PIL")
    if spec is not None and spec.origin:
        pil = Path(spec.origin).parent
        for pattern in ("../pillow.libs/libopenjp2*.so*", ".dylibs/libopenjp2*.dylib", "../Pillow.libs/libopenjp2*.so*"):
            out += [str(p) for p in sorted(pil.glob(pattern))]
    system = ctypes.util.find_library("openjp2")
    if system:
        out.append(system)
    return out


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _bind(lib: Any) -> Any:
    """Declare the functions used; raise AttributeError when one is missing."""
    c_void_p, c_int, c_uint32, c_int32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_int32
    sig = {
        "opj_version": (ctypes.c_char_p, []),
        "opj_create_decompress": (c_void_p, [c_int]),
        "opj_set_default_decoder_parameters": (None, [c_void_p]),
        "opj_setup_decoder": (c_int, [c_void_p, c_void_p]),
        "opj_codec_set_threads": (c_int, [c_void_p, c_int]),
        "opj_set_error_handler": (c_int, [c_void_p, _MSG_FN, c_void_p]),
        "opj_set_warning_handler": (c_int, [c_void_p, _MSG_FN, c_void_p]),
        "opj_set_info_handler": (c_int, [c_void_p, _MSG_FN, c_void_p]),
        "opj_stream_create": (c_void_p, [ctypes.c_size_t, c_int]),
        "opj_stream_set_read_function": (None, [c_void_p, _READ_FN]),
        "opj_stream_set_skip_function": (None, [c_void_p, _SKIP_FN]),
        "opj_stream_set_seek_function": (None, [c_void_p, _SEEK_FN]),
        "opj_stream_set_user_data": (None, [c_void_p, c_void_p, c_void_p]),
        "opj_stream_set_user_data_length": (None, [c_void_p, ctypes.c_uint64]),
        "opj_read_header": (c_int, [c_void_p, c_void_p, ctypes.POINTER(ctypes.POINTER(_Image))]),
        "opj_set_decoded_resolution_factor": (c_int, [c_void_p, c_uint32]),
        "opj_set_decode_area": (c_int, [c_void_p, ctypes.POINTER(_Image), c_int32, c_int32, c_int32, c_int32]),
        "opj_decode": (c_int, [c_void_p, c_void_p, ctypes.POINTER(_Image)]),
        "opj_end_decompress": (c_int, [c_void_p, c_void_p]),
        "opj_stream_destroy": (None, [c_void_p]),
        "opj_destroy_codec": (None, [c_void_p]),
        "opj_image_destroy": (None, [ctypes.POINTER(_Image)]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def find_library() -> Any:
    """The loaded OpenJPEG library (ctypes handle) or None; looked up once per process."""
    global _lib, _lib_tried
    with _lock:
        if _lib_tried:
            return _lib
        _lib_tried = True
        for path in _candidates():
            try:
                lib = _bind(ctypes.CDLL(path))
                version = _version_tuple(lib.opj_version().decode("ascii", "replace"))
            except (OSError, AttributeError, UnicodeError):
                continue
            if version >= _MIN_VERSION:
                _lib = lib
                break
        return _lib


def available() -> bool:
    """True when a usable OpenJPEG (>= 2.3) was found."""
    return find_library() is not None


class _Session:
    """One codec + memory stream over ``data`` (callbacks kept alive as attributes)."""

    def __init__(self, lib: Any, data: bytes, threads: int) -> None:
        self.lib = lib
        self.data = data
        self.pos = 0
        self.errors: list[str] = []
        self.buf = ctypes.create_string_buffer(data, len(data))
        self.base = ctypes.addressof(self.buf)
        self.codec = None
        self.stream = None
        self.image = ctypes.POINTER(_Image)()

        def read(dst: int, n: int, _user: int) -> int:
            left = len(self.data) - self.pos
            if left <= 0:
                return ctypes.c_size_t(-1).value
            k = min(int(n), left)
            ctypes.memmove(dst, self.base + self.pos, k)
            self.pos += k
            return k

        def skip(n: int, _user: int) -> int:
            new = min(max(self.pos + int(n), 0), len(self.data))
            moved = new - self.pos
            self.pos = new
            return moved

        def seek(n: int, _user: int) -> int:
            if not 0 <= n <= len(self.data):
                return 0
            self.pos = int(n)
            return 1

        def on_error(msg: bytes | None, _user: int) -> None:
            self.errors.append((msg or b"").decode("ascii", "replace").strip())

        def quiet(_msg: bytes | None, _user: int) -> None:
            return None

        self._fns = (_READ_FN(read), _SKIP_FN(skip), _SEEK_FN(seek), _MSG_FN(on_error), _MSG_FN(quiet))
        self._params = ctypes.create_string_buffer(_DPARAMS_BYTES)
        codec = lib.opj_create_decompress(_CODEC_J2K)
        if not codec:
            raise J2KError("OpenJPEG could not create a decoder")
        self.codec = codec
        lib.opj_set_error_handler(codec, self._fns[3], None)
        lib.opj_set_warning_handler(codec, self._fns[4], None)
        lib.opj_set_info_handler(codec, self._fns[4], None)
        lib.opj_set_default_decoder_parameters(self._params)
        if not lib.opj_setup_decoder(codec, self._params):
            raise J2KError(self._why("cannot set up the decoder"))
        if threads > 1:
            lib.opj_codec_set_threads(codec, int(threads))
        stream = lib.opj_stream_create(1 << 20, 1)
        if not stream:
            raise J2KError("OpenJPEG could not create a stream")
        self.stream = stream
        lib.opj_stream_set_read_function(stream, self._fns[0])
        lib.opj_stream_set_skip_function(stream, self._fns[1])
        lib.opj_stream_set_seek_function(stream, self._fns[2])
        lib.opj_stream_set_user_data(stream, None, None)
        lib.opj_stream_set_user_data_length(stream, len(data))
        if not lib.opj_read_header(stream, codec, ctypes.byref(self.image)) or not self.image:
            raise J2KError(self._why("cannot read the codestream header"))

    def _why(self, what: str) -> str:
        detail = "; ".join(e for e in self.errors if e)[:200]
        return f"{what} ({detail})" if detail else what

    def close(self) -> None:
        lib = self.lib
        if self.image:
            lib.opj_image_destroy(self.image)
            self.image = ctypes.POINTER(_Image)()
        if self.stream:
            lib.opj_stream_destroy(self.stream)
            self.stream = None
        if self.codec:
            lib.opj_destroy_codec(self.codec)
            self.codec = None


class J2KHeader:
    """What the codestream header says: ``width``, ``height`` (full resolution), ``precision``
    (bits), ``signed``, ``components`` and the image origin ``x0, y0`` on the reference grid."""

    def __init__(self, width: int, height: int, precision: int, signed: bool, components: int, x0: int, y0: int):
        self.width, self.height, self.precision, self.signed = width, height, precision, signed
        self.components, self.x0, self.y0 = components, x0, y0

    def __repr__(self) -> str:
        return (f"J2KHeader({self.width}x{self.height}, {self.precision} bit{' signed' if self.signed else ''}, "
                f"{self.components} component(s), origin {self.x0},{self.y0})")


def _header_of(img: Any) -> J2KHeader:
    n = int(img.numcomps)
    if n < 1:
        raise J2KError("codestream has no components")
    c = img.comps[0]
    return J2KHeader(int(img.x1 - img.x0), int(img.y1 - img.y0), int(c.prec), bool(c.sgnd), n, int(img.x0), int(img.y0))


def read_header(data: bytes) -> J2KHeader:
    """The header of a JPEG 2000 codestream (raises :class:`J2KError`)."""
    lib = find_library()
    if lib is None:
        raise J2KError("no OpenJPEG library")
    s = _Session(lib, bytes(data), 1)
    try:
        return _header_of(s.image.contents)
    finally:
        s.close()


class Decoder:
    """One parsed codestream decoding areas at one resolution ``level``, again and again
    (OpenJPEG >= 2.3 keeps a single-tile codestream's packets between calls, so each area after
    the first skips re-reading the codestream). Not thread-safe: one thread at a time;
    :meth:`close` (or garbage collection) frees the library's memory."""

    def __init__(self, data: bytes, level: int = 0, threads: int = 1) -> None:
        lib = find_library()
        if lib is None:
            raise J2KError("no OpenJPEG library")
        self._s: _Session | None = _Session(lib, bytes(data), threads)
        self.header = _header_of(self._s.image.contents)
        self.level = int(level)
        if self.level and not lib.opj_set_decoded_resolution_factor(self._s.codec, self.level):
            why = self._s._why(f"codestream has no resolution level {level}")
            self.close()
            raise J2KError(why)

    def decode(self, area: Sequence[int] | None = None) -> np.ndarray:
        """int32 ``(rows, cols)`` stored values of ``area`` (full-resolution ``(x0, y0, x1,
        y1)``, end exclusive; None = the whole image) at this decoder's level."""
        s = self._s
        if s is None:
            raise J2KError("decoder closed")
        lib, img, head = s.lib, s.image, self.header
        x0, y0, x1, y1 = (int(v) for v in area) if area is not None else (0, 0, head.width, head.height)
        if not (0 <= x0 < x1 <= head.width and 0 <= y0 < y1 <= head.height):
            raise J2KError(f"area {(x0, y0, x1, y1)} outside the {head.width}x{head.height} image")
        s.errors.clear()
        ox, oy = head.x0, head.y0
        if not lib.opj_set_decode_area(s.codec, img, ox + x0, oy + y0, ox + x1, oy + y1):
            raise J2KError(s._why("cannot set the decode area"))
        if not lib.opj_decode(s.codec, s.stream, img):
            raise J2KError(s._why("decoding failed"))
        comp = img.contents.comps[0]
        h, w = int(comp.h), int(comp.w)
        if h < 1 or w < 1 or not comp.data:
            raise J2KError("decoder returned no pixels")
        out = np.ctypeslib.as_array(comp.data, shape=(h * w,)).reshape(h, w).copy()
        if s.errors:
            raise J2KError(s._why("decoder reported errors"))
        return out

    def close(self) -> None:
        if self._s is not None:
            self._s.close()
            self._s = None

    def __del__(self) -> None:  # pragma: no cover - depends on the garbage collector
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def decode(data: bytes, level: int = 0, area: Sequence[int] | None = None, threads: int = 1) -> np.ndarray:
    """Decode the first component of a JPEG 2000 codestream.

    Args:
        data: the codestream (starts with the SOC marker ``FF 4F``).
        level: resolution reduction: the image ``2**level`` times smaller on each axis (0 = full).
        area: ``(x0, y0, x1, y1)`` full-resolution pixels (end exclusive) to decode, clipped by the
            caller to the image; None = the whole image.
        threads: OpenJPEG worker threads.

    Returns:
        int32 array ``(rows, cols)`` of the stored values at that level/area.

    Raises:
        J2KError: no library, a corrupt codestream, an area outside the image, a level the
            codestream does not have.
    """
    dec = Decoder(data, level, threads)
    try:
        return dec.decode(area)
    finally:
        dec.close()
