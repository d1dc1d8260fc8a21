"""Films decoded in full stay in the decode worker that decoded them.

A film that cannot be decoded piecewise (anything but the JPEG 2000 films of
:mod:`cpak_cli.input.film_source`: uncompressed, JPEG lossless, RLE, lossy JPEG 2000, PNG/TIFF)
is decoded in full by :func:`cpak_cli.input.loader.open_film` in a decode worker
(:mod:`cpak_cli.input.cage`). The worker keeps that float32 film (:class:`HeldStore`, an LRU
bounded by memory) and the parent gets a :class:`HeldFilm`: the same metadata, no pixels. What the networks read
travels instead: each crop is :func:`cpak_cli.networks.crops.sample_crop` run in the worker on the
held film (a 256 x 256 crop, not a 90 MB film), and the joint detector's input for the default
detector frame comes with the film at open time. Crops are bit-identical to those made in the
parent from the whole array.

A request for a held film goes to the worker that holds it (the cage's worker affinity). A worker
keeps a film until the parent releases it (:meth:`HeldFilm.release`, also when the HeldFilm is
garbage-collected): the drop travels with the next request to that worker, so a release never
waits. Only when its held pixels exceed :data:`HELD_SHARE` of its memory limit does a worker drop
films before their release (least recently used first, never the newest). A worker that no longer
holds a film (dropped, or its worker died and another answers) opens the file again
(:func:`cpak_cli.input.loader.load_image`: the same pixels) and holds it: same answer; one
thread does that while the others wait for it, so a film is decoded again once, not once per
crop thread.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import numpy as np

from cpak_cli.input.image import LoadedImage
from cpak_cli.networks.crops import frame_size, sample_crop

if TYPE_CHECKING:
    from cpak_cli.input.cage import Cage

__all__ = ["HELD_SHARE", "HeldFilm", "HeldInfo", "HeldStore", "WorkerGone"]

#: Share of a worker's memory limit (:attr:`cpak_cli.input.cage.DecodeLimits.memory_mb`) that its
#: held films' pixels may take (the newest film is kept even when it alone takes more); only
#: beyond it are films dropped before they are released (least recently used first).
HELD_SHARE = 0.5


class WorkerGone(Exception):
    """The decode worker named for a held film's request is gone (died, killed, closed)."""


@dataclass(frozen=True)
class HeldInfo:
    """What a worker sends for a film it holds (no pixels): the :class:`LoadedImage` fields but
    ``pixels`` (``meta``; rows/cols of the held array), the film's ``key`` in the worker, the
    worker's id, and the detector input ``(matrix, (width, height), crop)`` of the default
    detector frame (:func:`cpak_cli.networks.detector.detector_frame`), float32."""

    meta: dict[str, Any]
    key: str
    worker: int
    detector: tuple[np.ndarray, tuple[int, int], np.ndarray]


# ---------------------------------------------------------------------------------- the worker
class HeldStore:
    """The films one decode worker (id ``worker``) holds, until the parent releases them: at most
    ``budget`` bytes of pixels (beyond it the least recently used are dropped), or the newest
    film alone when it is larger."""

    def __init__(self, worker: int, budget: int) -> None:
        self.worker, self.budget = worker, budget
        self.films: OrderedDict[str, LoadedImage] = OrderedDict()

    def _put(self, key: str, image: LoadedImage) -> None:
        self.films[key] = image
        self.films.move_to_end(key)
        while len(self.films) > 1 and sum(f.pixels.nbytes for f in self.films.values()) > self.budget:
            self.films.popitem(last=False)

    def drop(self, keys: Iterable[str]) -> None:
        """Drop the films ``keys`` (released by the parent; a key not held is ignored)."""
        for key in keys:
            self.films.pop(key, None)

    def drop_all(self) -> bool:
        """Drop every held film (their memory is freed); whether there was any."""
        had = bool(self.films)
        self.films.clear()
        return had

    def hold(self, image: LoadedImage) -> HeldInfo:
        """Keep ``image`` (a fully decoded film) under a new key; its :class:`HeldInfo`."""
        from cpak_cli.networks.detector import detector_frame

        key = uuid.uuid4().hex
        rows, cols = image.pixels.shape
        frame = detector_frame((rows, cols), image.spacing_mm, image.patient_right_on_image_left)
        size = (frame.width, frame.height)
        crop = sample_crop(image.pixels, frame.matrix, size)
        self._put(key, image)
        meta = dict(image.meta(), rows=int(rows), cols=int(cols))
        return HeldInfo(meta, key, self.worker, (frame.matrix, size, crop))

    def answer(self, key: str, path: str, pixel_spacing: Any, fallback_spacing: Any, action: str,
               arg: Any) -> tuple[int | None, Any]:
        """One request about the film ``key`` (of ``path``): ``"sample"`` (``arg`` =
        ``(matrix, size)``: the crop, re-opening and holding the film when it is not held) or
        ``"pixels"`` (the whole film; decoded again, not held, when it is not held). Returns
        ``(this worker's id when it holds the film afterwards, else None, the answer)``; raises
        what :func:`load_image` raises, ValueError for an unknown action."""
        from cpak_cli.input.loader import load_image

        image = self.films.get(key)
        if action == "pixels":
            if image is None:
                return None, load_image(path, pixel_spacing=pixel_spacing, fallback_spacing=fallback_spacing).pixels
            return self.worker, image.pixels
        if action != "sample":
            raise ValueError(f"unknown held-film request {action!r}")
        if image is None:
            image = load_image(path, pixel_spacing=pixel_spacing, fallback_spacing=fallback_spacing)
        self._put(key, image)
        matrix, size = arg
        return self.worker, sample_crop(image.pixels, matrix, size)


