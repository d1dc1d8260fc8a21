"""`cpak measure`: radiographs -> landmarks, angles, CPAK type and flags per leg (one call into the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cpak_cli.cli.common import EXIT_INPUT_ERROR, guarded

EXIT_NOT_MEASURED = 1


def register(app: typer.Typer) -> None:
    @app.command("measure")
    @guarded
    def measure(
        scans: list[Path] = typer.Argument(
            ..., help="DICOM files (or PNG/TIFF with --pixel-spacing); several share one model load."
        ),
        boxes: Optional[Path] = typer.Option(None, "--boxes", help="Joint boxes JSON instead of the detector."),
        json_out: bool = typer.Option(
            False, "--json", help="Print the full result as JSON (one object per film; a list for several)."
        ),
        landmarks_out: Optional[Path] = typer.Option(
            None, "--landmarks-out", help="Write the landmark JSON `cpak angles` reads ({stem}: the input's name)."
        ),
        overlay: Optional[Path] = typer.Option(
            None, "--overlay", help="Write an overlay: .png, or .dcm for DICOM Secondary Capture ({stem}: the input's name)."
        ),
        sr: Optional[Path] = typer.Option(
            None, "--sr", help="Write a DICOM SR (TID 1500 measurement report in the film's study; DICOM films) "
                               "({stem}: the input's name)."
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        pixel_spacing: Optional[tuple[float, float]] = typer.Option(
            None, "--pixel-spacing", metavar="ROW COL", help="Pixel spacing in mm (overrides the file's)."
        ),
        method: int = typer.Option(3, "--method", min=1, max=5, help="Landmark extraction method of the paper (1-5)."),
        weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Folder of model weights (default: shipped)."),
    ) -> None:
        """Measure LDFA, MPTA, aHKA, JLO, mHKA and CPAK type of each leg on full-leg radiographs.

        Exit 0 when every film had a leg measured, 1 when a film had none, 2 when a film could not
        be read (each such film gets one error line; the others are still measured)."""
        import json

        from cpak_cli import api

        options = api.MeasureOptions(weights_dir=weights_dir, device=device, method=method, pixel_spacing=pixel_spacing)
        outputs = api.FilmOutputs(landmarks=landmarks_out, overlay=overlay, sr=sr)
        documents: list[dict] = []
        code = 0
        for outcome in api.measure_files(scans, options, outputs, boxes):
            if outcome.result is None:
                typer.echo(f"error: {outcome.error}", err=True)
                code = EXIT_INPUT_ERROR
                documents.append({"image": outcome.path, "error": outcome.error})
                continue
            result = outcome.result
            if json_out:
                documents.append(result.to_json())
            else:
                from cpak_cli.outputs.report import print_legs

                image = result.image
                sp = image.spacing_mm if image is not None else (0.0, 0.0)
                source = image.spacing_source if image is not None else ""
                print_legs(result.legs, title=f"{outcome.path}  (spacing {sp[0]:g} x {sp[1]:g} mm, {source})")
                for note in result.notes:
                    typer.echo(f"note: {note}")
            if not outcome.measured:
                typer.echo(f"error: {outcome.not_measured_reason()}", err=True)
                code = code or EXIT_NOT_MEASURED
        if json_out and len(scans) > 1:
            typer.echo(json.dumps(documents, indent=2, default=float))
        elif json_out and code != EXIT_INPUT_ERROR:  # one film that was read
            typer.echo(json.dumps(documents[0], indent=2, default=float))
        if code:
            raise typer.Exit(code)
