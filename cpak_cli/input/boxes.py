"""Joint crop boxes and their JSON file format.

A box is ``[x0, y0, x1, y1]`` in pixel coordinates of the original image (x = column, y = row,
origin at the centre of the top-left pixel); the crop covers ``x0 <= x <= x1, y0 <= y <= y1``.
Boxes are about square in mm and may extend past the image border.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.landmarks import JOINTS, SIDES
from cpak_cli.errors import CpakInputError

Box = tuple[float, float, float, float]

#: Default box side per joint in mm (what the detector produces; the phantom draws around these).
BOX_SIDE_MM: Final[dict[str, float]] = {"hip": 120.0, "knee": 135.0, "ankle": 90.0}


@dataclass
class BoxFile:
    """Boxes of one image: ``boxes[side][joint] = (x0, y0, x1, y1)`` in pixels."""

    image: str | None
    boxes: dict[str, dict[str, Box]]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "boxes": {s: {j: [float(v) for v in b] for j, b in jb.items()} for s, jb in self.boxes.items()},
        }
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out


def square_box(center_xy: tuple[float, float], side_mm: float, spacing_mm: tuple[float, float]) -> Box:
    """A box ``side_mm`` wide and high (in mm) centred on a pixel point; spacing is (row, col)."""
    row_mm, col_mm = spacing_mm
    hx = side_mm / col_mm / 2.0
    hy = side_mm / row_mm / 2.0
    cx, cy = center_xy
    return (cx - hx, cy - hy, cx + hx, cy + hy)


def parse_boxes(data: Any, path: str | Path = "<boxes>") -> BoxFile:
    """Validate a decoded boxes JSON object and return a :class:`BoxFile`."""
    path = Path(path)
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), dict):
        raise CpakInputError(path, 'boxes file must be a JSON object with a "boxes" object')
    out: dict[str, dict[str, Box]] = {}
    for side, joints in data["boxes"].items():
        if side not in SIDES:
            raise CpakInputError(path, f"unknown side {side!r} in boxes; use 'right'/'left'")
        if joints is None:
            continue
        if not isinstance(joints, dict):
            raise CpakInputError(path, f"boxes.{side} must be an object of joint -> [x0, y0, x1, y1]")
        out[side] = {}
        for joint, box in joints.items():
            if joint not in JOINTS:
                raise CpakInputError(path, f"unknown joint {joint!r} in boxes.{side}; use hip/knee/ankle")
            if box is None:
                continue
            ok = (
                isinstance(box, (list, tuple))
                and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
            )
            if not ok or not (box[0] < box[2] and box[1] < box[3]):
                raise CpakInputError(path, f"boxes.{side}.{joint} must be [x0, y0, x1, y1] with x0<x1, y0<y1")
            out[side][joint] = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    extra = {k: v for k, v in data.items() if k not in ("image", "boxes")}
    image = data.get("image")
    return BoxFile(image=None if image is None else str(image), boxes=out, extra=extra)


def read_boxes(path: str | Path) -> BoxFile:
    """Read and validate a boxes JSON file; bad files raise :class:`CpakInputError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CpakInputError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise CpakInputError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CpakInputError(path, f"cannot read file ({exc.__class__.__name__})") from None
    return parse_boxes(data, path)


def write_boxes(path: str | Path, bf: BoxFile) -> Path:
    """Write a boxes file atomically."""
    return atomic_write_text(path, json.dumps(bf.to_json(), indent=2) + "\n")
