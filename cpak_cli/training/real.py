"""Training samples from films labelled with three points per leg (:mod:`cpak_cli.training.pointlabels`).

Such films label fewer points than the networks find, so each joint uses what its label defines
(partial supervision; the phantom supervises everything else):

- knee: only the label's HEIGHT is used, as bands (:data:`KNEE_BANDS_MM`). On the real EOS set
  the knee label sits 5-30 mm medial of the knee centre (looked at on overlays of many films:
  between the intercondylar notch and the middle of the medial compartment, not "between the
  tibial spines"), so its horizontal position would teach a medial bias; its height is the joint
  line's to a few mm. A point constraint of the knee-centre channel on that height was tried (GPU
  run of 2026-11-26) and taught a shortcut: the channel fired on the medial condyle, which has the
  right height, and sat 26 mm medial on phantoms too. What is used instead: each of the four
  joint-line channels (condyles just above the label's row, plateau margins just below it) must
  lie within a band of rows; inside the band nothing is learnt, so only a joint line put on a
  growth plate 10-25 mm away is pushed back. Those bands alone (CPU fine-tune of 2026-11-27) let
  the knee-centre channel drift toward the medial condyle on real films (its box, centred on
  the medial label like the detector's, pulls it there), and a height band for it made that
  worse; so the knee centre gets one RELATIVE constraint instead (:data:`KNEE_CENTRE_BETWEEN_MM`):
  horizontally within a few mm of the middle of the two condyle points, as on every phantom knee.
  No absolute horizontal position is ever taken from the label.
- ankle: no channel is labelled directly; the mid-point of ``ankle_lateral``/``ankle_medial``
  must be the labelled ankle centre (the phantom's talar dome edges have exactly that mid-point).
  That constraint alone moves both channels alike, and a fine-tune with it (2026-11-26) left both
  points ON the plafond centre of most real films (a right ankle centre but not the talar dome's
  edges, and a medial/lateral order decided by noise). So a RELATIVE band (:data:`ANKLE_WIDTH_MM`) also
  keeps the lateral point lateral of the medial one by a talar dome's width.
- hip: ``femoral_head`` (the head CENTRE) must lie straight below the labelled head TOP: the
  horizontal position is exact, the vertical one (head radius, estimated from the femur length;
  see :func:`cpak_cli.training.pointlabels.head_centre_from_top`) counts with a lower weight.
- detector: joint centres (hip centre estimated the same way).

The held-out part of the set (:func:`cpak_cli.training.pointlabels.holdout_split`) never becomes a sample.
numpy/cv2 only, so these run in data worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cpak_cli.core.geometry import lateral_sign
from cpak_cli.input.boxes import BOX_SIDE_MM, square_box
from cpak_cli.training.datasets import Constraint, LegSample, array_reader, make_leg_sample
from cpak_cli.training.pointlabels import PointLabels, head_centre_from_top, holdout_split, load_pixels, read_point_labels

#: Weight of the vertical error of the hip constraint (the head radius is estimated).
HIP_VERTICAL_WEIGHT = 0.3
#: Knee height bands: channel -> (offset of the band's centre from the knee label's row, half
#: height), mm, + = down. The condyles' lowest points lie just above the joint line and the
#: plateau margins just below it; a band of +-5 mm lets the label be a few mm off and still
#: catches a growth plate (10-25 mm from the joint in children).
KNEE_BANDS_MM: dict[str, tuple[float, float]] = {
    "femoral_condyle_lateral": (-2.0, 5.0), "femoral_condyle_medial": (-2.0, 5.0),
    "tibial_plateau_lateral": (2.0, 5.0), "tibial_plateau_medial": (2.0, 5.0),
}
#: Half width (mm) of the band in which the knee centre may lie horizontally around the middle
#: of the two condyle points (the phantom's knees: within 2 mm). The constraint's gradient moves
#: the condyle channels too (towards a centred picture), which the phantom's exact condyles
#: hold in place.
KNEE_CENTRE_BETWEEN_MM = 5.0
#: Horizontal distance (mm) of ``ankle_lateral`` from ``ankle_medial`` towards the leg's lateral
#: side: (centre, half width) of the band. Phantom talar domes (variety range, 60 legs) are
#: 16.5-32.8 mm wide (median 25); children's and adults' real ones lie inside 15-35 mm.
ANKLE_WIDTH_MM = (25.0, 10.0)


def training_labels(data_dir: str | Path) -> list[PointLabels]:
    """The films of a labelled folder that training may use: every film except the held-out part."""
    labels = read_point_labels(data_dir)
    usable, _ = holdout_split([lab.image_id for lab in labels])
    keep = set(usable)
    return [lab for lab in labels if lab.image_id in keep]


def leg_supervision(
    joint: str, names: Sequence[str], pts: dict[str, tuple[float, float]], spacing_mm: tuple[float, float],
    *, lateral_dir: float,
) -> tuple[np.ndarray, tuple[Constraint, ...], tuple[float, float]] | None:
    """``(points (C, 2) with NaN rows, constraints, box centre)`` of one labelled leg for ``joint``,
    or None when its labels do not reach that joint (for the knee: no knee label, or a model
    without the knee's channels). Pixel coordinates of the film; ``lateral_dir`` is the image x
    direction of the leg's lateral side (:func:`cpak_cli.core.geometry.lateral_sign`)."""
    names = tuple(names)
    points = np.full((len(names), 2), np.nan)
    idx = {n: i for i, n in enumerate(names)}
    cons: list[Constraint] = []
    if joint == "knee":  # height bands only (module docstring)
        if "knee" not in pts or not set(KNEE_BANDS_MM) <= set(idx):
            return None
        kx, ky = (float(v) for v in pts["knee"])
        for name, (offset_mm, half_mm) in KNEE_BANDS_MM.items():
            cons.append(Constraint((idx[name],), (kx, ky + offset_mm / spacing_mm[0]), (0.0, 1.0), half_mm))
        if "knee_center" in idx:
            cons.append(Constraint((idx["knee_center"], idx["femoral_condyle_lateral"], idx["femoral_condyle_medial"]),
                                   (0.0, 0.0), (1.0, 0.0), KNEE_CENTRE_BETWEEN_MM, mix=(1.0, -0.5, -0.5)))
        return points, tuple(cons), (kx, ky)
    if joint == "ankle":
        if "ankle" not in pts or not {"ankle_lateral", "ankle_medial"} <= set(idx):
            return None
        a = pts["ankle"]
        lat, med = idx["ankle_lateral"], idx["ankle_medial"]
        cons.append(Constraint((lat, med), (float(a[0]), float(a[1])), (1.0, 1.0)))
        width_mm, half_mm = ANKLE_WIDTH_MM
        cons.append(Constraint((lat, med), (lateral_dir * width_mm / spacing_mm[1], 0.0), (1.0, 0.0), half_mm,
                               mix=(1.0, -1.0)))
        return points, tuple(cons), (float(a[0]), float(a[1]))
    if joint == "hip":
        if "hip" not in pts or "knee" not in pts or "femoral_head" not in idx:
            return None
        c = head_centre_from_top(pts["hip"], pts["knee"], spacing_mm)
        cons.append(Constraint((idx["femoral_head"],), c, (1.0, HIP_VERTICAL_WEIGHT)))
        return points, tuple(cons), c
    raise ValueError(f"unknown joint {joint!r}")


def real_leg_samples(args: tuple[PointLabels, str, tuple[str, ...], int, float]) -> tuple[list[LegSample], int]:
    """Worker: the samples of one labelled film for one joint (``args`` = labels, joint, names,
    input_size, context). Boxes are ``BOX_SIDE_MM`` squares around the labelled joint centre
    (training jitters them like a detector's boxes). Returns ``(samples, skipped_legs)``."""
    labels, joint, names, input_size, context = args
    pixels = load_pixels(labels)
    read = array_reader(pixels)
    out, skipped = [], 0
    for side, pts in labels.legs.items():
        sup = leg_supervision(joint, names, pts, labels.spacing_mm,
                              lateral_dir=lateral_sign(side, labels.patient_right_on_image_left))
        if sup is None:
            skipped += 1
            continue
        points, cons, centre = sup
        box = square_box(centre, BOX_SIDE_MM[joint], labels.spacing_mm)
        s = make_leg_sample(read, f"real-{labels.image_id}", side, box, points, labels.spacing_mm,
                            labels.patient_right_on_image_left, input_size, context)
        s.constraints = cons
        out.append(s)
    return out, skipped


def real_film_sample(args: tuple[PointLabels, int, int]) -> Any:
    """Worker: one labelled film reduced to the detector frame (a ``FilmSample``; hip centre
    estimated from the head-top label)."""
    from cpak_cli.training.detector import reduce_film
    from cpak_cli.training.pointlabels import joint_centres

    labels, height, width = args
    return reduce_film(f"real-{labels.image_id}", load_pixels(labels), labels.spacing_mm,
                       labels.patient_right_on_image_left, joint_centres(labels), height, width)


__all__ = ["ANKLE_WIDTH_MM", "HIP_VERTICAL_WEIGHT", "KNEE_BANDS_MM", "KNEE_CENTRE_BETWEEN_MM", "training_labels",
           "leg_supervision", "real_leg_samples", "real_film_sample"]
