"""Human-readable output of leg measurements (rich tables); shared by `angles` and `measure`."""

from __future__ import annotations

from typing import Mapping

from cpak_cli.landmarks import SIDES
from cpak_cli.measurement import LegMeasurement


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def print_legs(legs: Mapping[str, LegMeasurement], title: str | None = None) -> None:
    """Print one table row per leg (patient's right first): angles to 0.1 degree, CPAK, flags.

    Columns: LDFA, MPTA, aHKA, JLO, mHKA (mechanical HKA, valgus positive), all in degrees. A leg
    that is not measured still shows the angles its landmarks allow (LDFA, MPTA, mHKA)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=140)
    if title:
        console.print(title, highlight=False)
    table = Table(show_lines=False)
    angle_cols = ("LDFA", "MPTA", "aHKA", "JLO", "mHKA")
    for col in ("Leg", *angle_cols, "CPAK", "Flags"):
        table.add_column(col, justify="right" if col in angle_cols else "left")
    for side in SIDES:
        leg = legs.get(side)
        if leg is None:
            table.add_row(f"{side}", "-", "-", "-", "-", "-", "-", "not in the image")
        elif leg.error:
            table.add_row(side, _fmt(leg.ldfa), _fmt(leg.mpta), "-", "-", _fmt(leg.mhka), "-",
                          f"not measured: {leg.error}")
        else:
            table.add_row(
                side, _fmt(leg.ldfa), _fmt(leg.mpta), _fmt(leg.ahka), _fmt(leg.jlo), _fmt(leg.mhka), leg.cpak or "-",
                ", ".join(leg.flags) or "",
            )
    console.print(table)
