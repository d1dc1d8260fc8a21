"""Overlay drawing: the radiograph with landmarks, mechanical axes, joint lines and angles.

Used by ``cpak measure --overlay`` and the phantom preview. Input points are image pixels
``(x, y)``; the picture is down-sampled to at most ``max_height`` rows for the PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cpak_cli.atomic import atomic_write_bytes
from cpak_cli.errors import CpakInputError

if TYPE_CHECKING:  # pragma: no cover
    from cpak_cli.pipeline.film import ScanResult

# BGR colours
_COL = {
    "femoral_head": (0, 200, 255),
    "femoral_condyle_lateral": (0, 255, 0),
    "femoral_condyle_medial": (0, 160, 0),
    "tibial_plateau_lateral": (255, 128, 0),
    "tibial_plateau_medial": (200, 80, 0),
    "knee_center": (0, 0, 255),
    "ankle_lateral": (255, 0, 255),
    "ankle_medial": (160, 0, 160),
}
_AXIS = (0, 255, 255)
_LINE = (255, 255, 0)


def render_overlay(
    pixels: np.ndarray,
    legs: Mapping[str, Mapping[str, Sequence[float] | None]],
    labels: Mapping[str, Sequence[str]] | None = None,
    max_height: int = 2000,
    title: str | None = None,
    spacing_mm: tuple[float, float] | None = None,
    boxes: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> np.ndarray:
    """An 8-bit BGR picture of ``pixels`` (float, bone bright) with each leg's geometry.

    ``legs[side][name]`` are pixel points (None = missing); ``labels[side]`` lines of text
    written next to that leg (e.g. angles and CPAK type); ``boxes[side][joint]`` crop boxes.
    With ``spacing_mm`` (row, col) anisotropic pixels are drawn with their true mm aspect.
    """
    import cv2

    img = np.asarray(pixels, dtype=np.float32)
    scale = min(1.0, max_height / img.shape[0])
    aspect = 1.0 if spacing_mm is None else spacing_mm[1] / spacing_mm[0]
    scale_x = scale * aspect
    small = cv2.resize(img, (max(1, round(img.shape[1] * scale_x)), max(1, round(img.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA) if (scale < 1 or aspect != 1) else img
    lo, hi = np.percentile(small, [0.5, 99.5])
    grey = np.clip((small - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    out = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    th = max(1, round(out.shape[0] / 900))
    r = max(3, round(out.shape[0] / 300))
    fs = max(0.4, out.shape[0] / 2000)

    def pt(p: Sequence[float]) -> tuple[int, int]:
        # pixel centre convention: scaled image pixel centre of source x is (x + 0.5) * scale - 0.5
        return (int(round((p[0] + 0.5) * scale_x - 0.5)), int(round((p[1] + 0.5) * scale - 0.5)))

    for side, joints in (boxes or {}).items():
        for box in joints.values():
            cv2.rectangle(out, pt((box[0], box[1])), pt((box[2], box[3])), (80, 200, 80), th, cv2.LINE_AA)
    for side, leg in legs.items():
        P = {n: leg.get(n) for n in _COL}
        if P["femoral_head"] is not None and P["knee_center"] is not None:
            cv2.line(out, pt(P["femoral_head"]), pt(P["knee_center"]), _AXIS, th, cv2.LINE_AA)
        if P["ankle_lateral"] is not None and P["ankle_medial"] is not None and P["knee_center"] is not None:
            ac = ((P["ankle_lateral"][0] + P["ankle_medial"][0]) / 2, (P["ankle_lateral"][1] + P["ankle_medial"][1]) / 2)
            cv2.line(out, pt(P["knee_center"]), pt(ac), _AXIS, th, cv2.LINE_AA)
            cv2.line(out, pt(P["ankle_lateral"]), pt(P["ankle_medial"]), _LINE, th, cv2.LINE_AA)
        for a, b in (("femoral_condyle_lateral", "femoral_condyle_medial"), ("tibial_plateau_lateral", "tibial_plateau_medial")):
            if P[a] is not None and P[b] is not None:
                pa, pb = np.array(P[a], float), np.array(P[b], float)
                d = pb - pa
                cv2.line(out, pt(pa - 0.3 * d), pt(pb + 0.3 * d), _LINE, th, cv2.LINE_AA)
        for n, p in P.items():
            if p is not None:
                cv2.circle(out, pt(p), r, _COL[n], th, cv2.LINE_AA)
        if labels and side in labels and P["knee_center"] is not None:
            # text block above the knee, against the image border on that leg's side
            x_knee, y_knee = pt(P["knee_center"])
            size = fs * 0.7
            lines = list(labels[side])
            widths = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, size, th)[0][0] for t in lines]
            line_h = int(26 * fs) + 2
            y0 = max(line_h, y_knee - int(0.12 * out.shape[0]))
            for k, (text, w) in enumerate(zip(lines, widths)):
                x = 4 if x_knee < out.shape[1] / 2 else max(4, out.shape[1] - w - 4)
                yy = y0 + k * line_h
                cv2.putText(out, text, (x, yy), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), th + 2, cv2.LINE_AA)
                cv2.putText(out, text, (x, yy), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), th, cv2.LINE_AA)
    if title:
        size = fs * 0.5
        while size > 0.2 and cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, size, 1)[0][0] > out.shape[1] - 8:
            size *= 0.9
        y = out.shape[0] - 6
        cv2.putText(out, title, (4, y), cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, title, (4, y), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_png(path: str | Path, bgr: np.ndarray) -> Path:
    """Write a BGR picture as PNG atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise CpakInputError(path, "could not encode the overlay PNG")
    return atomic_write_bytes(path, buf.tobytes())


def write_overlay(path: str | Path, bgr: np.ndarray, source_path: str | Path | None = None,
                  anonymize_salt: str | None = None) -> Path:
    """PNG, or DICOM Secondary Capture (:mod:`cpak_cli.outputs.dicom_sc`) when the name ends in .dcm.

    ``source_path`` (the measured film) and ``anonymize_salt`` are for the Secondary Capture.
    """
    if str(path).lower().endswith(".dcm"):
        from cpak_cli.outputs.dicom_sc import write_secondary_capture

        return write_secondary_capture(path, bgr, source_path, anonymize_salt=anonymize_salt)
    return write_png(path, bgr)


def overlay_for_result(result: "ScanResult", max_height: int = 2000, title: str | None = None) -> np.ndarray:
    """The overlay of a measured scan: found landmarks, axes, and per-leg angle labels."""
    legs = {side: {n: p.xy for n, p in preds.items()} for side, preds in result.landmarks.items()}
    labels = {}
    for side, leg in result.legs.items():
        if leg.measured:
            labels[side] = [
                f"{side.upper()}  CPAK {leg.cpak}",
                f"LDFA {leg.ldfa:.1f}  MPTA {leg.mpta:.1f}",
                f"aHKA {leg.ahka:.1f}  JLO {leg.jlo:.1f}",
            ] + ([", ".join(leg.flags)] if leg.flags else [])
        else:
            labels[side] = [f"{side.upper()}: not measured"]
    assert result.image is not None
    return render_overlay(result.image.pixels, legs, labels, max_height=max_height, title=title or result.path,
                          spacing_mm=result.image.spacing_mm)