# ---------------------------------------------------------------------------------- the parent
class HeldFilm(LoadedImage):
    """A :class:`LoadedImage` whose pixels stay in the decode worker that decoded it (see the
    module docstring); made by :meth:`cpak_cli.input.cage.Cage.open`. ``pixels`` are fetched
    from the cage on first read (overlays, reports) and kept. Pickles as a plain
    :class:`LoadedImage` with its pixels (fetched): the worker is not reachable elsewhere.
    Thread-safe: a film whose worker is gone, or that was released, is opened again by one
    thread in one worker while the others wait for it."""

    decodes_on_demand: ClassVar[bool] = True
    _cage: Cage
    _key: str
    _worker: int  # the worker that holds the film (while not _released)
    _reload: tuple[str, Any, Any]
    _detector: tuple[np.ndarray, tuple[int, int], np.ndarray]
    _full: np.ndarray | None
    _released: bool
    _gen: int  # releases so far: an answer to a request made before a release does not undo it
    _lock: threading.Lock  # _worker, _released, _gen
    _rehold: threading.Lock  # one thread at a time opens the film again
    _fetch: threading.Lock  # one thread fetches the pixels

    def __init__(self, info: HeldInfo, cage: Cage, reload: tuple[str, Any, Any]) -> None:
        for name, value in info.meta.items():
            object.__setattr__(self, name, value)
        for name, value in (("_cage", cage), ("_key", info.key), ("_worker", info.worker), ("_reload", reload),
                            ("_detector", info.detector), ("_full", None), ("_released", False), ("_gen", 0),
                            ("_lock", threading.Lock()), ("_rehold", threading.Lock()), ("_fetch", threading.Lock())):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"HeldFilm({self.path!r}, {self.rows}x{self.cols}, spacing {self.spacing_mm}, worker {self._worker})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        """A plain :class:`LoadedImage` (``pixels`` fetched): its fields in order."""
        plain = self.with_pixels(self.pixels)
        return LoadedImage, tuple(getattr(plain, f.name) for f in fields(LoadedImage))

    def __del__(self) -> None:
        self.release()  # a film nobody can read any more need not stay in its worker

    def _ask(self, action: str, arg: Any = None) -> Any:
        """The answer to ``action`` (:meth:`HeldStore.answer`) from the worker that holds the
        film; when that worker is gone or the film was released, one thread at a time asks any
        worker (which opens the file again and holds the film), and a thread that waited for it
        asks the worker that now holds it. Raises what :meth:`Cage.held` raises."""
        while True:
            with self._lock:
                gen, want = self._gen, None if self._released else self._worker
            if want is not None:
                try:
                    worker, value = self._cage.held(self._key, self._reload, action, arg, want)
                except WorkerGone:
                    pass
                else:
                    self._settle(gen, worker)
                    return value
            with self._rehold:
                with self._lock:
                    gen, moved = self._gen, not self._released and self._worker != want
                if moved:  # held again by another thread meanwhile: ask that worker
                    continue
                worker, value = self._cage.held(self._key, self._reload, action, arg, None)
                self._settle(gen, worker)
                return value

    def _settle(self, gen: int, worker: int | None) -> None:
        """Record that ``worker`` (None: no worker) holds the film after a request made at
        release generation ``gen``; a release since then wins (that worker is told to drop it,
        unless the film was held there again since)."""
        if worker is None:
            return
        with self._lock:
            current = self._gen == gen
            if current:
                object.__setattr__(self, "_worker", worker)
                object.__setattr__(self, "_released", False)
            stale = not current and (self._released or self._worker != worker)
        if stale:
            self._cage.drop_held(worker, self._key)

    def sample(self, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
        """:func:`cpak_cli.networks.crops.sample_crop` of the whole film (float32 ``(height,
        width)``): the detector input sent at open time when ``matrix`` and ``size`` are its
        frame's, the crop from the fetched pixels once they are here, else made in the worker.
        Raises CpakInputError (the cage's errors, or the file's when it is opened again)."""
        m = np.asarray(matrix, dtype=np.float64)
        dm, dsize, crop = self._detector
        if frame_size(size) == dsize and np.array_equal(m, dm):
            return crop.copy()
        full = self._full
        if full is not None:
            return sample_crop(full, m, size)
        out: np.ndarray = self._ask("sample", (m, size))
        return out

    @property
    def pixels(self) -> np.ndarray:
        """The whole film, float32 ``[0, 1]`` head-up, fetched from the cage on first read (from
        the worker that holds it, else decoded again there); raises CpakInputError."""
        with self._fetch:
            if self._full is None:
                object.__setattr__(self, "_full", self._ask("pixels"))
            return self._full  # type: ignore[return-value]

    def release(self) -> None:
        """Let the worker drop the film: the drop is sent with the next request to that worker
        (:meth:`Cage.drop_held`), so this never waits for a busy worker. Later reads still work
        (the film is opened again). Idempotent; never raises."""
        try:
            with self._lock:
                if self._released:
                    return
                object.__setattr__(self, "_released", True)
                object.__setattr__(self, "_gen", self._gen + 1)
                worker = self._worker
            self._cage.drop_held(worker, self._key)
        except Exception:  # noqa: BLE001 - releasing is a courtesy (also from __del__, at exit)
            pass
