"""Decoders in a cage: every native pixel decode runs in a worker process with a time and a
memory limit, so a decoder that crashes, hangs or allocates without bound costs one film a
one-line :class:`~cpak_cli.errors.CpakInputError`, never the run.

A :class:`Cage` holds up to ``workers`` decode processes (started on first use, kept for the
whole run; a dead or killed one is replaced on the next request). Each worker sets
``RLIMIT_AS`` (its address space at start plus :attr:`DecodeLimits.memory_mb`) and never
imports torch; each request waits at most :attr:`DecodeLimits.seconds`, then the worker is
killed. Requests (all film paths are the parent's strings):

* :meth:`Cage.open` - :func:`cpak_cli.input.loader.open_film` in the worker: a plain
  :class:`~cpak_cli.input.image.LoadedImage` (the whole film decoded, float32), or a
  :class:`~cpak_cli.input.film_source.FilmSource` with the detector's overview decoded whose
  codestream pieces are decoded later through the cage (:class:`CagedPixels`);
* :meth:`Cage.stored` - stored values of one JPEG 2000 area (a FilmSource window);
* :meth:`Cage.load` - :func:`cpak_cli.input.loader.load_image` (a FilmSource's full decode).

Workers start with ``fork`` (about 10 ms) while the process has not imported torch and has
no other thread, else with ``forkserver`` (a clean server process, started once). A film whose
request failed a limit fails at once on later requests (no second 120 s wait).

Limits: ``CPAK_DECODE_TIMEOUT_S`` (default 120 s per request) and ``CPAK_DECODE_MEMORY_MB``
(default half of the physical memory) or :func:`configure`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cpak_cli.errors import CpakInputError
from cpak_cli.input.film_source import FilmSource, J2KPixels

__all__ = ["CagedPixels", "Cage", "DecodeLimits", "configure", "default_cage"]

#: Codestreams a worker keeps (per film) so that window requests need not resend them.
KEEP_FILMS = 8


def _physical_mb() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20)
    except (ValueError, OSError, AttributeError):
        return 8192


@dataclass(frozen=True)
class DecodeLimits:
    """Limits of one decode request: ``seconds`` of wall time (the worker is killed after it)
    and ``memory_mb`` MiB of address space the worker may add to what it had at start."""

    seconds: float = 120.0
    memory_mb: int = field(default_factory=lambda: max(_physical_mb() // 2, 512))

    @classmethod
    def from_env(cls) -> DecodeLimits:
        """Defaults, overridden by ``CPAK_DECODE_TIMEOUT_S`` / ``CPAK_DECODE_MEMORY_MB`` (a value
        that is not a positive number is ignored)."""
        out = cls()
        try:
            s = float(os.environ.get("CPAK_DECODE_TIMEOUT_S", ""))
            if s > 0:
                out = cls(s, out.memory_mb)
        except ValueError:
            pass
        try:
            m = int(os.environ.get("CPAK_DECODE_MEMORY_MB", ""))
            if m > 0:
                out = cls(out.seconds, m)
        except ValueError:
            pass
        return out


# ---------------------------------------------------------------------------------- the worker
def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


#: Test hook: a callable run in the worker before each request with (op, path) (set it on the
#: Cage; it must pickle by reference for forkserver workers).
Hook = Callable[[str, str], None]


def _serve(conn: Any, memory_mb: int, hook: Hook | None) -> None:
    """Worker loop: answer requests on ``conn`` until it closes."""
    import resource

    try:  # the limit counts from what the worker already maps (a forked parent's libraries)
        limit = _vm_bytes() + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):
        pass
    films: OrderedDict[str, J2KPixels] = OrderedDict()
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
            if op == "open":
                reply: Any = ("ok", _open(req[1], req[2], req[3], films))
            elif op == "load":
                from cpak_cli.input.loader import load_image

                reply = ("ok", load_image(path, pixel_spacing=req[2], fallback_spacing=req[3]))
            elif op == "stored":
                key, plain, level, area, check = req[2:]
                if plain is not None:
                    films[key] = plain
                if key not in films:
                    reply = ("need", None)
                else:
                    films.move_to_end(key)
                    while len(films) > KEEP_FILMS:
                        films.popitem(last=False)[1].release()
                    reply = ("ok", films[key].stored(level, area, check))
            else:
                reply = ("error", ValueError(f"unknown request {op!r}"))
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


def _open(path: str, pixel_spacing: Any, fallback_spacing: Any, films: OrderedDict[str, J2KPixels]) -> Any:
    from cpak_cli.input.loader import open_film
    from cpak_cli.networks.detector import prefetch_overview

    image = open_film(path, pixel_spacing=pixel_spacing, fallback_spacing=fallback_spacing)
    if isinstance(image, FilmSource):
        prefetch_overview(image)
        plain = image._src
        caged = CagedPixels(plain)
        caged.path = path
        films[caged.key] = plain
        while len(films) > KEEP_FILMS:
            films.popitem(last=False)[1].release()
        object.__setattr__(image, "_src", caged)
    return image


# ---------------------------------------------------------------------------------- the parent
class _Worker:
    def __init__(self, ctx: Any, limits: DecodeLimits, hook: Hook | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, limits.memory_mb, hook), daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        except (OSError, ValueError, AttributeError):
            pass
        self.conn.close()


def _start_method() -> str:
    """``fork`` while it is safe (no torch, one thread), else ``forkserver``."""
    if "torch" in sys.modules or threading.active_count() > 1:
        return "forkserver"
    return "fork"


class Cage:
    """Up to ``workers`` caged decode processes shared by threads (see the module docstring).
    ``start_method`` None picks fork/forkserver per start; ``hook`` is the test hook."""

    def __init__(self, limits: DecodeLimits | None = None, workers: int = 1, start_method: str | None = None,
                 hook: Hook | None = None) -> None:
        self.limits = limits or DecodeLimits.from_env()
        self.workers, self.start_method, self.hook = max(1, workers), start_method, hook
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()
        self._failed: dict[str, str] = {}

    def ensure(self, workers: int) -> None:
        """Allow at least ``workers`` processes and start the missing ones now (cheap with fork
        before torch is imported)."""
        with self._cond:
            self.workers = max(self.workers, workers)
            while self._count < self.workers:
                self._idle.append(self._spawn())
                self._count += 1
            self._cond.notify_all()

    def _spawn(self) -> _Worker:
        import multiprocessing as mp

        return _Worker(mp.get_context(self.start_method or _start_method()), self.limits, self.hook)

    def _take(self) -> _Worker:
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._count < self.workers:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _give(self, w: _Worker | None) -> None:
        with self._cond:
            if w is None:
                self._count -= 1
            else:
                self._idle.append(w)
            self._cond.notify()

    def close(self) -> None:
        """Stop the idle workers (busy ones stop when their request ends and the cage is gone)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.kill()

    def _call(self, path: str, req: tuple[Any, ...], film: str | None = None) -> Any:
        film = film or path
        if film in self._failed:
            raise CpakInputError(path, self._failed[film])
        w = self._take()
        reason = None
        try:
            w.conn.send(req + (os.getcwd(),))
            if not w.conn.poll(self.limits.seconds):
                reason = (f"the decoder took longer than {self.limits.seconds:g} s on this file "
                          "(time limit, CPAK_DECODE_TIMEOUT_S)")
            else:
                kind, value = w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(5)
            code = w.proc.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            reason = f"the decoder crashed on this file (decode worker {how})"
        except BaseException:  # a reply that does not unpickle, an interrupt: the worker is not reused
            w.kill()
            self._give(None)
            raise
        if reason is not None:
            w.kill()
            self._give(None)
            self._failed[film] = reason
            raise CpakInputError(path, reason)
        self._give(w)
        if kind == "memory":
            reason = (f"the decoder needed more than {self.limits.memory_mb} MB on this file "
                      "(memory limit, CPAK_DECODE_MEMORY_MB)")
            self._failed[film] = reason
            raise CpakInputError(path, reason)
        if kind == "input":
            raise CpakInputError(*value)
        if kind == "error":
            raise value
        return value if kind == "ok" else _NEED

    # ------------------------------------------------------------------ requests
    def open(self, path: str, pixel_spacing: Any = None, fallback_spacing: Any = None) -> Any:
        """:func:`cpak_cli.input.loader.open_film` in a worker (same errors, plus the cage's)."""
        return self._call(str(path), ("open", str(path), pixel_spacing, fallback_spacing))

    def load(self, path: str, pixel_spacing: Any = None, fallback_spacing: Any = None) -> Any:
        """:func:`cpak_cli.input.loader.load_image` in a worker (same errors, plus the cage's)."""
        return self._call(str(path), ("load", str(path), pixel_spacing, fallback_spacing))

    def stored(self, pixels: CagedPixels, level: int, area: Any, check_constant: bool) -> np.ndarray:
        """:meth:`J2KPixels.stored` of a caged film in a worker (the codestream is sent when the
        worker does not hold it)."""
        req = ("stored", pixels.path, pixels.key, None, level, area, check_constant)
        out = self._call(pixels.path, req, pixels.key)
        if out is _NEED:
            out = self._call(pixels.path, req[:3] + (pixels.plain(),) + req[4:], pixels.key)
        return out


