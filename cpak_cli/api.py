"""Python API: what the CLI commands call, usable from a notebook too."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpak_cli import __version__
from cpak_cli.core.landmarks import SIDES, read_landmarks
from cpak_cli.core.measurement import LegMeasurement, measure_leg
from cpak_cli.errors import CpakInputError


@dataclass
class AnglesResult:
    """Angles of every leg found in one landmark file."""

    source: str
    spacing_mm: tuple[float, float]
    legs: dict[str, LegMeasurement]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pixel_spacing_mm": list(self.spacing_mm),
            "legs": {side: leg.to_json() for side, leg in self.legs.items()},
            "tool_version": __version__,
        }


def angles_from_file(path: str | Path, pixel_spacing: tuple[float, float] | None = None) -> AnglesResult:
    """Measure every leg of a landmark JSON file; ``pixel_spacing`` (row, col mm) overrides the file's."""
    lf = read_landmarks(path)
    spacing = pixel_spacing if pixel_spacing is not None else lf.spacing_mm
    if spacing is None:
        raise CpakInputError(path, "no pixel_spacing_mm in the file; pass --pixel-spacing ROW COL")
    if not (spacing[0] > 0 and spacing[1] > 0):
        raise CpakInputError(path, f"pixel spacing must be > 0, got {spacing}")
    if not lf.legs:
        raise CpakInputError(path, "the file has no legs")
    legs = {
        side: measure_leg(side, lf.legs[side], spacing, patient_right_on_image_left=lf.patient_right_on_image_left)
        for side in SIDES
        if side in lf.legs
    }
    return AnglesResult(source=str(path), spacing_mm=(float(spacing[0]), float(spacing[1])), legs=legs)
