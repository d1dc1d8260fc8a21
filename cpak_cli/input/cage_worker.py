"""The decode worker's side of :mod:`cpak_cli.input.cage`: the request loop a worker process
runs (:func:`serve`) under its memory limit, and the answers to the cage's requests."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable

from cpak_cli.errors import CpakInputError
from cpak_cli.input.film_source import FilmSource, J2KPixels
from cpak_cli.input.held import HeldStore

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


def serve(conn: Any, memory_mb: int, hook: Hook | None, worker: int = 0) -> None:
    """Worker loop (the cage's worker number ``worker``): answer requests on ``conn`` until it
    closes."""
    import resource

    try:  # the limit counts from what the worker already maps (a forked parent's libraries)
        limit = _vm_bytes() + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):
        pass
    films: OrderedDict[str, J2KPixels] = OrderedDict()
    held = HeldStore(worker, memory_mb * 2**20 // 2)
    while True:
        try:
            req = conn.recv()
        except (EOFError, OSError):
            return
        op, path, cwd, req = req[0], req[1], req[-1], req[:-1]
        try:
            if cwd != os.getcwd():  # relative paths mean what they mean in the parent
                os.chdir(cwd)
            if hook is not None:
                hook(op, path)
            try:
                reply: Any = _answer(op, path, req, films, held)
            except MemoryError:
                if not held.drop_all():  # the held films' memory may be what this request lacked
                    raise
                reply = _answer(op, path, req, films, held)
        except MemoryError:
            reply = ("memory", None)
        except CpakInputError as exc:  # its two-argument constructor does not unpickle as an exception
            reply = ("input", (exc.path, exc.reason))
        except BaseException as exc:  # noqa: BLE001 - sent back and raised in the parent
            reply = ("error", exc)
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", None))
        except Exception as exc:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


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
