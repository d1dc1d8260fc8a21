"""``cpak phantom``: write digital-phantom long-leg films (DICOM + truth JSON + boxes)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: "typer.Typer") -> None:
    """Add the ``phantom`` command to ``app``."""

    @app.command("phantom")
    def phantom(
        out: Path = typer.Option(..., "--out", help="Output folder (created if missing)."),
        count: int = typer.Option(1, "--count", min=1, help="Number of cases."),
        seed: int = typer.Option(0, "--seed", help="Set seed: same seed + index = same case."),
        start: int = typer.Option(0, "--start", min=0, help="Index of the first case."),
        preview: bool = typer.Option(False, "--preview", help="Also write caseNNNN.preview.png with the truth drawn."),
        scale: float = typer.Option(1.0, "--scale", help="Pixels per mm factor (0.1 = 10x coarser, tiny files)."),
        small: bool = typer.Option(False, "--small", help="Tiny films for tests (max 512 px)."),
        max_size: Optional[int] = typer.Option(None, "--max-size", help="Largest image side in pixels."),
        compression: str = typer.Option("none", "--compression", help="none | rle | jpeg2000 | mixed."),
        single_leg_fraction: float = typer.Option(0.0, "--single-leg-fraction", min=0.0, max=1.0),
        missing_ankle_fraction: float = typer.Option(0.0, "--missing-ankle-fraction", min=0.0, max=1.0),
        flipped_fraction: float = typer.Option(0.0, "--flipped-fraction", min=0.0, max=1.0,
                                               help="Films with the patient's right on the image right (R\\F)."),
        monochrome1_fraction: float = typer.Option(0.2, "--monochrome1-fraction", min=0.0, max=1.0),
        tka_fraction: float = typer.Option(0.06, "--tka-fraction", min=0.0, max=1.0),
        plate_fraction: float = typer.Option(0.03, "--plate-fraction", min=0.0, max=1.0),
        no_distractors: bool = typer.Option(False, "--no-distractors", help="No ball, marker, ruler, text, seams."),
        variety: bool = typer.Option(False, "--variety", help="Wide variety towards real films: children with open "
                                     "physes, osteoarthritis, thin..obese soft tissue, flexion, gonad shields, "
                                     "collimation, EOS / DR looks, 8..16 bits."),
    ) -> None:
        """Generate phantom standing AP long-leg radiographs with exact landmarks."""
        from ..errors import CpakError

        try:
            if compression not in ("none", "rle", "jpeg2000", "mixed"):
                raise ValueError(f"--compression must be none, rle, jpeg2000 or mixed, not {compression!r}")
            if not scale > 0:
                raise ValueError("--scale must be > 0")
            from ..phantom import generate

            opts = dict(scale=scale, max_size=512 if small and max_size is None else max_size,
                        compression=compression, single_leg_fraction=single_leg_fraction,
                        missing_ankle_fraction=missing_ankle_fraction, flipped_fraction=flipped_fraction,
                        monochrome1_fraction=monochrome1_fraction, tka_fraction=tka_fraction,
                        plate_fraction=plate_fraction, distractors=not no_distractors)
            if variety:
                opts["variety"] = True
            paths = generate(out, count, seed, start=start, progress=count > 1, preview=preview, **opts)
        except (CpakError, ValueError, OSError) as err:
            typer.echo(" ".join(f"phantom: {err}".split()), err=True)
            raise typer.Exit(2)
        typer.echo(f"wrote {len(paths)} case(s) to {out}")
