"""`cpak batch`: every DICOM in a folder tree -> one CSV row per leg (error row per bad file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from cpak_cli.cli.common import fail, guarded


def register(app: typer.Typer) -> None:
    @app.command("batch")
    @guarded
    def batch(
        folder: Path = typer.Argument(..., help="Folder of DICOM files (.dcm or extension-less)."),
        csv_out: Path = typer.Option(..., "--csv", help="Output CSV (one row per leg)."),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
        resume: bool = typer.Option(False, "--resume", help="Skip inputs already in the CSV and append the rest."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing CSV."),
        overlays: Optional[Path] = typer.Option(None, "--overlays", help="Write an overlay PNG per scan into this folder."),
        sr_dir: Optional[Path] = typer.Option(
            None, "--sr-dir", help="Write a DICOM SR per film into this folder (named after the input; hashed with --anonymize)."
        ),
        report: Optional[Path] = typer.Option(
            None, "--report", help="Write one self-contained HTML report of the whole CSV (CPAK grid, histograms, "
            "a thumbnail per film; thumbnails kept in CSV.thumbs/)."
        ),
        workers: int = typer.Option(2, "--workers", min=1, help="Decoding worker processes."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        anonymize: bool = typer.Option(
            False, "--anonymize", help="Replace paths and UIDs by salted hashes and blank the text burned into overlay images."
        ),
        salt: Optional[str] = typer.Option(None, "--salt", help="Salt for --anonymize (or env CPAK_ANON_SALT)."),
        pixel_spacing: Optional[tuple[float, float]] = typer.Option(
            None, "--pixel-spacing", metavar="ROW COL", help="Pixel spacing in mm for files without one."
        ),
        weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Folder of model weights."),
        chunk: int = typer.Option(4, "--chunk", min=1, help="Scans whose crops share one forward pass."),
        engine: str = typer.Option("local", "--engine",
                                   help="local, or ray: Ray Data tasks on this machine or a Ray cluster."),
        ray_address: Optional[str] = typer.Option(
            None, "--ray-address", metavar="ADDR",
            help="With --engine ray: the Ray cluster (HOST:6379 or auto); default: RAY_ADDRESS or a new local Ray."),
    ) -> None:
        """Measure every radiograph in a folder into a CSV an auditor can trust (resumable)."""
        import time

        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from cpak_cli import api
        from cpak_cli.heap import reuse_freed_memory

        reuse_freed_memory()  # this process does only this batch: arrays freed and allocated again reuse their pages

        salt = salt or os.environ.get("CPAK_ANON_SALT")
        if anonymize and not salt:
            fail("--anonymize needs --salt TEXT (or CPAK_ANON_SALT) so that hashes are reproducible")
        options = api.MeasureOptions(weights_dir=weights_dir, device=device, pixel_spacing=pixel_spacing)
        batch_options = api.BatchOptions(recursive=recursive, resume=resume, overwrite=overwrite, workers=workers,
                                         chunk=chunk, overlays=overlays, sr_dir=sr_dir,
                                         anonymize_salt=salt if anonymize else None, report=report,
                                         engine=engine, ray_address=ray_address)
        start = time.monotonic()
        # the display starts with the first film: no display thread exists while the decode workers
        # are forked (fork is only used from a single-threaded process, cpak_cli.input.cage)
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=False)
        task = progress.add_task("measuring", total=None, status="")

        def on_file(s):  # noqa: ANN001
            if not progress.live.is_started:
                progress.start()
            rate = s.files / max(time.monotonic() - start, 1e-6)
            progress.update(task, total=s.total or None, completed=s.files + s.skipped,
                            status=f"failed {s.failed}  legs {s.legs}  {rate:.2f} files/s")

        try:
            summary = api.run_batch(folder, csv_out, options, batch_options, on_file=on_file)
            progress.update(task, completed=summary.files + summary.skipped)
        except KeyboardInterrupt:
            progress.stop()
            typer.echo(f"interrupted: the finished rows are in {csv_out}; continue with --resume", err=True)
            raise typer.Exit(130) from None
        finally:
            progress.stop()
        typer.echo(
            f"{summary.files} files measured ({summary.legs} leg rows, {summary.failed} error rows), "
            f"{summary.skipped} skipped as already in {csv_out}"
        )
        if report is not None:
            typer.echo(f"report: {report}")
