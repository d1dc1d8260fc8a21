"""The decode worker's side of :mod:`cpak_cli.input.cage`: the request loop a worker process
runs (:func:`serve`) under its memory limit, and the answers to the cage's requests."""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from typing import Any, Callable

from cpak_cli.errors import CpakInputError, CpakMemoryError
from cpak_cli.input import held as held_mod
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.held import HeldStore
from cpak_cli.input.j2k_pixels import J2KPixels
from cpak_cli.networks.crops import sample_crop

__all__ = ["Hook", "KEEP_FILMS", "serve"]

#: Codestreams a worker keeps (per film) so that window requests need not resend them.
KEEP_FILMS = 8


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


#: Test hook: a callable run in the worker before each request with (op, path) (set it on the
#: Cage; it must pickle by reference for forkserver workers).
Hook = Callable[[str, str], None]


def _preload() -> None:
    """Import and start what requests use, so that it is mapped before the memory limit is set
    and does not count against it: pydicom and the loader, and one small crop
    (:func:`~cpak_cli.networks.crops.sample_crop`: OpenCV's resampling, numpy's BLAS, whose
    buffers are mapped on first use, about 400 MB in all otherwise taken from the first held
    film's budget).

    OpenCV gets one thread when this process imports it. A worker forked from a process that had
    imported it keeps the inherited setting (``cv2.setNumThreads`` hangs in a child of a process
    whose OpenCV threads ran); any threads OpenCV starts then start in that small crop."""
    import numpy as np
    import pydicom  # noqa: F401

    import cpak_cli.input.loader  # noqa: F401
    import cpak_cli.networks.detector  # noqa: F401
    from cpak_cli.networks.crops import crop_matrix

    if "cv2" not in sys.modules:
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:  # the loader reports a missing OpenCV where it needs it
            return
    sample_crop(np.zeros((64, 64), np.float32), crop_matrix((-8, -8, 120, 120), 16), 16)


def _no_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the memory ran out: MemoryError, the loader's
    :class:`~cpak_cli.errors.CpakMemoryError`, or OpenCV's "insufficient memory" error."""
    if isinstance(exc, (MemoryError, CpakMemoryError)):
        return True
    cv2 = sys.modules.get("cv2")
    return cv2 is not None and isinstance(exc, cv2.error) and getattr(exc, "code", None) == cv2.Error.StsNoMem


def serve(conn: Any, memory_mb: int, hook: Hook | None, worker: int = 0) -> None:
    """Worker loop (the cage's worker number ``worker``): answer requests on ``conn`` until it
    closes. A request is ``(op, path, ..., drops, cwd)``: the held films ``drops`` (keys) are
    dropped first (:meth:`HeldStore.drop`, the parent's releases); a request that runs out of
    memory while films are held drops them all and runs once more; the reply is ``(kind,
    value)`` (``"memory"`` when the memory still ran out)."""
    import resource

    from cpak_cli.heap import reuse_freed_memory

    reuse_freed_memory()  # windows decoded again and again reuse their pages (no fresh page faults)
    try:
        _preload()
    except Exception:  # noqa: BLE001 - best effort: what failed here fails, reported, in the request that needs it
        pass
    try:  # the limit counts from what the worker already maps (a forked parent's libraries)
        limit = _vm_bytes() + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):
        pass
    films: OrderedDict[str, J2KPixels] = OrderedDict()
    held = HeldStore(worker, int(memory_mb * 2**20 * held_mod.HELD_SHARE))
    while True:
        try:
            req = conn.recv()
        except (EOFError, OSError):
            return
        op, path, drops, cwd, req = req[0], req[1], req[-2], req[-1], req[:-2]
        try:
            held.drop(drops)
            for key in drops:  # a released JPEG 2000 film's codestream and decoders
                dropped = films.pop(key, None)
                if dropped is not None:
                    dropped.release()
            if cwd != os.getcwd():  # relative paths mean what they mean in the parent
                os.chdir(cwd)
            if hook is not None:
                hook(op, path)
            try:
                reply: Any = _answer(op, path, req, films, held)
            except Exception as exc:
                if not _no_memory(exc) or not held.drop_all():  # the held films' memory may be what it lacked
                    raise
                reply = _answer(op, path, req, films, held)
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the parent
            reply = _failure(exc)
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", None))
        except Exception as exc:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


def _failure(exc: BaseException) -> tuple[str, Any]:
    """The reply for a request that raised ``exc``."""
    if _no_memory(exc):
        return "memory", None
    if isinstance(exc, CpakInputError):  # its two-argument constructor does not unpickle as an exception
        return "input", (exc.path, exc.reason)
    return "error", exc


def _answer(op: str, path: str, req: tuple[Any, ...], films: OrderedDict[str, J2KPixels],
            held: HeldStore) -> tuple[str, Any]:
    """The reply to one request (``req`` without the working folder)."""
    if op == "open":
        return "ok", _open(path, req[2], req[3], films, held)
    if op == "load":
        from cpak_cli.input.loader import load_image

        return "ok", load_image(path, pixel_spacing=req[2], fallback_spacing=req[3])
    if op == "held":
        return "ok", held.answer(req[2], path, *req[3:])
    if op == "stored":
        key, plain, level, area, check = req[2:]
        if plain is None and key not in films:
            return "need", None
        return "ok", _keep(films, key, plain or films[key]).stored(level, area, check)
    return "error", ValueError(f"unknown request {op!r}")


def _open(path: str, pixel_spacing: Any, fallback_spacing: Any, films: OrderedDict[str, J2KPixels],
          held: HeldStore) -> Any:
    from cpak_cli.input.cage import CagedPixels
    from cpak_cli.input.loader import open_film
    from cpak_cli.networks.detector import prefetch_overview

    image = open_film(path, pixel_spacing=pixel_spacing, fallback_spacing=fallback_spacing)
    if not isinstance(image, FilmSource):  # decoded in full: the film stays here
        return held.hold(image)
    prefetch_overview(image)
    plain = image._src
    caged = CagedPixels(plain)
    caged.path = path
    _keep(films, caged.key, plain)
    object.__setattr__(image, "_src", caged)
    return image


def _keep(films: OrderedDict[str, J2KPixels], key: str, plain: J2KPixels) -> J2KPixels:
    """Keep ``plain`` as the most recent of at most :data:`KEEP_FILMS` codestreams."""
    films[key] = plain
    films.move_to_end(key)
    while len(films) > KEEP_FILMS:
        films.popitem(last=False)[1].release()
    return plain
