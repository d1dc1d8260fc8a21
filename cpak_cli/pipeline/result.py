"""The result of measuring one film: :class:`ScanResult` (legs, landmarks, boxes, flags) and the
pure steps that turn landmark predictions into a measured leg (:func:`assemble_leg`) with the
film's flags (:func:`scan_flags`). Coordinates follow docs/conventions.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cpak_cli import __version__
from cpak_cli.core.landmarks import LANDMARKS, SIDES, LandmarkFile
from cpak_cli.core.measurement import (
    FLAG_BORDERLINE,
    FLAG_LOW_CONFIDENCE,
    FLAG_ORIENTATION_ASSUMED,
    FLAG_SPACING_UNCORRECTED,
    FLAG_SPACING_USER,
    LegMeasurement,
    leg_length_difference_mm,
    measure_leg,
)
from cpak_cli.input.boxes import Box
from cpak_cli.input.loader import LoadedImage
from cpak_cli.networks.inference import LandmarkPrediction

__all__ = ["ScanResult", "scan_flags", "untype", "assemble_leg", "film_shape"]


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
                rows=film_shape(img)[0],
                cols=film_shape(img)[1],
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


def film_shape(image: LoadedImage) -> tuple[int, int]:
    """``(rows, cols)`` of an image without decoding (or fetching) the pixels of one that
    :attr:`~LoadedImage.decodes_on_demand`."""
    if image.decodes_on_demand:
        return image.rows, image.cols
    return int(image.pixels.shape[0]), int(image.pixels.shape[1])
