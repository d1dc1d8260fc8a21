"""Decoders in a cage: every native pixel decode runs in a worker process with a time and a
memory limit, so a decoder that crashes, hangs or allocates without bound costs one film a
one-line :class:`~cpak_cli.errors.CpakInputError`, never the run.

A :class:`Cage` holds up to ``workers`` decode processes (started on first use, kept for the
whole run; a dead or killed one is replaced on the next request). Each worker
(:func:`cpak_cli.input.cage_worker.serve`) loads what decoding and crops use (pydicom, the
loader, OpenCV), then sets ``RLIMIT_AS`` (its address space then plus
:attr:`DecodeLimits.memory_mb`), and never imports torch; each request waits at most
:attr:`DecodeLimits.seconds`, then the worker is killed. Requests (all film paths are the
parent's strings):

* :meth:`Cage.open` - :func:`cpak_cli.input.loader.open_film` in the worker: a
  :class:`~cpak_cli.input.film_source.FilmSource` with the detector's overview decoded whose
  codestream pieces are decoded later through the cage (:class:`CagedPixels`), or, for a film
  decoded in full, a :class:`~cpak_cli.input.held.HeldFilm` (the worker keeps the float32 film;
  the parent gets its metadata and the detector's input, not its pixels);
* :meth:`Cage.stored` - stored values of one JPEG 2000 area (a FilmSource window);
* :meth:`Cage.held` - a crop of a held film or its whole pixels (an overlay), in the worker that
  holds it (worker affinity; another worker opens the file again); a released film is dropped
  with the next request to its worker (:meth:`Cage.drop_held`);
* :meth:`Cage.load` - :func:`cpak_cli.input.loader.load_image` (a FilmSource's full decode).

A whole float32 film crosses the pipe only when something reads its ``pixels``. Workers start
with ``fork`` (about 10 ms) while the process has not imported torch and has no other thread,
else with ``forkserver`` (a clean server process, started once). A film whose request failed a
limit fails at once on later requests (no second 120 s wait).

Limits: ``CPAK_DECODE_TIMEOUT_S`` (default 120 s per request) and ``CPAK_DECODE_MEMORY_MB``
(default half of the physical memory) or :func:`configure`. A worker keeps the films it holds
until they are released; their pixels take at most :data:`~cpak_cli.input.held.HELD_SHARE`
(half) of its memory limit (the newest film is kept even when it alone takes more; beyond that
the least recently used go first). A request that runs out of memory
(``MemoryError``, the loader's :class:`~cpak_cli.errors.CpakMemoryError`, OpenCV's) while the
worker holds films drops them all and runs once more; if it runs out again the film fails the
memory limit.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cpak_cli.errors import CpakInputError
from cpak_cli.input.cage_worker import Hook, serve
from cpak_cli.input.held import HeldFilm, HeldInfo, WorkerGone
from cpak_cli.input.j2k_pixels import J2KPixels

__all__ = ["CagedPixels", "Cage", "DecodeLimits", "configure", "default_cage"]


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


# ---------------------------------------------------------------------------------- the parent
class _Worker:
    def __init__(self, ctx: Any, limits: DecodeLimits, hook: Hook | None, wid: int) -> None:
        self.wid = wid  # the cage's number for this worker (held films name the worker holding them)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, limits.memory_mb, hook, wid), daemon=True)
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
        self._alive: set[int] = set()  # ids of the started workers not known dead
        self._waiting: Counter[int] = Counter()  # threads waiting for one worker, by its id
        self._drops: dict[int, list[str]] = {}  # held films released, to drop with the next request, by worker id
        self._ids = itertools.count(1)
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

        wid = next(self._ids)  # atomic
        w = _Worker(mp.get_context(self.start_method or _start_method()), self.limits, self.hook, wid)
        with self._cond:
            self._alive.add(wid)
        return w

    def drop_held(self, wid: int, key: str) -> None:
        """Have worker ``wid`` drop the held film ``key``: sent with the next request to that
        worker (nothing when the worker is gone). Never waits for a busy worker."""
        with self._cond:
            if wid in self._alive:
                self._drops.setdefault(wid, []).append(key)

    def drop_everywhere(self, key: str) -> None:
        """Have every running worker drop film ``key`` (a released JPEG 2000 film whose pieces
        any worker may have decoded) with its next request. Never waits for a busy worker."""
        with self._cond:
            for wid in self._alive:
                self._drops.setdefault(wid, []).append(key)

    def _take(self, want: int | None = None) -> tuple[_Worker, list[str]]:
        """An idle worker and the held films it is to drop first: worker ``want`` (waiting for
        it; WorkerGone when it is not alive, or dies meanwhile), else any that no thread waits
        for (a new one when fewer than ``workers`` run). An idle worker found dead is dropped."""
        with self._cond:
            while True:
                if want is not None:
                    if want not in self._alive:
                        raise WorkerGone(want)
                    pick = next((w for w in self._idle if w.wid == want), None)
                else:  # a worker that threads wait for (its held films' crops) goes to them first
                    pick = next((w for w in reversed(self._idle) if not self._waiting[w.wid]), None)
                    if pick is None and self._count < self.workers:
                        self._count += 1
                        break
                if pick is not None:
                    self._idle.remove(pick)
                    if pick.proc.is_alive():
                        return pick, self._drops.pop(pick.wid, [])
                    self._drop(pick)  # died while idle (killed from outside): not this request's fault
                    pick.kill()
                    continue
                if want is not None:
                    self._waiting[want] += 1
                try:
                    self._cond.wait()
                finally:
                    if want is not None:
                        self._waiting[want] -= 1
        try:
            return self._spawn(), []
        except BaseException:
            self._drop(None)
            raise

    def _give(self, w: _Worker) -> None:
        with self._cond:
            self._idle.append(w)
            self._cond.notify_all()  # a thread may wait for this very worker

    def _forget(self, w: _Worker) -> None:
        """A worker's bookkeeping gone (under ``_cond``)."""
        self._alive.discard(w.wid)
        self._drops.pop(w.wid, None)

    def _drop(self, w: _Worker | None) -> None:
        """Count a worker (None: one that did not start) as gone."""
        with self._cond:
            self._count -= 1
            if w is not None:
                self._forget(w)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the idle workers (busy ones stop when their request ends and the cage is gone)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            for w in idle:
                self._forget(w)
        for w in idle:
            w.kill()

    def _call(self, path: str, req: tuple[Any, ...], film: str | None = None, want: int | None = None) -> Any:
        film = film or path
        if film in self._failed:
            raise CpakInputError(path, self._failed[film])
        w, drops = self._take(want)
        reason = None
        try:
            w.conn.send(req + (drops, os.getcwd()))
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
            self._drop(w)
            raise
        if reason is not None:
            w.kill()
            self._drop(w)
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
        """:func:`cpak_cli.input.loader.open_film` in a worker (same errors, plus the cage's); a
        film decoded in full stays in that worker and comes back as a :class:`HeldFilm`."""
        out = self._call(str(path), ("open", str(path), pixel_spacing, fallback_spacing))
        if isinstance(out, HeldInfo):
            return HeldFilm(out, self, (str(path), pixel_spacing, fallback_spacing))
        return out

    def held(self, key: str, reload: tuple[str, Any, Any], action: str, arg: Any = None,
             want: int | None = None) -> tuple[int | None, Any]:
        """:meth:`cpak_cli.input.held.HeldStore.answer` for the held film ``key`` (``reload`` =
        its path and spacing arguments) in worker ``want`` (None: any worker, which opens the
        file again for a crop): ``(the worker that holds the film afterwards or None, the
        answer)``. Raises :class:`~cpak_cli.input.held.WorkerGone` when worker ``want`` is gone,
        the cage's CpakInputError (crash, time or memory limit; the file's errors when it is
        opened again), and whatever else the worker raised (e.g. ValueError for an unknown
        action)."""
        path = reload[0]
        return self._call(path, ("held", path, key, reload[1], reload[2], action, arg), key, want)

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
        """Have every decode worker drop this film's codestream and decoders with its next
        request (their memory is then reused for the next films); a later piece sends the
        codestream again. Never waits."""
        default_cage().drop_everywhere(self.key)


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
