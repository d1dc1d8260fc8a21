"""Human-readable output of leg measurements (rich tables); shared by `angles` and `measure`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from cpak_cli.core.cpak import display_angles
from cpak_cli.core.landmarks import SIDES
from cpak_cli.core.measurement import FLAG_LATERALITY, FLAG_ORIENTATION_ASSUMED, LegMeasurement, leg_length_difference_mm
from cpak_cli.core.panel import NORMAL_RANGES, NormalCheck

#: Leg flags that doubt which leg is the patient's right: the sign of the leg-length difference
#: rests on it, so its line says so.
SIDE_DOUBT_FLAGS = (FLAG_ORIENTATION_ASSUMED, FLAG_LATERALITY)

#: How the panel's values are named in the table (MAD in mm, the others in degrees).
if TYPE_CHECKING:
    from rich.console import Console

PANEL_NAMES = {"ldfa": "LDFA", "mpta": "MPTA", "mhka": "mHKA", "jlca": "JLCA", "mad_mm": "MAD"}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _angle_cells(leg: LegMeasurement) -> tuple[str, str, str, str]:
    """LDFA, MPTA, aHKA, JLO cells of a measured leg: aHKA and JLO from the rounded LDFA/MPTA."""
    if leg.ldfa is None or leg.mpta is None:
        return _fmt(leg.ldfa), _fmt(leg.mpta), _fmt(leg.ahka), _fmt(leg.jlo)
    return tuple(_fmt(v) for v in display_angles(leg.ldfa, leg.mpta))  # type: ignore[return-value]


def _range_text(name: str) -> str:
    lo, hi = NORMAL_RANGES[name]
    return f"{lo:g} to {hi:g}" + (" mm" if name == "mad_mm" else "")


def _outside_text(name: str, check: NormalCheck) -> str:
    """``JLCA 3.9 > 2``: the value and the bound of its normal range it passes, the value with as
    many decimals (1-3) as it takes to print outside the range (2.04 never shows as 2.0)."""
    assert check.value is not None
    for digits in (1, 2, 3):
        shown = round(check.value, digits)
        if not check.low <= shown <= check.high:
            break
    bound = f"< {check.low:g}" if check.value < check.low else f"> {check.high:g}"
    unit = " mm" if name == "mad_mm" else ""
    return f"{PANEL_NAMES[name]} {check.value:.{digits}f}{unit} {bound}"


def panel_legend() -> tuple[str, str]:
    """Two lines under the panel table: the normal ranges and the sign conventions."""
    angles = ", ".join(f"{PANEL_NAMES[n]} {_range_text(n)}" for n in NORMAL_RANGES if n != "mad_mm")
    return (f"normal: {angles} degrees; MAD {_range_text('mad_mm')}",
            "signs: mHKA > 0 valgus; JLCA > 0 joint lines converging medially; "
            "MAD > 0 mechanical axis medial of the knee centre (varus)")


def print_legs(legs: Mapping[str, LegMeasurement], title: str | None = None) -> None:
    """Print one table row per leg (patient's right first): angles to 0.1 degree, CPAK, flags;
    then the alignment panel table and the film's leg-length difference.

    Columns: LDFA, MPTA, aHKA, JLO, mHKA (mechanical HKA, valgus positive), all in degrees. aHKA
    and JLO are printed from the printed (rounded) LDFA and MPTA, so the row adds up; the CPAK
    type is decided on full precision and a row whose printed aHKA or JLO reads as another class
    carries ``borderline`` (see :func:`cpak_cli.core.cpak.display_conflicts`). A leg that is not
    measured still shows the angles its landmarks allow (LDFA, MPTA, mHKA).

    The panel table gives JLCA (degrees, positive = converging medially), MAD (mm, positive =
    medial), femoral, tibial and leg mechanical lengths (mm) to 0.1, and names each value outside
    its normal range (:data:`cpak_cli.core.panel.NORMAL_RANGES`, decided on full precision) with
    the bound it passes; two legend lines (ranges, signs) follow, then the leg-length difference
    (right minus left, mm) when both legs have their lengths, with a caveat when a leg carries a
    flag that doubts which leg is which (:data:`SIDE_DOUBT_FLAGS`)."""
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
    _print_panel(console, legs)


def _print_panel(console: Console, legs: Mapping[str, LegMeasurement]) -> None:
    from rich.table import Table

    table = Table(show_lines=False)
    value_cols = ("JLCA", "MAD mm", "Femur mm", "Tibia mm", "Leg mm")
    for col in ("Leg", *value_cols, "Outside normal"):
        table.add_column(col, justify="right" if col in value_cols else "left")
    for side in SIDES:
        leg = legs.get(side)
        if leg is None:
            table.add_row(side, "-", "-", "-", "-", "-", "not in the image")
            continue
        outside = ", ".join(_outside_text(n, c) for n, c in leg.normal.items() if c.outside)
        table.add_row(side, _fmt(leg.jlca), _fmt(leg.mad_mm), _fmt(leg.femur_mm), _fmt(leg.tibia_mm), _fmt(leg.leg_mm),
                      outside)
    console.print(table)
    for line in panel_legend():
        console.print(line, highlight=False)
    lld = leg_length_difference_mm(legs)
    if lld is not None:
        doubt = sorted({f for leg in legs.values() for f in leg.flags if f in SIDE_DOUBT_FLAGS})
        caveat = f" (which leg is the right one is in doubt: {', '.join(doubt)})" if doubt else ""
        console.print(f"leg-length difference (right - left): {lld:+.1f} mm{caveat}", highlight=False)
