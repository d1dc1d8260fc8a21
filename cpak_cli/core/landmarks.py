"""Landmark names, joint groups and the landmark JSON file format.

Coordinates are pixel ``(x, y)`` of the original image (x = column, y = row, origin at the
centre of the top-left pixel); see docs/conventions.md.
"""

from __future__ import annotations

from typing import Final

LANDMARKS: Final[tuple[str, ...]] = (
    "femoral_head",
    "femoral_condyle_lateral",
    "femoral_condyle_medial",
    "tibial_plateau_lateral",
    "tibial_plateau_medial",
    "knee_center",
    "ankle_lateral",
    "ankle_medial",
)

JOINTS: Final[dict[str, tuple[str, ...]]] = {
    "hip": ("femoral_head",),
    "knee": (
        "femoral_condyle_lateral",
        "femoral_condyle_medial",
        "tibial_plateau_lateral",
        "tibial_plateau_medial",
        "knee_center",
    ),
    "ankle": ("ankle_lateral", "ankle_medial"),
}

SIDES: Final[tuple[str, ...]] = ("right", "left")

# --------------------------------------------------------------------------- JSON file format
import json  # noqa: E402
import math  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from cpak_cli.atomic import atomic_write_text  # noqa: E402
from cpak_cli.errors import CpakInputError  # noqa: E402

Leg = dict[str, "tuple[float, float] | None"]


@dataclass
class LandmarkFile:
    """One image's landmarks: pixel ``(x, y)`` per patient side and landmark name.

    ``spacing_mm`` is ``(row_mm, col_mm)`` or None when the file does not give it.
    ``extra`` keeps every other top-level key so a read/write round trip loses nothing.
    """

    image: str | None
    spacing_mm: tuple[float, float] | None
    legs: dict[str, Leg]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def patient_right_on_image_left(self) -> bool:
        """Display orientation of the image (default True, the standard AP display)."""
        value = self.extra.get("patient_right_on_image_left")
        return True if value is None else bool(value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image}
        out["pixel_spacing_mm"] = None if self.spacing_mm is None else list(self.spacing_mm)
        out["legs"] = {
            side: {n: (None if p is None else [float(p[0]), float(p[1])]) for n, p in leg.items()}
            for side, leg in self.legs.items()
        }
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out


def _point(path: Path, side: str, name: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise CpakInputError(path, f"legs.{side}.{name} must be [x, y] numbers or null, got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    return (x, y)


def parse_landmarks(data: Any, path: str | Path = "<landmarks>") -> LandmarkFile:
    """Validate a decoded landmark JSON object (see README) and return a :class:`LandmarkFile`."""
    path = Path(path)
    if not isinstance(data, dict):
        raise CpakInputError(path, "landmark file must be a JSON object")
    legs_in = data.get("legs")
    if not isinstance(legs_in, dict):
        raise CpakInputError(path, 'landmark file has no "legs" object')
    unknown_sides = [s for s in legs_in if s not in SIDES]
    if unknown_sides:
        raise CpakInputError(path, f"unknown leg side(s) {unknown_sides}; use 'right'/'left' (the patient's)")
    legs: dict[str, Leg] = {}
    for side, leg in legs_in.items():
        if leg is None:
            continue
        if not isinstance(leg, dict):
            raise CpakInputError(path, f"legs.{side} must be an object of landmark -> [x, y]")
        unknown = [n for n in leg if n not in LANDMARKS]
        if unknown:
            raise CpakInputError(path, f"legs.{side}: unknown landmark name(s) {unknown}")
        legs[side] = {n: _point(path, side, n, leg.get(n)) for n in LANDMARKS}
    spacing = data.get("pixel_spacing_mm")
    spacing_mm: tuple[float, float] | None = None
    if spacing is not None:
        if (
            not isinstance(spacing, (list, tuple))
            or len(spacing) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spacing)
        ):
            raise CpakInputError(path, f"pixel_spacing_mm must be [row_mm, col_mm] > 0, got {spacing!r}")
        spacing_mm = (float(spacing[0]), float(spacing[1]))
    extra = {k: v for k, v in data.items() if k not in ("image", "pixel_spacing_mm", "legs")}
    orient = extra.get("patient_right_on_image_left")
    if orient is not None and not isinstance(orient, bool):
        raise CpakInputError(path, f"patient_right_on_image_left must be true or false, got {orient!r}")
    image = data.get("image")
    return LandmarkFile(image=None if image is None else str(image), spacing_mm=spacing_mm, legs=legs, extra=extra)


def read_landmarks(path: str | Path) -> LandmarkFile:
    """Read and validate a landmark JSON file; bad files raise :class:`CpakInputError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CpakInputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CpakInputError(path, f"cannot read file ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CpakInputError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_landmarks(data, path)


def write_landmarks(path: str | Path, lf: LandmarkFile) -> Path:
    """Write a landmark file atomically (pretty-printed JSON)."""
    return atomic_write_text(path, json.dumps(lf.to_json(), indent=2) + "\n")
