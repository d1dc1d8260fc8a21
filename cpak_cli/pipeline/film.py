"""The measurement pipeline: image -> joint boxes -> landmarks -> angles, CPAK and flags.

:class:`Measurer` loads the models once and measures one or many images; crops of several
images that share a model go through it in one batch. All coordinates follow
docs/conventions.md (pixel ``(x, y)``, spacing ``(row_mm, col_mm)``, patient sides).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cpak_cli.core.landmarks import JOINTS, SIDES
from cpak_cli.core.measurement import FLAG_JOINT_DISAGREEMENT, FLAG_LATERALITY
from cpak_cli.errors import CpakModelError
from cpak_cli.input.boxes import Box, BoxFile
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.loader import LoadedImage
from cpak_cli.networks.inference import CropJob, JointModel, detect_landmarks, landmark_jobs, make_crops
from cpak_cli.pipeline.joint_checks import DISAGREEMENT_MM, RECENTRE_MIN_SHIFT_MM, joint_disagreements, recentred_boxes  # noqa: F401 - the limits are part of this module's interface
from cpak_cli.pipeline.result import ScanResult, assemble_leg, scan_flags, untype
from cpak_cli.pipeline.result import film_shape as _shape

__all__ = ["Measurer", "StartedGroup", "ScanResult", "DetectorModel", "DetectedBoxes", "assemble_leg", "scan_flags",
           "untype", "DEFAULT_MIN_CONFIDENCE"]

DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass
class DetectorModel:
    """The joint detector network and its input frame size."""

    module: Any
    width: int
    height: int
    name: str = "detector"
    card: dict[str, Any] = field(default_factory=dict)


def _view(image: LoadedImage) -> Any:
    """What the networks read: an image that :attr:`~LoadedImage.decodes_on_demand` itself (a
    :class:`FilmSource`'s overview and windows, a held film's crops made in its decode worker),
    else the pixel array."""
    return image if image.decodes_on_demand else image.pixels


class DetectedBoxes(dict):
    """Detector boxes ``{side: {joint: Box}}`` with the film decision (``film``:
    :class:`cpak_cli.networks.detector.FilmDetections`) they came from."""

    def __init__(self, boxes: Mapping[str, Mapping[str, Box]], film: Any = None) -> None:
        super().__init__({s: dict(j) for s, j in boxes.items()})
        self.film = film


@dataclass
class StartedGroup:
    """Films whose joint boxes are known and whose crops are being made
    (:meth:`Measurer.start`); :meth:`Measurer.finish` measures them."""

    images: list[LoadedImage]
    box_files: list[BoxFile | None]
    all_boxes: list[dict[str, dict[str, Box]]]
    sources: list[str]  # per image: "detector" or "file"
    jobs: dict[str, list[CropJob]]  # cpak_cli.networks.inference.landmark_jobs(all_boxes, ...)
    crops: Future  # {joint: [crop, ...]} of ``jobs``

    def cancel(self) -> None:
        """Stop the crops: cancelled when not started yet, else waited for (errors ignored).
        Never raises."""
        self.crops.cancel()
        try:
            self.crops.exception()
        except BaseException:  # noqa: BLE001 - cancelled, or interrupted again: nothing more to do
            pass


class Measurer:
    """Loads the landmark models (and the joint detector) once; measures images.

    ``models`` / ``detector`` may be given directly (tests, notebooks); otherwise they are loaded
    from ``weights_dir`` (see :func:`cpak_cli.networks.model_cards.weights_dir`). With ``recentre`` (default),
    detector boxes whose joint the landmarks place off-centre are moved onto it and that joint is
    measured again (:func:`recentred_boxes`); boxes from a file are used as given.
    """

    def __init__(
        self,
        weights_dir: str | Path | None = None,
        device: str = "auto",
        method: int = 3,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        models: Mapping[str, JointModel] | None = None,
        detector: DetectorModel | None = None,
        need_detector: bool = True,
        batch_size: int = 16,
        recentre: bool = True,
    ) -> None:
        from cpak_cli.networks.models import resolve_device

        self.device = resolve_device(device)
        self.method = method
        self.min_confidence = min_confidence
        self.batch_size = batch_size
        self.recentre = recentre
        self.weights_dir = weights_dir
        self.models: dict[str, JointModel] = dict(models) if models is not None else self._load_joint_models()
        self.detector = detector
        self._crop_thread: ThreadPoolExecutor | None = None
        if self.detector is None and need_detector:
            self.detector = self._load_detector()

    # ------------------------------------------------------------------ loading
    def _load_joint_models(self) -> dict[str, JointModel]:
        from cpak_cli.networks.model_cards import load_model

        out = {}
        for joint in JOINTS:
            module, card = load_model(joint, self.weights_dir, self.device)
            cfg = card["config"]
            out[joint] = JointModel(module, joint, tuple(cfg.landmarks), cfg.input_size, card.get("name", joint), card,
                                    cfg.input_norm)
        return out

    def _load_detector(self) -> DetectorModel:
        from cpak_cli.networks.model_cards import load_model

        module, card = load_model("detector", self.weights_dir, self.device)
        cfg = card["config"]
        width = int(getattr(cfg, "input_width", 0) or cfg.input_size)
        return DetectorModel(module, width, cfg.input_size, card.get("name", "detector"), card)

    def model_versions(self) -> dict[str, str]:
        out = {j: f"{m.name}@{str(m.card.get('sha256', ''))[:12]}" for j, m in self.models.items()}
        if self.detector is not None:
            out["detector"] = f"{self.detector.name}@{str(self.detector.card.get('sha256', ''))[:12]}"
        return out

    # ------------------------------------------------------------------ measuring
    def detect_boxes(self, images: Sequence[LoadedImage]) -> list[dict[str, dict[str, Box]]]:
        """Joint boxes per image from the detector (one batch for all images).

        The image decides which legs it shows and which side each is
        (:func:`cpak_cli.networks.detector.decode_film`); the film's ImageLaterality is only checked
        against it. Each returned dict is a :class:`DetectedBoxes` whose ``film`` holds that
        decision: per leg, the ``laterality_conflict`` / ``implausible_geometry`` (joint chain)
        problems :meth:`measure_images` attaches (each leg with one loses its CPAK type)."""
        from cpak_cli.networks.detector import boxes_from_detections, decode_film, detector_frame, detector_input
        from cpak_cli.networks.models import predict

        if self.detector is None:
            raise CpakModelError(
                "no joint detector loaded; pass --boxes or install the detector weights (cpak_cli/weights/detector)"
            )
        det = self.detector
        frames = [detector_frame(_shape(im), im.spacing_mm, im.patient_right_on_image_left, det.width, det.height)
                  for im in images]
        inputs = np.stack([detector_input(_view(im), f) for im, f in zip(images, frames)])
        probs = predict(det.module, inputs, device=self.device, batch_size=self.batch_size)
        out: list[dict[str, dict[str, Box]]] = []
        for im, f, p in zip(images, frames, probs):
            film = decode_film(p, f, im.spacing_mm, getattr(im, "laterality", None),
                               film_width_mm=float(_shape(im)[1] * im.spacing_mm[1]))
            out.append(DetectedBoxes(boxes_from_detections(film.joints), film=film))
        return out

    def measure_images(
        self, images: Sequence[LoadedImage], boxes: Sequence[BoxFile | None] | None = None, release: bool = True,
    ) -> list[ScanResult]:
        """Measure several loaded images; crops that share a model share forward passes
        (:meth:`start` then :meth:`finish`, which releases the images unless ``release`` is
        False).

        An image from :func:`cpak_cli.input.loader.open_film` (a :class:`FilmSource`) is read
        through its overview and windows; when none of its windows proved the VOI window the
        loader would pick (:meth:`FilmSource.confirm_voi`), it is decoded in full and, if the
        loader picks another mapping, measured again from the full decode."""
        return self.finish(self.start(images, boxes), release)

    def start(self, images: Sequence[LoadedImage], boxes: Sequence[BoxFile | None] | None = None) -> StartedGroup:
        """First half of :meth:`measure_images`: the joint boxes (the detector, in this thread,
        for images without ``boxes``) and the crops, which are made in a background thread, so
        that a caller can run :meth:`finish` of an earlier group (its networks) while this
        group's windows decode. Raises what :meth:`detect_boxes` raises; crop errors surface in
        :meth:`finish`."""
        from cpak_cli.pipeline.gpu_decode import gpu_decode  # optional: JPEG 2000 films decoded on the GPU

        images = list(images)
        gpu_decode(images, self.device)
        box_files: list[BoxFile | None] = list(boxes) if boxes is not None else [None] * len(images)
        need = [i for i, b in enumerate(box_files) if b is None]
        detected = self.detect_boxes([images[i] for i in need]) if need else []
        all_boxes: list[dict[str, dict[str, Box]]] = []
        sources = []
        it = iter(detected)
        for b in box_files:
            if b is None:
                all_boxes.append(next(it))
                sources.append("detector")
            else:
                all_boxes.append({s: dict(j) for s, j in b.boxes.items()})
                sources.append("file")
        jobs = landmark_jobs(all_boxes, self.models, [im.patient_right_on_image_left for im in images])
        crops = self._background().submit(make_crops, [_view(im) for im in images], jobs, self.models)
        return StartedGroup(images, box_files, all_boxes, sources, jobs, crops)

    def finish(self, group: StartedGroup, release: bool = True) -> list[ScanResult]:
        """Second half of :meth:`measure_images` for a group from :meth:`start`: the landmark
        networks, re-centred boxes, the legs and their flags; a lazily decoded film whose VOI
        choice its windows did not prove is decoded in full and, if needed, measured again.
        With ``release`` (default) the images that decode on demand are released at the end,
        also on error (a FilmSource's kept decoders, a held film in its decode worker); a
        caller that reads their ``pixels`` afterwards (overlays, thumbnails) passes False and
        calls ``release()`` itself after. Raises what decoding a crop raised
        (:class:`~cpak_cli.errors.CpakInputError` for a film whose decoder failed)."""
        images = group.images
        try:
            results = self._results(group)
            redo = [i for i, im in enumerate(images) if isinstance(im, FilmSource) and not im.confirm_voi()]
            if redo:
                # released with the others below
                again = self.finish(self.start([images[i] for i in redo], [group.box_files[i] for i in redo]), False)
                for i, res in zip(redo, again):
                    results[i] = res
        finally:
            group.cancel()  # after an error: no crop still reads the films released below
            for im in images if release else ():
                im.release()  # a FilmSource's decoders, a held film in its decode worker; else nothing
        return results

    def _background(self) -> ThreadPoolExecutor:
        """The one thread that makes crops while the caller goes on (:meth:`start`)."""
        if self._crop_thread is None:
            self._crop_thread = ThreadPoolExecutor(1, thread_name_prefix="cpak-crops")
        return self._crop_thread

    def _results(self, group: StartedGroup) -> list[ScanResult]:
        images, all_boxes, sources = group.images, group.all_boxes, group.sources
        spacings = [im.spacing_mm for im in images]
        orientations = [im.patient_right_on_image_left for im in images]
        preds = detect_landmarks([_view(im) for im in images], all_boxes, spacings, self.models, orientations=orientations,
                                 method=self.method, device=self.device, batch_size=self.batch_size,
                                 crops=group.crops.result(), jobs=group.jobs)
        detected_boxes = [{s: dict(j) for s, j in bx.items()} if src == "detector" else None
                          for bx, src in zip(all_boxes, sources)]
        if self.recentre:
            moved = [recentred_boxes(bx, pr, im.spacing_mm) if src == "detector" else {}
                     for bx, pr, im, src in zip(all_boxes, preds, images, sources)]
            if any(moved):
                again = detect_landmarks(
                    [_view(im) for im in images], moved, spacings, self.models,
                    orientations=orientations, method=self.method, device=self.device, batch_size=self.batch_size,
                )
                for bx, pr, mv, ag in zip(all_boxes, preds, moved, again):
                    for side, joints in mv.items():
                        bx[side].update(joints)
                        pr.setdefault(side, {}).update(ag.get(side, {}))
        versions = self.model_versions()
        results = []
        for im, bx, src, pr, det in zip(images, all_boxes, sources, preds, detected_boxes):
            res = ScanResult(path=im.path, image=im, landmarks=pr, boxes=bx, box_source=src, models=versions)
            res.scan_flags, res.notes = scan_flags(im)
            film = getattr(bx, "film", None)
            if film is not None:
                res.notes.extend(film.notes)
                if film.laterality_conflict:
                    res.scan_flags.append(FLAG_LATERALITY)
            for side in SIDES:
                joints_found = set(bx.get(side, {}))
                if not joints_found:
                    continue
                missing = [j for j in JOINTS if j not in joints_found]
                leg = assemble_leg(side, pr.get(side, {}), im, missing, self.min_confidence)
                if det is not None:
                    problems = joint_disagreements(det.get(side, {}), pr.get(side, {}), im.spacing_mm)
                    if problems:
                        leg.flags.append(FLAG_JOINT_DISAGREEMENT)
                        leg.notes.extend(problems)
                        untype(leg)
                # laterality and joint-chain checks of the detector
                for flag, note in (film.problems.get(side, []) if film is not None else []):
                    if flag not in leg.flags:
                        leg.flags.append(flag)
                    leg.notes.append(note)
                    untype(leg)
                res.legs[side] = leg
            if not res.legs:
                res.notes.append("no leg found on the film")
            results.append(res)
        return results

    def measure(self, image: LoadedImage, boxes: BoxFile | None = None, release: bool = True) -> ScanResult:
        """:meth:`measure_images` of one image."""
        return self.measure_images([image], [boxes], release)[0]
