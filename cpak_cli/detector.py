"""Joint detector: find hip, knee and ankle of each leg on the whole (down-sampled) radiograph.

A small U-Net sees the full film resampled to ``width x height`` pixels at an isotropic mm scale,
displayed with the patient's right on the input's left (films stored the other way round are
mirrored first), and segments one disc per joint centre: channels ``right_hip, right_knee,
right_ankle, left_hip, left_knee, left_ankle`` (patient sides). Each found centre becomes a crop
box of :data:`cpak_cli.boxes.BOX_SIDE_MM` mm around it. A channel without a confident blob means
that joint is not on the film (single-leg film, amputation, cropped film).

Joint centres (the detector's targets, also used to centre training boxes): hip = femoral_head;
knee = mean of the five knee landmarks; ankle = mid-point of ankle_lateral and ankle_medial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Mapping, Sequence

import numpy as np

from cpak_cli.boxes import BOX_SIDE_MM, Box, square_box
from cpak_cli.crops import crop_to_image, frame_matrix, image_to_crop, normalize_crop, sample_crop
from cpak_cli.extraction import extract_points
from cpak_cli.landmarks import JOINTS, SIDES

DETECTOR_CHANNELS: Final[tuple[str, ...]] = tuple(f"{s}_{j}" for s in SIDES for j in JOINTS)
DEFAULT_WIDTH: Final[int] = 160
DEFAULT_HEIGHT: Final[int] = 384
TARGET_RADIUS_MM: Final[float] = 14.0


def joint_centres(legs: Mapping[str, Mapping[str, Sequence[float] | None]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Joint centres in image pixels from landmarks: ``{side: {joint: (x, y)}}`` (complete joints only)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for side, leg in legs.items():
        for joint, names in JOINTS.items():
            pts = [leg.get(n) for n in names]
            if any(p is None for p in pts):
                continue
            c = np.mean(np.asarray(pts, dtype=np.float64), axis=0)
            out.setdefault(side, {})[joint] = (float(c[0]), float(c[1]))
    return out


@dataclass(frozen=True)
class DetectorFrame:
    """How the detector's input maps onto the image: ``matrix`` is input pixel -> image pixel."""

    matrix: np.ndarray
    width: int
    height: int
    mm_per_px: float


def detector_frame(
    shape: tuple[int, int],
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool = True,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
) -> DetectorFrame:
    """The whole film (``shape = (rows, cols)``) fitted into ``width x height`` at one mm scale,
    centred (padding reads 0), mirrored when the patient's right is on the image's right."""
    rows, cols = shape
    row_mm, col_mm = spacing_mm
    h_mm, w_mm = rows * row_mm, cols * col_mm
    s = max(h_mm / height, w_mm / width)  # mm per input pixel
    cx_mm, cy_mm = (cols - 1) / 2 * col_mm, (rows - 1) / 2 * row_mm
    half_w, half_h = width * s / 2, height * s / 2
    box = ((cx_mm - half_w) / col_mm, (cy_mm - half_h) / row_mm, (cx_mm + half_w) / col_mm, (cy_mm + half_h) / row_mm)
    m = frame_matrix(box, width, height, mirror=not patient_right_on_image_left)
    return DetectorFrame(matrix=m, width=width, height=height, mm_per_px=s)


def detector_input(image: np.ndarray, frame: DetectorFrame) -> np.ndarray:
    """The detector's input image ``(height, width)`` in [0, 1]."""
    return normalize_crop(sample_crop(image, frame.matrix, (frame.width, frame.height)))


def detector_targets(centres: Mapping[str, Mapping[str, tuple[float, float]]], frame: DetectorFrame,
                     radius_mm: float = TARGET_RADIUS_MM) -> np.ndarray:
    """Training masks ``(6, height, width)``: a disc per joint centre present (patient sides)."""
    yy, xx = np.mgrid[0 : frame.height, 0 : frame.width].astype(np.float64)
    r = radius_mm / frame.mm_per_px
    out = np.zeros((len(DETECTOR_CHANNELS), frame.height, frame.width), np.float32)
    for k, ch in enumerate(DETECTOR_CHANNELS):
        side, joint = ch.split("_", 1)
        c = centres.get(side, {}).get(joint)
        if c is None:
            continue
        u, v = image_to_crop(np.array([c]), frame.matrix)[0]
        out[k] = ((xx - u) ** 2 + (yy - v) ** 2) <= r * r
    return out


@dataclass
class DetectedJoint:
    side: str
    joint: str
    center: tuple[float, float]  # image pixels
    confidence: float
    box: Box


def decode_detections(
    probs: np.ndarray,
    frame: DetectorFrame,
    spacing_mm: tuple[float, float],
    min_peak: float = 0.3,
    box_side_mm: Mapping[str, float] = BOX_SIDE_MM,
) -> dict[str, dict[str, DetectedJoint]]:
    """Detector probabilities ``(6, H, W)`` -> joints found per patient side, with crop boxes."""
    out: dict[str, dict[str, DetectedJoint]] = {}
    for ch, est in zip(DETECTOR_CHANNELS, extract_points(probs, method=3, min_peak=min_peak)):
        if not est.found:
            continue
        side, joint = ch.split("_", 1)
        x, y = crop_to_image(np.array([[est.x, est.y]]), frame.matrix)[0]
        box = square_box((float(x), float(y)), box_side_mm[joint], spacing_mm)
        out.setdefault(side, {})[joint] = DetectedJoint(side, joint, (float(x), float(y)), float(est.confidence), box)
    return out


def boxes_from_detections(dets: Mapping[str, Mapping[str, DetectedJoint]]) -> dict[str, dict[str, Box]]:
    return {side: {j: d.box for j, d in joints.items()} for side, joints in dets.items()}


def describe(dets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Human-readable list of joints that were not found."""
    missing = []
    for side in SIDES:
        for joint in JOINTS:
            if joint not in dets.get(side, {}):
                missing.append(f"{side} {joint}")
    return missing
