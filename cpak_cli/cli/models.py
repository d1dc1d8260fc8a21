"""`cpak models`: list the model weights (name, joint, encoder, size, sha256 check, accuracy)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cpak_cli.cli.common import fail, guarded


def register(app: typer.Typer) -> None:
    @app.command("models")
    @guarded
    def models_cmd(
        weights_dir: Optional[Path] = typer.Option(
            None, "--weights-dir", help="Weights folder (default: $CPAK_WEIGHTS_DIR, else the weights inside the package, "
                                        "cpak_cli/weights/)."
        ),
        check: bool = typer.Option(False, "--check", help="Also build each model and load it strictly (slower)."),
        json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """List the installed models and check each file's sha256 against its model card."""
        import json

        from cpak_cli.api import list_models
        from cpak_cli.networks.model_cards import MAX_TOTAL_BYTES

        folder, entries = list_models(weights_dir, check)
        total = sum(e["size_bytes"] or 0 for e in entries)
        if json_out:
            typer.echo(json.dumps({"weights_dir": str(folder), "total_bytes": total, "models": entries}, indent=2))
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=f"models in {folder}")
            for col in ("name", "joint", "encoder", "input", "size MB", "sha ok", "accuracy"):
                table.add_column(col, justify="right" if col in ("input", "size MB") else "left")
            for e in entries:
                ok = "yes" if e["valid"] else ("no" if e["sha_ok"] is False else "error")
                table.add_row(
                    str(e["name"]), str(e["joint"] or "-"), str(e["encoder"] or "-"), str(e["input_size"] or "-"),
                    "-" if e["size_mb"] is None else f"{e['size_mb']:.2f}", ok, e["accuracy_summary"],
                )
            console = Console()
            console.print(table)
            console.print(f"total {total / 2**20:.2f} MiB (budget {MAX_TOTAL_BYTES // 2**20} MiB)")
            for e in entries:
                if e["error"]:
                    console.print(f"[red]{e['name']}: {e['error']}[/]", soft_wrap=True)
        if not entries:
            fail(f"{folder}: no models found")
        if any(not e["valid"] for e in entries):
            raise typer.Exit(2)
