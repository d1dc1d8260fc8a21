"""Human-check preview PNG: down-sampled film with the true landmarks, boxes, mechanical axes,
joint lines and angles drawn (the DICOM itself never carries any mark). Drawing is
:func:`cpak_cli.outputs.overlay.render_overlay`, the same as `cpak measure --overlay`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cpak_cli.outputs.overlay import render_overlay, write_png

if TYPE_CHECKING:  # pragma: no cover
    from .generate import PhantomCase


def preview_image(case: "PhantomCase", img: np.ndarray, max_height: int = 1600,
                  draw_boxes: bool = True) -> np.ndarray:
    """BGR uint8 preview. Aspect follows mm (anisotropic pixels are resampled)."""
    labels = {
        side: [f"{side.upper()} (truth)  CPAK {a['cpak']}", f"LDFA {a['ldfa']:.1f}  MPTA {a['mpta']:.1f}",
               f"aHKA {a['ahka']:+.1f}  JLO {a['jlo']:.1f}"]
        for side, a in case.angles.items()
    }
    hdr = (f"{case.name} seed {case.seed} {case.shape[1]}x{case.shape[0]} px "
           f"{case.spacing_mm[0]:.4f}x{case.spacing_mm[1]:.4f} mm {case.photometric} "
           f"{'R-on-left' if case.patient_right_on_image_left else 'FLIPPED'} {case.laterality}")
    return render_overlay(img.astype(np.float32), case.landmarks, labels, max_height=max_height, title=hdr,
                          spacing_mm=case.spacing_mm, boxes=case.boxes if draw_boxes else None)


def write_preview(case: "PhantomCase", img: np.ndarray, path: Path, max_height: int = 1600) -> None:
    write_png(path, preview_image(case, img, max_height))
