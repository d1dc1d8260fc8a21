"""Checks of one film's landmarks against the joint detector: disagreement (a leg's landmarks
away from the joint the detector found) and re-centring boxes on the joint the landmarks found.
Coordinates: image pixels ``(x, y)``, spacing ``(row_mm, col_mm)`` (docs/conventions.md)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from cpak_cli.input.boxes import Box
from cpak_cli.networks.inference import LandmarkPrediction

#: A detector box is re-centred on the joint its landmarks found when that centre lies further
#: than this from the box centre (mm); the joint's landmarks are then found again in the new box.
RECENTRE_MIN_SHIFT_MM = 4.0


#: Landmarks whose joint lies further than this from the joint the detector found (mm; for the
#: knee only the vertical distance counts) disagree with the film: the leg is flagged and untyped.
DISAGREEMENT_MM = {"hip": 15.0, "knee": 12.0, "ankle": 15.0}


def joint_disagreements(
    detected: Mapping[str, Box],
    preds: Mapping[str, LandmarkPrediction],
    spacing_mm: tuple[float, float],
    limits_mm: Mapping[str, float] = DISAGREEMENT_MM,
) -> list[str]:
    """Why one leg's landmarks disagree with the detector (empty when they agree).

    ``detected`` are the detector's boxes of the leg (their centres are the detected joint
    centres), ``preds`` the leg's landmarks. For each joint whose landmarks were all found, the
    joint centre they define (:func:`cpak_cli.networks.detector.joint_centres`) is compared with the
    detected centre in mm. For the knee only the vertical distance counts: it catches a growth
    plate (physis) taken for the joint line, while the detector's knee centre may sit to one side
    (it learned from labels that do). Each disagreement is one sentence naming the joint."""
    from cpak_cli.networks.detector import joint_centres

    centres = joint_centres({"leg": {n: p.xy for n, p in preds.items() if p.found}}).get("leg", {})
    row_mm, col_mm = spacing_mm
    out = []
    for joint, (x0, y0, x1, y1) in detected.items():
        c = centres.get(joint)
        if c is None or joint not in limits_mm:
            continue
        dx_mm = (c[0] - (x0 + x1) / 2) * col_mm
        dy_mm = (c[1] - (y0 + y1) / 2) * row_mm
        dist = abs(dy_mm) if joint == "knee" else float(np.hypot(dx_mm, dy_mm))
        if dist > limits_mm[joint]:
            where = ("below" if dy_mm > 0 else "above") if joint == "knee" else "from"
            out.append(f"{joint} landmarks {dist:.0f} mm {where} the {joint} the detector found"
                       + (" (a growth plate taken for the joint line?)" if joint == "knee" else ""))
    return out


def recentred_boxes(
    boxes: Mapping[str, Mapping[str, Box]],
    preds: Mapping[str, Mapping[str, LandmarkPrediction]],
    spacing_mm: tuple[float, float],
    min_shift_mm: float = RECENTRE_MIN_SHIFT_MM,
) -> dict[str, dict[str, Box]]:
    """Boxes (same size) moved onto the joint centre the landmarks found, for the joints whose
    centre lies more than ``min_shift_mm`` from their box centre and at most half a box side away
    (a point further out is not trusted to move the box). Only the moved joints are returned.

    A joint's centre is the mean of its landmarks when all were found. A knee with some joint-line
    point missing moves onto its ``knee_center`` landmark when that was found: the detector's knee
    box can sit to one side of the knee (it learned from labels that do, docs/real-films.md), which
    puts the condyle and plateau margin of the other side near the box's edge, where they are
    missed; in a box on the knee centre they are found again (3 of 124 real EOS legs)."""
    from cpak_cli.networks.detector import joint_centres

    legs = {side: {n: p.xy for n, p in lm.items() if p.found} for side, lm in preds.items()}
    centres = joint_centres(legs)
    for side, found in legs.items():
        kc = found.get("knee_center")
        if "knee" not in centres.get(side, {}) and kc is not None:
            centres.setdefault(side, {})["knee"] = (float(kc[0]), float(kc[1]))
    row_mm, col_mm = spacing_mm
    out: dict[str, dict[str, Box]] = {}
    for side, joints in boxes.items():
        for joint, (x0, y0, x1, y1) in joints.items():
            c = centres.get(side, {}).get(joint)
            if c is None:
                continue
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            dx_mm, dy_mm = (c[0] - cx) * col_mm, (c[1] - cy) * row_mm
            shift = float(np.hypot(dx_mm, dy_mm))
            if min_shift_mm < shift <= 0.5 * min((x1 - x0) * col_mm, (y1 - y0) * row_mm):
                dx, dy = c[0] - cx, c[1] - cy
                out.setdefault(side, {})[joint] = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    return out