_NEED = object()


class CagedPixels(J2KPixels):
    """A :class:`J2KPixels` whose pieces are decoded in the process's :func:`default_cage`
    (wherever it is unpickled). ``key`` names the film in the workers; ``path`` is set by the
    parent for error lines."""

    def __init__(self, plain: J2KPixels) -> None:
        super().__init__(plain.codestream, plain.shape, plain.levels, plain.dtype, plain.unit_map, plain.reuse)
        self.key = uuid.uuid4().hex
        self.path = ""

    def plain(self) -> J2KPixels:
        return J2KPixels(self.codestream, self.shape, self.levels, self.dtype, self.unit_map, self.reuse)

    def stored(self, level: int = 0, area: tuple[int, int, int, int] | None = None,
               check_constant: bool = True) -> np.ndarray:
        return default_cage().stored(self, level, area, check_constant)

    def load_full(self, path: str, pixel_spacing: Any, fallback_spacing: Any) -> Any:
        return default_cage().load(path, pixel_spacing, fallback_spacing)

    def release(self) -> None:
        pass


_DEFAULT: Cage | None = None
_DEFAULT_LOCK = threading.Lock()


def default_cage() -> Cage:
    """The process's cage (limits from the environment), made on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Cage()
        return _DEFAULT


def configure(cage: Cage | None) -> Cage | None:
    """Make ``cage`` the process's cage (None: a new default one on next use); returns the old
    one (not closed)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        old, _DEFAULT = _DEFAULT, cage
        return old


def open_caged(path: str | os.PathLike[str], pixel_spacing: Any = None, fallback_spacing: Any = None) -> Any:
    """:func:`cpak_cli.input.loader.open_film` through :func:`default_cage`: same result (a
    FilmSource's later pieces and full decode also go through the cage), same errors, and a
    one-line CpakInputError when the decoder crashes, hangs or exceeds its memory."""
    return default_cage().open(str(path), pixel_spacing, fallback_spacing)
