"""Writing phantom cases to disk: :func:`write_case` (one case) and :func:`generate` (a set).

Per case ``caseNNNN``: the DICOM film (:mod:`cpak_cli.phantom.dicom_writer`), the landmark JSON
(pixel ``(x, y)`` of the film, x = column, y = row, origin at the centre of the top-left pixel;
``pixel_spacing_mm`` = effective ``(row_mm, col_mm)``; the true angles in degrees), the boxes
JSON (``[x0, y0, x1, y1]`` pixels per side and joint) and optionally a preview PNG. Every file
is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cpak_cli.core.landmarks import LANDMARKS

from ..atomic import atomic_write_text
from .generate import PhantomCase, make_case, render
from .spec import PhantomOptions


def landmarks_json(case: PhantomCase, image_name: str) -> dict[str, Any]:
    legs = {s: {n: (list(case.landmarks[s][n]) if n in case.landmarks[s] else None) for n in LANDMARKS}
            for s in case.landmarks}
    return {
        "image": image_name,
        "pixel_spacing_mm": [case.spacing_mm[0], case.spacing_mm[1]],
        "legs": legs,
        "truth": {s: dict(case.angles[s]) for s in case.angles},
        "phantom": {"seed": case.seed, "index": case.index, "shape": list(case.shape),
                    "spacing_tag": case.spacing_tag, "magnification": case.magnification,
                    "photometric": case.photometric, "compression": case.compression,
                    "patient_right_on_image_left": case.patient_right_on_image_left,
                    "laterality": case.laterality, "options": case.options,
                    "params": {k: v for k, v in case.params.items() if k != "render"}},
    }


def write_case(case: PhantomCase, out_dir: Path, preview: bool = False) -> dict[str, Path]:
    """Render and write ``caseNNNN.dcm``, ``caseNNNN.landmarks.json``, ``caseNNNN.boxes.json``
    (and ``caseNNNN.preview.png``) into ``out_dir``; returns the paths by kind."""
    from .dicom_writer import write_dicom

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    img = render(case)
    dcm = out_dir / f"{case.name}.dcm"
    write_dicom(case, img, dcm)
    lm = out_dir / f"{case.name}.landmarks.json"
    atomic_write_text(lm, json.dumps(landmarks_json(case, dcm.name), indent=1))
    bx = out_dir / f"{case.name}.boxes.json"
    atomic_write_text(bx, json.dumps({"image": dcm.name, "boxes": case.boxes}, indent=1))
    paths = {"dicom": dcm, "landmarks": lm, "boxes": bx}
    if preview:
        from .preview import write_preview

        pv = out_dir / f"{case.name}.preview.png"
        write_preview(case, img, pv)
        paths["preview"] = pv
    return paths


def generate(out_dir: Path, count: int, seed: int, start: int = 0, progress: bool = True,
             preview: bool = False, **options: Any) -> list[dict[str, Path]]:
    """Write cases ``start .. start+count-1`` of set ``seed`` into ``out_dir``."""
    PhantomOptions.from_kwargs(**options)  # validate early
    out: list[dict[str, Path]] = []
    indices = range(start, start + count)
    if progress and count > 1:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("phantom"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as pb:
            task = pb.add_task("phantom", total=count)
            for i in indices:
                out.append(write_case(make_case(seed, i, **options), Path(out_dir), preview=preview))
                pb.advance(task)
    else:
        for i in indices:
            out.append(write_case(make_case(seed, i, **options), Path(out_dir), preview=preview))
    return out
