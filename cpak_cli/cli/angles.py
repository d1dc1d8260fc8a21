"""`cpak angles`: angles and CPAK type from a landmark JSON file (hand-made or corrected)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cpak_cli.cli.common import fail, guarded


def register(app: typer.Typer) -> None:
    @app.command("angles")
    @guarded
    def angles(
        file: Path = typer.Argument(..., help="Landmark JSON file (format in README)."),
        json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON (full precision)."),
        pixel_spacing: Optional[tuple[float, float]] = typer.Option(
            None, "--pixel-spacing", metavar="ROW COL", help="Pixel spacing in mm (overrides the file's)."
        ),
    ) -> None:
        """Compute LDFA, MPTA, aHKA, JLO, mHKA and CPAK type per leg from landmark coordinates."""
        import json

        from cpak_cli.api import angles_from_file

        result = angles_from_file(file, pixel_spacing=pixel_spacing)
        if json_out:
            typer.echo(json.dumps(result.to_json(), indent=2))
        else:
            from cpak_cli.outputs.report import print_legs

            print_legs(result.legs, title=f"{file}  (spacing {result.spacing_mm[0]:g} x {result.spacing_mm[1]:g} mm)")
        if not any(leg.measured for leg in result.legs.values()):
            fail(f"{file}: no leg could be measured")
