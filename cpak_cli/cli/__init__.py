"""The ``cpak`` command line: a thin layer over the Python API.

Each command lives in its own module with a ``register(app)`` function. Module tops import only
typer (and the standard library) so that ``cpak --help`` and ``cpak --version`` are fast.
"""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from cpak_cli import __version__

app = typer.Typer(
    name="cpak",
    help="Knee alignment (LDFA, MPTA, aHKA, JLO) and CPAK class from full-leg radiographs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cpak-cli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Knee alignment (LDFA, MPTA, aHKA, JLO) and CPAK class from full-leg radiographs."""


_COMMAND_MODULES = ("measure", "batch", "angles", "phantom", "train", "evaluate", "models")
for _name in _COMMAND_MODULES:
    importlib.import_module(f"cpak_cli.cli.{_name}").register(app)
