"""`cpak measure`: one radiograph -> landmarks, angles, CPAK type and flags per leg."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cpak_cli.cli.common import fail, guarded

EXIT_NOT_MEASURED = 1


def register(app: typer.Typer) -> None:
    @app.command("measure")
    @guarded
    def measure(
        scan: Path = typer.Argument(..., help="DICOM file (or PNG/TIFF with --pixel-spacing)."),
        boxes: Optional[Path] = typer.Option(None, "--boxes", help="Joint boxes JSON instead of the detector."),
        json_out: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
        landmarks_out: Optional[Path] = typer.Option(
            None, "--landmarks-out", help="Write the landmark JSON `cpak angles` reads."
        ),
        overlay: Optional[Path] = typer.Option(
            None, "--overlay", help="Write an overlay: .png, or .dcm for DICOM Secondary Capture."
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        pixel_spacing: Optional[tuple[float, float]] = typer.Option(
            None, "--pixel-spacing", metavar="ROW COL", help="Pixel spacing in mm (overrides the file's)."
        ),
        method: int = typer.Option(3, "--method", min=1, max=5, help="Landmark extraction method of the paper (1-5)."),
        weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Folder of model weights (default: shipped)."),
    ) -> None:
        """Measure LDFA, MPTA, aHKA, JLO, mHKA and CPAK type of each leg on a full-leg radiograph."""
        import json

        from cpak_cli.core.landmarks import write_landmarks
        from cpak_cli.input.boxes import read_boxes
        from cpak_cli.input.loader import load_image
        from cpak_cli.pipeline.film import Measurer

        image = load_image(scan, pixel_spacing=pixel_spacing)
        box_file = read_boxes(boxes) if boxes is not None else None
        measurer = Measurer(weights_dir=weights_dir, device=device, method=method, need_detector=box_file is None)
        result = measurer.measure(image, box_file)
        if landmarks_out is not None:
            write_landmarks(landmarks_out, result.to_landmark_file())
        if overlay is not None:
            from cpak_cli.outputs.overlay import overlay_for_result, write_overlay

            write_overlay(overlay, overlay_for_result(result), image.sop_instance_uid,
                          image.metadata.get("StudyInstanceUID"))
        if json_out:
            typer.echo(json.dumps(result.to_json(), indent=2, default=float))
        else:
            from cpak_cli.outputs.report import print_legs

            sp = image.spacing_mm
            print_legs(result.legs, title=f"{scan}  (spacing {sp[0]:g} x {sp[1]:g} mm, {image.spacing_source})")
            for note in result.notes:
                typer.echo(f"note: {note}")
        if not any(leg.measured for leg in result.legs.values()):
            reasons = "; ".join(f"{s}: {leg.error}" for s, leg in result.legs.items()) or "no leg found on the film"
            fail(f"{scan}: no leg could be measured ({reasons})", EXIT_NOT_MEASURED)
