"""Exceptions that the CLI turns into one-line messages (never tracebacks)."""

from __future__ import annotations

from pathlib import Path


class CpakError(Exception):
    """Base class of every error that is reported to the user as one line."""


class CpakInputError(CpakError):
    """A bad input file: ``str(err)`` is ``"PATH: reason"`` on one line."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = " ".join(str(reason).split())  # force a single line
        super().__init__(self.reason if self.path is None else f"{self.path}: {self.reason}")


class CpakMemoryError(CpakInputError):
    """A file that could not be decoded within the memory available (``MemoryError`` while
    loading it); a decode worker that holds other films drops them and tries once more."""


class CpakModelError(CpakError):
    """Missing or inconsistent model weights / model card."""
