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
from typing import Final, Mapping, Sequence

import numpy as np

from cpak_cli.boxes import BOX_SIDE_MM, Box, square_box
from cpak_cli.crops import crop_to_image, disc_masks, frame_matrix, image_to_crop, normalize_crop, sample_crop
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
    pts = np.full((len(DETECTOR_CHANNELS), 2), np.nan)
    for k, ch in enumerate(DETECTOR_CHANNELS):
        side, joint = ch.split("_", 1)
        c = centres.get(side, {}).get(joint)
        if c is not None:
            pts[k] = image_to_crop(np.array([c]), frame.matrix)[0]
    return disc_masks(pts, (frame.width, frame.height), radius_mm / frame.mm_per_px)


@dataclass
class DetectedJoint:
    side: str
    joint: str
    center: tuple[float, float]  # image pixels
    confidence: float
    box: Box


def _blobs(prob: np.ndarray, min_peak: float) -> list[tuple[float, float, float, np.ndarray]]:
    """Connected blobs of a map above half its maximum: (peak, u, v, mask), strongest first."""
    from scipy import ndimage

    peak = float(prob.max())
    if peak < min_peak:
        return []
    thr = max(peak / 2.0, min_peak / 2.0)
    labels, n = ndimage.label(prob > thr, structure=np.ones((3, 3), bool))
    out = []
    for k in range(1, n + 1):
        mask = labels == k
        w = prob * mask
        p = float(prob[mask].max())
        if p < min_peak:
            continue
        mass = float(w.sum())
        vv, uu = np.nonzero(mask)
        u = float((w[vv, uu] * uu).sum() / mass)
        v = float((w[vv, uu] * vv).sum() / mass)
        out.append((p, u, v, mask))
    out.sort(key=lambda b: -float((prob * b[3]).sum()))
    return out


def decode_detections(
    probs: np.ndarray,
    frame: DetectorFrame,
    spacing_mm: tuple[float, float],
    min_peak: float = 0.3,
    box_side_mm: Mapping[str, float] = BOX_SIDE_MM,
    min_separation_mm: float = 40.0,
    second_blob_fraction: float = 0.25,
    single_side: str | None = None,
) -> dict[str, dict[str, DetectedJoint]]:
    """Detector probabilities ``(6, H, W)`` -> joints found per patient side, with crop boxes.

    The two side channels of a joint are read together: the strongest blobs of their maximum
    (at most two, at least ``min_separation_mm`` apart) are the joints found; with two, the one on
    the input's left is the patient's right (the frame is displayed that way), with one, the
    channel holding more of its probability names the side. This keeps a knee that both channels
    see from being given to the wrong leg. A second blob counts only with a peak of at least 0.5
    and ``second_blob_fraction`` of the first blob's probability mass. When no joint has two
    blobs (a single-leg film) all joints go to ONE side, the side that holds more of the
    probability over all of them, so a leg is never split between two sides. ``single_side``
    ("right"/"left", from the film's ImageLaterality) says the film shows that one leg only: the
    strongest blob of each joint is taken, on that side. A blob's centre is
    its probability-weighted centroid (Method 3 on the joint map), its confidence the blob's peak. (Like Method 3, but per blob and with the threshold at half the
    peak, since one map may hold two joints.)
    """
    index = {ch: k for k, ch in enumerate(DETECTOR_CHANNELS)}
    found: dict[str, list[tuple[float, float, float, float, float]]] = {}  # joint -> (peak, u, v, mass_r, mass_l)
    for joint in JOINTS:
        pr, pl = probs[index[f"right_{joint}"]], probs[index[f"left_{joint}"]]
        both = np.maximum(pr, pl)
        blobs = _blobs(both, min_peak)[:4]
        chosen = blobs[:1]
        if blobs and single_side is None:
            first_mass = float((both * blobs[0][3]).sum())
            for b in blobs[1:]:
                far = abs(b[1] - blobs[0][1]) * frame.mm_per_px >= min_separation_mm
                strong = b[0] >= 0.5 and float((both * b[3]).sum()) >= second_blob_fraction * first_mass
                if far and strong:
                    chosen.append(b)
                    break
        found[joint] = [(b[0], b[1], b[2], float((pr * b[3]).sum()), float((pl * b[3]).sum())) for b in chosen]
    two_legs = any(len(v) == 2 for v in found.values())
    if single_side is None and not two_legs:
        mass_r = sum(b[3] for v in found.values() for b in v)
        mass_l = sum(b[4] for v in found.values() for b in v)
        single_side = "right" if mass_r >= mass_l else "left"
    out: dict[str, dict[str, DetectedJoint]] = {}
    for joint, chosen in found.items():
        if len(chosen) == 2:
            pairs = list(zip(["right", "left"], sorted(chosen, key=lambda b: b[1])))
        elif len(chosen) == 1 and two_legs:
            b = chosen[0]
            pairs = [("right" if b[3] >= b[4] else "left", b)]
        else:
            pairs = [(single_side, b) for b in chosen]
        for side, (peak, u, v, _, _) in pairs:
            x, y = crop_to_image(np.array([[u, v]]), frame.matrix)[0]
            box = square_box((float(x), float(y)), box_side_mm[joint], spacing_mm)
            out.setdefault(side, {})[joint] = DetectedJoint(side, joint, (float(x), float(y)), float(peak), box)
    return out


def boxes_from_detections(dets: Mapping[str, Mapping[str, DetectedJoint]]) -> dict[str, dict[str, Box]]:
    return {side: {j: d.box for j, d in joints.items()} for side, joints in dets.items()}
