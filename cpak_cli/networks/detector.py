"""Joint detector: find hip, knee and ankle of each leg on the whole (down-sampled) radiograph.

A small U-Net sees the full film resampled to ``width x height`` pixels at an isotropic mm scale,
displayed with the patient's right on the input's left (films stored the other way round are
mirrored first), and segments one disc per joint centre: channels ``right_hip, right_knee,
right_ankle, left_hip, left_knee, left_ankle`` (patient sides). Each found centre becomes a crop
box of :data:`cpak_cli.input.boxes.BOX_SIDE_MM` mm around it. A channel without a confident blob means
that joint is not on the film (single-leg film, amputation, cropped film).

Joint centres (the detector's targets, also used to centre training boxes): hip = femoral_head;
knee = mean of the five knee landmarks; ankle = mid-point of ankle_lateral and ankle_medial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Mapping, Sequence

import numpy as np

from cpak_cli.core.extraction import label_components
from cpak_cli.core.landmarks import JOINTS, SIDES
from cpak_cli.core.measurement import FLAG_GEOMETRY, FLAG_LATERALITY
from cpak_cli.input.boxes import BOX_SIDE_MM, Box, square_box
from cpak_cli.networks.crops import (
    compose,
    crop_to_image,
    disc_masks,
    frame_matrix,
    image_to_crop,
    invert,
    normalize_crop,
    sample_crop,
)

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


#: An image that decodes on demand is read at a reduced resolution with at least this many of
#: its pixels per detector input pixel (the wavelet's low-pass band and the resampling's Gaussian
#: low-pass then do the anti-aliasing). 1.5 rather than 2 reads the 3000 x 7500-class JPEG 2000
#: film at level 3 instead of 2 (1.5-2 view pixels per input pixel, a quarter of the samples to
#: decode): on 30 J2K phantoms (seeds 7 and 11) the overview decode's CPU time fell by half on
#: the 7 films whose level changed, landmark error to the truth median 0.250 -> 0.242 mm, max
#: 1.92 -> 1.87 mm on them (detector centres moved <= 0.39 mm, angles <= 0.12 degrees).
OVERVIEW_OVERSAMPLING: Final[float] = 1.5


def overview_factor(frame: DetectorFrame, spacing_mm: tuple[float, float]) -> float:
    """How many times coarser than the film (``spacing_mm``, mm per pixel) the detector may read
    its reduced view: the frame's mm per input pixel over :data:`OVERVIEW_OVERSAMPLING` film
    samples per input pixel."""
    return frame.mm_per_px / (OVERVIEW_OVERSAMPLING * max(spacing_mm))


def detector_input(image: Any, frame: DetectorFrame) -> np.ndarray:
    """The detector's input image ``(height, width)`` in [0, 1].

    ``image`` is the film as a 2-D array, or an image with ``overview(max_factor)`` and
    ``spacing_mm`` (:class:`cpak_cli.input.film_source.FilmSource`): then a view reduced by up to
    ``frame.mm_per_px / (OVERVIEW_OVERSAMPLING * spacing)`` is resampled instead of the full film.
    """
    size = (frame.width, frame.height)
    if hasattr(image, "overview"):
        view, view_to_image = image.overview(overview_factor(frame, image.spacing_mm))
        return normalize_crop(sample_crop(view, compose(invert(view_to_image), frame.matrix), size))
    return normalize_crop(sample_crop(image, frame.matrix, size))


def prefetch_overview(image: Any, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> None:
    """Decode (and cache) the reduced view :func:`detector_input` reads from an image that
    decodes on demand (a :class:`cpak_cli.input.film_source.FilmSource`; anything else: no-op)."""
    if not hasattr(image, "overview"):
        return
    frame = detector_frame((image.rows, image.cols), image.spacing_mm, image.patient_right_on_image_left, width, height)
    image.overview(overview_factor(frame, image.spacing_mm))


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
    peak = float(prob.max())
    if peak < min_peak:
        return []
    thr = max(peak / 2.0, min_peak / 2.0)
    labels, n = label_components(prob > thr)
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


#: A single leg's side is read from the detector's side channels when the winning channel holds at
#: least this share of the probability mass of the leg's blobs; below it the channels are mute.
SIDE_EVIDENCE_SHARE: Final[float] = 0.6
#: A single leg on a film at least this wide (mm) whose joints lie on average this far (mm) from
#: the film's centre sits on one side of the body midline: on the input's left it is the
#: patient's right (the frame shows the patient's right on the left).
MIDLINE_FILM_MIN_MM: Final[float] = 300.0
MIDLINE_MIN_OFFSET_MM: Final[float] = 60.0
#: A leg's hip, knee and ankle form one roughly vertical chain: each segment (hip -> knee,
#: knee -> ankle; hip -> ankle without a knee) at most this far from the vertical (degrees). A
#: femoral mechanical axis stands some 3 degrees from the vertical in double stance and rarely
#: more than 10 in a wide stance or genu valgum; a hip paired with the other leg's knee lies
#: 160-200 mm (adults) to the side over 400-480 mm, 20-27 degrees.
CHAIN_MAX_TILT_DEG: Final[float] = 18.0
#: When every other joint shows two blobs (both legs on the film), a joint's second blob needs
#: only this share of ``min_separation_mm`` from its first, provided the side channels call the
#: blob on the input's left the patient's right and the other the left (a joint's blob split in
#: two is one side's): a knock-kneed child's knees touch, and the detector's knee centres, which
#: sit medially like the labels it learned from, lie 25-40 mm apart there (real EOS film 1156).
NEIGHBOUR_SEPARATION_FRACTION: Final[float] = 0.5
#: With an ImageLaterality of R or L, the film counts as showing both legs (and the tag is
#: overruled) when at least this many joints show two blobs far apart.
TWO_LEG_MIN_JOINTS_TAGGED: Final[int] = 2


@dataclass
class FilmDetections:
    """Everything :func:`decode_film` read from one film.

    ``joints``: ``{side: {joint: DetectedJoint}}``; ``legs_on_film``: 2 when both legs are
    visible, else 1 (0 without any joint); ``tag_side``: the side the ImageLaterality tag names
    (None for B/absent); ``evidence``: for a single leg, the side each piece of image evidence
    names (``{"channels": side, "midline": side}``, mute evidence left out); ``problems``:
    ``{side: [(flag, note)]}`` to attach to that leg (``laterality_conflict`` or
    ``implausible_geometry`` for a broken joint chain), each one costs the leg its CPAK type;
    ``notes``: film-level notes."""

    joints: dict[str, dict[str, DetectedJoint]]
    legs_on_film: int = 0
    tag_side: str | None = None
    evidence: dict[str, str] = field(default_factory=dict)
    problems: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def laterality_conflict(self) -> bool:
        return any(f == FLAG_LATERALITY for v in self.problems.values() for f, _ in v)


def chain_problems(joints: Mapping[str, DetectedJoint], spacing_mm: tuple[float, float],
                   max_tilt_deg: float = CHAIN_MAX_TILT_DEG) -> list[str]:
    """Why one leg's detected hip, knee and ankle are not one roughly vertical chain (empty when
    they are): each segment must run downwards and at most ``max_tilt_deg`` from the vertical,
    in mm. A joint of the other leg paired in fails this."""
    row_mm, col_mm = spacing_mm
    pts = {j: (d.center[0] * col_mm, d.center[1] * row_mm) for j, d in joints.items()}
    segs = [("hip", "knee"), ("knee", "ankle")] if "knee" in pts else [("hip", "ankle")]
    out = []
    for a, b in segs:
        if a not in pts or b not in pts:
            continue
        dx, dy = pts[b][0] - pts[a][0], pts[b][1] - pts[a][1]
        tilt = float(np.degrees(np.arctan2(abs(dx), dy)))  # 0 = straight down, > 90 = upwards
        if tilt > max_tilt_deg:
            out.append(f"{a} and {b} not on one vertical chain ({abs(dx):.0f} mm apart sideways over "
                       f"{dy:.0f} mm, {tilt:.0f} degrees from vertical > {max_tilt_deg:g}): joints of two legs?")
    return out


def decode_film(
    probs: np.ndarray,
    frame: DetectorFrame,
    spacing_mm: tuple[float, float],
    laterality: str | None = None,
    min_peak: float = 0.3,
    box_side_mm: Mapping[str, float] = BOX_SIDE_MM,
    min_separation_mm: float = 40.0,
    second_blob_fraction: float = 0.25,
    film_width_mm: float | None = None,
) -> FilmDetections:
    """Detector probabilities ``(6, H, W)`` -> joints per patient side, their crop boxes, and the
    laterality and joint-chain checks. The image decides; the ImageLaterality tag is checked.

    Blobs: the two side channels of a joint are read together: the strongest blobs of their
    maximum (at most two, at least ``min_separation_mm`` apart) are the joints found. A second
    blob counts only with a peak of at least 0.5 and ``second_blob_fraction`` of the first
    blob's probability mass; when every other joint shows two blobs, a second blob
    :data:`NEIGHBOUR_SEPARATION_FRACTION` of that distance away counts if the side channels name
    the two blobs the two legs in their order (touching knees). A blob's
    centre is its probability-weighted centroid (Method 3 on the joint map, per blob, threshold at
    half the peak), its confidence the blob's peak.

    Rules:

    1. Both legs visible (untagged film: any joint with two blobs; tagged R/L: at least
       :data:`TWO_LEG_MIN_JOINTS_TAGGED` joints with two blobs): every joint with two blobs is
       named by position (on the input's left: the patient's right), a lone blob by the channel
       holding more of it. A tag R or L then contradicts the film: ``laterality_conflict`` on
       both legs, which are measured by position all the same.
    2. One leg (a tagged film with a lone second blob drops it): all joints go to ONE side, so a
       leg is never split. The image's evidence: the side channels (the winning channel must hold
       :data:`SIDE_EVIDENCE_SHARE` of the mass of the leg's blobs, else they are mute) and, on a
       film at least :data:`MIDLINE_FILM_MIN_MM` wide (``film_width_mm``) with the leg
       :data:`MIDLINE_MIN_OFFSET_MM` or more off its centre, the leg's side of the body midline.
       Evidence decides the side. A tag R/L that disagrees with the evidence, or pieces of
       evidence that disagree, give ``laterality_conflict`` (the leg is named by the evidence,
       channels first). Without any evidence the tag names the leg (untagged: the channel with
       more mass), but the side is unconfirmed and a landmark network that labels medial and
       lateral by position would give 180 - x unseen: ``laterality_conflict`` as well.
    3. A leg's hip, knee and ankle must form one vertical chain (:func:`chain_problems`),
       else ``implausible_geometry``: one joint never silently pairs with another leg's.

    The medial/lateral order of each leg's landmarks is checked later against the side chosen
    here (:func:`cpak_cli.core.measurement.geometry_problems`): a landmark network that knows the
    fibula from the tibia then contradicts a wrong side too.
    """
    tag_side = {"R": "right", "L": "left"}.get((laterality or "").strip().upper())
    index = {ch: k for k, ch in enumerate(DETECTOR_CHANNELS)}
    # per joint: its blobs as (peak, u, v, mass of both channels, mass right, mass left), masses summed once
    blobs: dict[str, list[tuple[float, float, float, float, float, float]]] = {}
    for joint in JOINTS:
        pr, pl = probs[index[f"right_{joint}"]], probs[index[f"left_{joint}"]]
        both = np.maximum(pr, pl)
        blobs[joint] = [(p, u, v, float((both * m).sum()), float((pr * m).sum()), float((pl * m).sum()))
                        for p, u, v, m in _blobs(both, min_peak)[:4]]

    def pick(joint: str, separation_mm: float) -> list[tuple[float, float, float, float, float, float]]:
        bl = blobs[joint]
        for b in bl[1:]:
            far = abs(b[1] - bl[0][1]) * frame.mm_per_px >= separation_mm
            if far and b[0] >= 0.5 and b[3] >= second_blob_fraction * bl[0][3]:
                return [bl[0], b]
        return bl[:1]

    chosen = {j: pick(j, min_separation_mm) for j in JOINTS}
    for joint in JOINTS:  # both legs shown by every other joint: two knees may stand closer
        if len(chosen[joint]) == 1 and all(len(chosen[o]) == 2 for o in JOINTS if o != joint):
            closer = pick(joint, NEIGHBOUR_SEPARATION_FRACTION * min_separation_mm)
            # the side channels must name the blob on the input's left the patient's right (the
            # frame shows the patient's right there) and the other the left: two legs' joints,
            # not one joint's blob split in two
            if len(closer) == 2:
                a, b = sorted(closer, key=lambda bl: bl[1])
                if a[4] > a[5] and b[5] > b[4]:
                    chosen[joint] = closer
    found: dict[str, list[tuple[float, float, float, float, float]]] = {  # joint -> (peak, u, v, mass_r, mass_l)
        j: [(b[0], b[1], b[2], b[4], b[5]) for b in picked] for j, picked in chosen.items()}
    n_two = sum(len(v) == 2 for v in found.values())
    two_legs = n_two >= (TWO_LEG_MIN_JOINTS_TAGGED if tag_side else 1)
    res = FilmDetections(joints={}, tag_side=tag_side)
    problems: dict[str, list[tuple[str, str]]] = {}
    single_side: str | None = None
    if not two_legs:
        found = {j: v[:1] for j, v in found.items()}
        blobs1 = [v[0] for v in found.values() if v]
        if blobs1:
            mass_r, mass_l = sum(b[3] for b in blobs1), sum(b[4] for b in blobs1)
            share_r = mass_r / (mass_r + mass_l) if mass_r + mass_l > 0 else 0.5
            if share_r >= SIDE_EVIDENCE_SHARE:
                res.evidence["channels"] = "right"
            elif share_r <= 1.0 - SIDE_EVIDENCE_SHARE:
                res.evidence["channels"] = "left"
            if film_width_mm is not None and film_width_mm >= MIDLINE_FILM_MIN_MM:
                u_mean = float(np.mean([b[1] for b in blobs1]))
                offset_mm = (u_mean - (frame.width - 1) / 2) * frame.mm_per_px
                if abs(offset_mm) >= MIDLINE_MIN_OFFSET_MM:
                    res.evidence["midline"] = "right" if offset_mm < 0 else "left"
            named = list(dict.fromkeys(res.evidence.values()))
            if named:
                single_side = res.evidence.get("channels", named[0])
            else:
                single_side = tag_side or ("right" if mass_r >= mass_l else "left")
                problems.setdefault(single_side, []).append(
                    (FLAG_LATERALITY, f"the image does not tell which leg this is (side channels "
                                            f"{share_r:.0%} right, no midline): named {single_side} from "
                                            + (f"ImageLaterality {laterality!s}" if tag_side else "the stronger channel")
                                            + ", unconfirmed"))
            why = ", ".join(f"{k} say {v}" for k, v in res.evidence.items())
            if len(named) > 1:
                problems.setdefault(single_side, []).append(
                    (FLAG_LATERALITY, f"the image's evidence disagrees about the leg's side ({why})"))
            elif named and tag_side and named[0] != tag_side:
                problems.setdefault(single_side, []).append(
                    (FLAG_LATERALITY, f"ImageLaterality {laterality!s} names the {tag_side} leg but the image "
                                            f"shows the {named[0]} ({why}); measured as the {single_side}"))
    for joint, picked in found.items():
        if len(picked) == 2:
            pairs = list(zip(["right", "left"], sorted(picked, key=lambda b: b[1])))
        elif len(picked) == 1 and two_legs:
            one = picked[0]
            pairs = [("right" if one[3] >= one[4] else "left", one)]
        else:
            pairs = [(str(single_side), b) for b in picked]
        for side, (peak, u, v, _, _) in pairs:
            x, y = crop_to_image(np.array([[u, v]]), frame.matrix)[0]
            box = square_box((float(x), float(y)), box_side_mm[joint], spacing_mm)
            res.joints.setdefault(side, {})[joint] = DetectedJoint(side, joint, (float(x), float(y)), float(peak), box)
    res.legs_on_film = 2 if two_legs else (1 if res.joints else 0)
    if two_legs and tag_side:
        note = f"ImageLaterality {laterality!s} says one leg, but the film shows both; both measured by position"
        res.notes.append(note)
        for side in res.joints:
            problems.setdefault(side, []).append((FLAG_LATERALITY, note))
    for side, joints in res.joints.items():
        for note in chain_problems(joints, spacing_mm):
            problems.setdefault(side, []).append((FLAG_GEOMETRY, note))
    res.problems = problems
    return res


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
    """The joints of :func:`decode_film` (``{side: {joint: DetectedJoint}}``) without its checks.
    ``single_side`` ("right"/"left") plays the part of an ImageLaterality tag R/L: it names a
    single leg only when the image gives no evidence of its own, and never overrules two legs."""
    tag = {"right": "R", "left": "L"}.get(single_side or "")
    return decode_film(probs, frame, spacing_mm, tag, min_peak, box_side_mm, min_separation_mm,
                       second_blob_fraction).joints


def boxes_from_detections(dets: Mapping[str, Mapping[str, DetectedJoint]]) -> dict[str, dict[str, Box]]:
    return {side: {j: d.box for j, d in joints.items()} for side, joints in dets.items()}
