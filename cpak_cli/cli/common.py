"""Shared CLI plumbing: one-line errors, exit codes, consoles. Imports nothing heavy."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def fail(message: str, code: int = EXIT_INPUT_ERROR) -> None:
    """Print one line to stderr and exit with ``code``."""
    line = " ".join(str(message).split())
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def guarded(fn: F) -> F:
    """Turn CpakError into a one-line message (exit 2) and any other crash into one line (exit 3).

    Set ``CPAK_DEBUG=1`` to see the traceback of an unexpected error.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cpak_cli.errors import CpakError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except CpakError as exc:
            fail(str(exc), EXIT_INPUT_ERROR)
        except Exception as exc:  # noqa: BLE001 - the CLI boundary: never a traceback
            if os.environ.get("CPAK_DEBUG"):
                raise
            fail(f"internal error: {exc.__class__.__name__}: {exc} (set CPAK_DEBUG=1 for details)", EXIT_INTERNAL_ERROR)

    return wrapper  # type: ignore[return-value]
