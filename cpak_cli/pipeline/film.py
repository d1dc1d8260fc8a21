"""The measurement pipeline: image -> joint boxes -> landmarks -> angles, CPAK and flags.

:class:`Measurer` loads the models once and measures one or many images; crops of several
images that share a model go through it in one batch. All coordinates follow
docs/conventions.md (pixel ``(x, y)``, spacing ``(row_mm, col_mm)``, patient sides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cpak_cli import __version__
from cpak_cli.core.landmarks import JOINTS, LANDMARKS, SIDES, LandmarkFile
from cpak_cli.core.measurement import (
    FLAG_BORDERLINE,
    FLAG_JOINT_DISAGREEMENT,
    FLAG_LATERALITY,
    FLAG_LOW_CONFIDENCE,
    FLAG_ORIENTATION_ASSUMED,
    FLAG_SPACING_UNCORRECTED,
    FLAG_SPACING_USER,
    LegMeasurement,
    leg_length_difference_mm,
    measure_leg,
)
from cpak_cli.errors import CpakModelError
from cpak_cli.input.boxes import Box, BoxFile
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.loader import LoadedImage
from cpak_cli.networks.inference import JointModel, LandmarkPrediction, detect_landmarks
from cpak_cli.pipeline.joint_checks import DISAGREEMENT_MM, RECENTRE_MIN_SHIFT_MM, joint_disagreements, recentred_boxes  # noqa: F401 - the limits are part of this module's interface

DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass
class DetectorModel:
    """The joint detector network and its input frame size."""

    module: Any
    width: int
    height: int
    name: str = "detector"
    card: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScanResult:
    """Everything measured on one image."""

    path: str
    image: LoadedImage | None
    legs: dict[str, LegMeasurement] = field(default_factory=dict)
    landmarks: dict[str, dict[str, LandmarkPrediction]] = field(default_factory=dict)
    boxes: dict[str, dict[str, Box]] = field(default_factory=dict)
    box_source: str = "detector"
    scan_flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    #: the film with its burned-in text blanked, kept by :func:`cpak_cli.outputs.redact.redact_result`
    #: so that the overlay and the report thumbnail of an anonymized batch search it once
    redacted: Any = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        img = self.image
        out: dict[str, Any] = {
            "image": self.path,
            "error": self.error,
            "tool_version": __version__,
            "models": dict(self.models),
        }
        if img is not None:
            out.update(
                pixel_spacing_mm=list(img.spacing_mm),
                spacing_source=img.spacing_source,
                patient_right_on_image_left=img.patient_right_on_image_left,
                assumed_orientation=img.assumed_orientation,
                sop_instance_uid=img.sop_instance_uid,
                study_date=img.study_date,
                rows=_shape(img)[0],
                cols=_shape(img)[1],
            )
        out["box_source"] = self.box_source
        out["boxes"] = {s: {j: list(b) for j, b in jb.items()} for s, jb in self.boxes.items()}
        out["scan_flags"] = list(self.scan_flags)
        out["notes"] = list(self.notes)
        legs: dict[str, Any] = {}
        for side in SIDES:
            if side not in self.legs:
                continue
            leg = self.legs[side].to_json()
            leg["landmarks"] = {n: p.to_json() for n, p in self.landmarks.get(side, {}).items()}
            legs[side] = leg
        out["legs"] = legs
        # film level: right minus left mechanical leg length (femur + tibia), mm; None unless both
        out["leg_length_difference_mm"] = leg_length_difference_mm(self.legs)
        return out

    def to_landmark_file(self) -> LandmarkFile:
        """The landmarks in the format `cpak angles` reads (found points only)."""
        assert self.image is not None
        legs = {
            side: {n: (p.xy if p.found else None) for n, p in preds.items()}
            for side, preds in self.landmarks.items()
        }
        conf = {side: {n: p.confidence for n, p in preds.items()} for side, preds in self.landmarks.items()}
        return LandmarkFile(
            image=self.path,
            spacing_mm=self.image.spacing_mm,
            legs=legs,
            extra={
                "patient_right_on_image_left": self.image.patient_right_on_image_left,
                "confidence": conf,
                "spacing_source": self.image.spacing_source,
                "tool_version": __version__,
                "models": dict(self.models),
            },
        )


def scan_flags(image: LoadedImage) -> tuple[list[str], list[str]]:
    """Flags (and notes) that apply to every leg of an image: spacing and orientation doubts."""
    from cpak_cli.input.loader import UNCORRECTED_SPACING_SOURCES

    flags, notes = [], []
    if image.spacing_source in UNCORRECTED_SPACING_SOURCES:
        flags.append(FLAG_SPACING_UNCORRECTED)
        notes.append(f"spacing from {image.spacing_source}: detector spacing without magnification "
                     "correction (mm may be too large)")
    elif image.spacing_source == "user":
        flags.append(FLAG_SPACING_USER)
        notes.append("pixel spacing given by the user")
    if image.assumed_orientation:
        flags.append(FLAG_ORIENTATION_ASSUMED)
        notes.append("orientation not in the file; assumed patient's right on the image left")
    if image.orientation_applied != "none":  # pixel coordinates refer to the turned image
        notes.append(f"image turned head-up ({image.orientation_applied}) per PatientOrientation "
                     f"{image.patient_orientation}")
    return flags, notes


def untype(leg: LegMeasurement) -> None:
    """Take a leg's CPAK type away (a flag or an error that makes it untrustworthy); the
    ``borderline`` flag, which only qualifies a type, goes with it."""
    leg.cpak = None
    leg.flags = [f for f in leg.flags if f != FLAG_BORDERLINE]


def assemble_leg(
    side: str,
    preds: Mapping[str, LandmarkPrediction],
    image: LoadedImage,
    missing_joints: Sequence[str],
    min_confidence: float,
) -> LegMeasurement:
    """Measure one leg from predictions and attach confidence / scan flags. Pure.

    A leg with a joint off the film or a landmark not found gets ``error`` saying which, and
    whatever angle the found landmarks still allow (e.g. LDFA when the ankle is cut off). Every
    leg, measured or not, gets the checks its found landmarks allow (range, geometry on the
    film's orientation), ``low_confidence`` for found landmarks below ``min_confidence`` and the
    image's scan flags (spacing, orientation)."""
    found = {n: preds[n].xy for n in LANDMARKS if n in preds and preds[n].found}
    not_found = [n for n in LANDMARKS if n not in found]
    leg = measure_leg(side, {n: found.get(n) for n in LANDMARKS}, image.spacing_mm, image.patient_right_on_image_left)
    if missing_joints:
        leg.error = "joint(s) not found on the film: " + ", ".join(missing_joints)
    elif not_found:
        leg.error = "landmark(s) not found: " + ", ".join(not_found)
    if leg.error and leg.cpak is not None:  # a leg that is not measured has no type
        untype(leg)
    low = [n for n in found if preds[n].confidence < min_confidence]
    if low:
        leg.flags.append(FLAG_LOW_CONFIDENCE)
        leg.notes.append("low confidence: " + ", ".join(low))
    flags, notes = scan_flags(image)
    leg.flags.extend(flags)
    leg.notes.extend(notes)
    return leg


def _shape(image: LoadedImage) -> tuple[int, int]:
    """``(rows, cols)`` of an image without decoding (or fetching) the pixels of one that
    :attr:`~LoadedImage.decodes_on_demand`."""
    if image.decodes_on_demand:
        return image.rows, image.cols
    return int(image.pixels.shape[0]), int(image.pixels.shape[1])


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
        self, images: Sequence[LoadedImage], boxes: Sequence[BoxFile | None] | None = None
    ) -> list[ScanResult]:
        """Measure several loaded images; crops that share a model share forward passes.

        An image from :func:`cpak_cli.input.loader.open_film` (a :class:`FilmSource`) is read
        through its overview and windows; when none of its windows proved the VOI window the
        loader would pick (:meth:`FilmSource.confirm_voi`), it is decoded in full and, if the
        loader picks another mapping, measured again from the full decode."""
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        results = self._measure_images(images, boxes)
        redo = [i for i, im in enumerate(images) if isinstance(im, FilmSource) and not im.confirm_voi()]
        if redo:
            again = self._measure_images([images[i] for i in redo], [boxes[i] for i in redo])
            for i, res in zip(redo, again):
                results[i] = res
        for im in images:
            if im.decodes_on_demand:  # a FilmSource's decoders, a held film in its decode worker
                im.release()
        return results

    def _measure_images(self, images: Sequence[LoadedImage], boxes: Sequence[BoxFile | None]) -> list[ScanResult]:
        need = [i for i, b in enumerate(boxes) if b is None]
        detected = self.detect_boxes([images[i] for i in need]) if need else []
        all_boxes: list[dict[str, dict[str, Box]]] = []
        sources = []
        it = iter(detected)
        for b in boxes:
            if b is None:
                all_boxes.append(next(it))
                sources.append("detector")
            else:
                all_boxes.append({s: dict(j) for s, j in b.boxes.items()})
                sources.append("file")
        preds = detect_landmarks(
            [_view(im) for im in images], all_boxes, [im.spacing_mm for im in images], self.models,
            orientations=[im.patient_right_on_image_left for im in images], method=self.method,
            device=self.device, batch_size=self.batch_size,
        )
        detected_boxes = [{s: dict(j) for s, j in bx.items()} if src == "detector" else None
                          for bx, src in zip(all_boxes, sources)]
        if self.recentre:
            moved = [recentred_boxes(bx, pr, im.spacing_mm) if src == "detector" else {}
                     for bx, pr, im, src in zip(all_boxes, preds, images, sources)]
            if any(moved):
                again = detect_landmarks(
                    [_view(im) for im in images], moved, [im.spacing_mm for im in images], self.models,
                    orientations=[im.patient_right_on_image_left for im in images], method=self.method,
                    device=self.device, batch_size=self.batch_size,
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

    def measure(self, image: LoadedImage, boxes: BoxFile | None = None) -> ScanResult:
        return self.measure_images([image], [boxes])[0]
