"""`cpak evaluate`: the paper's metrics for predicted vs true landmark files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cpak_cli.cli.common import guarded


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @guarded
    def evaluate(
        pred: Path = typer.Argument(..., help="Predicted landmark JSON file or folder."),
        truth: Path = typer.Argument(..., help="Truth landmark JSON file or folder (matched by case name)."),
        json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write the full report as JSON."),
        csv_out: Optional[Path] = typer.Option(None, "--csv-out", help="Write one row per leg as CSV."),
    ) -> None:
        """Landmark error (median, IQR, p95, SDR), angle MedAE and CPAK precision/recall/F1."""
        from rich.console import Console
        from rich.table import Table

        from cpak_cli.api import evaluate_landmark_files
        from cpak_cli.evaluation.files import format_summary

        report = evaluate_landmark_files(pred, truth, json_out, csv_out)
        table = Table(title=f"{report['n_images']} images, {report['n_legs']} legs")
        table.add_column("metric")
        table.add_column("value")
        for label, value in format_summary(report):
            table.add_row(label, value)
        Console(width=160).print(table)
