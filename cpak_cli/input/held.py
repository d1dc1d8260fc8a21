"""Films decoded in full stay in the decode worker that decoded them.

A film that cannot be decoded piecewise (anything but the JPEG 2000 films of
:mod:`cpak_cli.input.film_source`: uncompressed, JPEG lossless, RLE, lossy JPEG 2000, PNG/TIFF)
is decoded in full by :func:`cpak_cli.input.loader.open_film` in a decode worker
(:mod:`cpak_cli.input.cage`). The worker keeps that float32 film (:class:`HeldStore`, a bounded
LRU) and the parent gets a :class:`HeldFilm`: the same metadata, no pixels. What the networks read
travels instead: each crop is :func:`cpak_cli.networks.crops.sample_crop` run in the worker on the
held film (a 256 x 256 crop, not a 90 MB film), and the joint detector's input for the default
detector frame comes with the film at open time. Crops are bit-identical to those made in the
parent from the whole array.

A request for a held film goes to the worker that holds it (the cage's worker affinity). A worker
that no longer holds it (evicted from its LRU, or a new worker after the old one died) opens the
file again (:func:`cpak_cli.input.loader.load_image`: the same pixels) and holds it: same answer.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cpak_cli.input.image import LoadedImage
from cpak_cli.networks.crops import frame_size, sample_crop

if TYPE_CHECKING:
    from cpak_cli.input.cage import Cage

__all__ = ["HeldFilm", "HeldInfo", "HeldStore", "KEEP_HELD"]

#: Films one worker holds at most (least recently used dropped first); it also holds at most
#: half its memory limit of film pixels (always the newest film).
KEEP_HELD = 8


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
    """The films one decode worker (id ``worker``) holds: at most :data:`KEEP_HELD`, and at most
    ``budget`` bytes of pixels besides the newest film."""

    def __init__(self, worker: int, budget: int) -> None:
        self.worker, self.budget = worker, budget
        self.films: OrderedDict[str, LoadedImage] = OrderedDict()

    def _put(self, key: str, image: LoadedImage) -> None:
        self.films[key] = image
        self.films.move_to_end(key)
        while len(self.films) > 1 and (len(self.films) > KEEP_HELD
                                       or sum(f.pixels.nbytes for f in self.films.values()) > self.budget):
            self.films.popitem(last=False)

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
        ``(matrix, size)``: the crop, re-opening and holding the film when it is not held),
        ``"pixels"`` (the whole film; decoded again, not held, when it is not held) or
        ``"release"`` (drop it). Returns ``(this worker's id when it holds the film afterwards,
        else None, the answer)``; raises what :func:`load_image` raises, ValueError for an
        unknown action."""
        from cpak_cli.input.loader import load_image

        image = self.films.get(key)
        if action == "release":
            self.films.pop(key, None)
            return None, None
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
    Thread-safe."""

    decodes_on_demand: ClassVar[bool] = True
    _cage: Cage
    _key: str
    _worker: int
    _reload: tuple[str, Any, Any]
    _detector: tuple[np.ndarray, tuple[int, int], np.ndarray]
    _full: np.ndarray | None
    _released: bool
    _lock: threading.Lock

    def __init__(self, info: HeldInfo, cage: Cage, reload: tuple[str, Any, Any]) -> None:
        for name, value in info.meta.items():
            object.__setattr__(self, name, value)
        for name, value in (("_cage", cage), ("_key", info.key), ("_worker", info.worker), ("_reload", reload),
                            ("_detector", info.detector), ("_full", None), ("_released", False),
                            ("_lock", threading.Lock())):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"HeldFilm({self.path!r}, {self.rows}x{self.cols}, spacing {self.spacing_mm}, worker {self._worker})"

    def __reduce_ex__(self, protocol: Any) -> Any:
        """A plain :class:`LoadedImage` (``pixels`` fetched): its fields in order."""
        plain = self.with_pixels(self.pixels)
        return LoadedImage, tuple(getattr(plain, f.name) for f in fields(LoadedImage))

    def _ask(self, action: str, arg: Any = None) -> Any:
        want = None if self._released else self._worker
        worker, value = self._cage.held(self._key, self._reload, action, arg, want)
        if worker is not None:  # that worker holds the film now
            object.__setattr__(self, "_worker", worker)
            object.__setattr__(self, "_released", False)
        return value

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
        with self._lock:
            if self._full is None:
                object.__setattr__(self, "_full", self._ask("pixels"))
            return self._full  # type: ignore[return-value]

    def release(self) -> None:
        """Tell the worker to drop the film (frees its memory now); later reads still work (the
        film is opened again). Idempotent; never raises."""
        with self._lock:
            if self._released:
                return
            object.__setattr__(self, "_released", True)
        try:
            if self._cage.alive(self._worker):
                self._cage.held(self._key, self._reload, "release", None, self._worker)
        except Exception:  # noqa: BLE001 - releasing is a courtesy: the worker's LRU drops it anyway
            pass
