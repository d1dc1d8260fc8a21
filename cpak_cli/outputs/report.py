"""Human-readable output of leg measurements (rich tables); shared by `angles` and `measure`."""

from __future__ import annotations

from typing import Mapping

from cpak_cli.core.cpak import display_angles
from cpak_cli.core.landmarks import SIDES
from cpak_cli.core.measurement import LegMeasurement


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _angle_cells(leg: LegMeasurement) -> tuple[str, str, str, str]:
    """LDFA, MPTA, aHKA, JLO cells of a measured leg: aHKA and JLO from the rounded LDFA/MPTA."""
    if leg.ldfa is None or leg.mpta is None:
        return _fmt(leg.ldfa), _fmt(leg.mpta), _fmt(leg.ahka), _fmt(leg.jlo)
    return tuple(_fmt(v) for v in display_angles(leg.ldfa, leg.mpta))  # type: ignore[return-value]


def print_legs(legs: Mapping[str, LegMeasurement], title: str | None = None) -> None:
    """Print one table row per leg (patient's right first): angles to 0.1 degree, CPAK, flags.

    Columns: LDFA, MPTA, aHKA, JLO, mHKA (mechanical HKA, valgus positive), all in degrees. aHKA
    and JLO are printed from the printed (rounded) LDFA and MPTA, so the row adds up; the CPAK
    type is decided on full precision and a row whose printed aHKA or JLO reads as another class
    carries ``borderline`` (see :func:`cpak_cli.core.cpak.display_conflicts`). A leg that is not
    measured still shows the angles its landmarks allow (LDFA, MPTA, mHKA)."""
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
            flags = f" [{', '.join(leg.flags)}]" if leg.flags else ""
            table.add_row(side, _fmt(leg.ldfa), _fmt(leg.mpta), "-", "-", _fmt(leg.mhka), "-",
                          f"not measured: {leg.error}{flags}")
        else:
            table.add_row(side, *_angle_cells(leg), _fmt(leg.mhka), leg.cpak or "-", ", ".join(leg.flags) or "")
    console.print(table)
