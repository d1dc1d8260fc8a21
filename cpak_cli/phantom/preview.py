"""Human-check preview PNG: down-sampled film with the true landmarks, mechanical axes,
joint lines and angles drawn (the DICOM itself never carries any mark)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .generate import PhantomCase

COLORS = {  # BGR
    "femoral_head": (0, 255, 255), "femoral_condyle_lateral": (0, 128, 255),
    "femoral_condyle_medial": (255, 128, 0), "tibial_plateau_lateral": (0, 0, 255),
    "tibial_plateau_medial": (255, 0, 0), "knee_center": (0, 255, 0),
    "ankle_lateral": (0, 0, 255), "ankle_medial": (255, 0, 0),
}


def preview_image(case: "PhantomCase", img: np.ndarray, max_height: int = 1600,
                  draw_boxes: bool = True) -> np.ndarray:
    """BGR uint8 preview. Aspect follows mm (anisotropic pixels are resampled)."""
    import cv2

    rows, cols = img.shape
    row_mm, col_mm = case.spacing_mm
    f = min(1.0, max_height / rows)
    fx = f * col_mm / row_mm
    small = cv2.resize(img.astype(np.float32), (max(1, int(round(cols * fx))), max(1, int(round(rows * f)))),
                       interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(small, [0.5, 99.7])
    g = np.clip((small - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    bgr = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)

    def P(pt):
        return (int(round(pt[0] * fx)), int(round(pt[1] * f)))

    for side, pts in case.landmarks.items():
        if draw_boxes:
            for joint, b in case.boxes.get(side, {}).items():
                cv2.rectangle(bgr, P((b[0], b[1])), P((b[2], b[3])), (80, 200, 80), 1)
        def line(a, b, col, th=1):
            if a in pts and b in pts:
                cv2.line(bgr, P(pts[a]), P(pts[b]), col, th, cv2.LINE_AA)
        line("femoral_head", "knee_center", (0, 255, 255))
        line("femoral_condyle_lateral", "femoral_condyle_medial", (0, 165, 255))
        line("tibial_plateau_lateral", "tibial_plateau_medial", (255, 0, 255))
        line("ankle_lateral", "ankle_medial", (255, 255, 0))
        if "ankle_lateral" in pts and "ankle_medial" in pts and "knee_center" in pts:
            ac = ((pts["ankle_lateral"][0] + pts["ankle_medial"][0]) / 2, (pts["ankle_lateral"][1] + pts["ankle_medial"][1]) / 2)
            cv2.line(bgr, P(pts["knee_center"]), P(ac), (0, 255, 255), 1, cv2.LINE_AA)
        for name, pt in pts.items():
            cv2.circle(bgr, P(pt), 3, COLORS[name], 1, cv2.LINE_AA)
        a = case.angles.get(side)
        if a and "knee_center" in pts:
            kx, ky = P(pts["knee_center"])
            txt = [f"{side[0].upper()} LDFA {a['ldfa']:.1f}", f"MPTA {a['mpta']:.1f}",
                   f"aHKA {a['ahka']:+.1f} JLO {a['jlo']:.1f}", f"CPAK {a['cpak']}"]
            x = max(2, min(bgr.shape[1] - 150, kx - 60))
            for i, t in enumerate(txt):
                cv2.putText(bgr, t, (x, ky - 120 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 255, 0), 1, cv2.LINE_AA)
    hdr = (f"{case.name} seed {case.seed} {case.shape[1]}x{case.shape[0]} px "
           f"{case.spacing_mm[0]:.4f}x{case.spacing_mm[1]:.4f} mm {case.photometric} "
           f"{'R-on-left' if case.patient_right_on_image_left else 'FLIPPED'} {case.laterality}")
    cv2.putText(bgr, hdr, (4, bgr.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 255, 0), 1, cv2.LINE_AA)
    return bgr


def write_preview(case: "PhantomCase", img: np.ndarray, path: Path, max_height: int = 1600) -> None:
    import cv2

    cv2.imwrite(str(path), preview_image(case, img, max_height))
