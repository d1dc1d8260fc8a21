"""CPAK classification (MacDessi et al.) from aHKA and JLO, in degrees.

aHKA < -2 varus, -2..2 neutral (inclusive), > 2 valgus.
JLO < 177 apex distal, 177..183 neutral (inclusive), > 183 apex proximal.
Types: I varus/distal, II neutral/distal, III valgus/distal, IV-VI the same with neutral JLO,
VII-IX with apex proximal.

The type is always decided on full precision. :func:`display_angles` gives the numbers as the
tables print them (LDFA and MPTA to 0.1 degree, aHKA and JLO from those rounded values, so the
printed numbers add up); :func:`display_conflicts` says when that display reads as another class
than the full values (e.g. aHKA -2.04, type I, prints as -2.0).
"""

from __future__ import annotations

import math
from typing import Final

CPAK_TYPES: Final[tuple[str, ...]] = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")
AHKA_BOUNDARIES: Final[tuple[float, float]] = (-2.0, 2.0)
JLO_BOUNDARIES: Final[tuple[float, float]] = (177.0, 183.0)
BORDERLINE_DEG: Final[float] = 0.5


def ahka_category(ahka: float) -> str:
    """'varus', 'neutral' or 'valgus' (neutral range inclusive)."""
    lo, hi = AHKA_BOUNDARIES
    if ahka < lo:
        return "varus"
    if ahka > hi:
        return "valgus"
    return "neutral"


def jlo_category(jlo: float) -> str:
    """'apex distal', 'neutral' or 'apex proximal' (neutral range inclusive)."""
    lo, hi = JLO_BOUNDARIES
    if jlo < lo:
        return "apex distal"
    if jlo > hi:
        return "apex proximal"
    return "neutral"


def cpak_type(ahka: float, jlo: float) -> str:
    """CPAK type "I".."IX". Raises ValueError for non-finite input."""
    if not (math.isfinite(ahka) and math.isfinite(jlo)):
        raise ValueError("aHKA and JLO must be finite")
    col = ("varus", "neutral", "valgus").index(ahka_category(ahka))
    row = ("apex distal", "neutral", "apex proximal").index(jlo_category(jlo))
    return CPAK_TYPES[3 * row + col]


def is_borderline(ahka: float, jlo: float, margin: float = BORDERLINE_DEG) -> bool:
    """True when aHKA or JLO lies within ``margin`` degrees of a CPAK boundary."""
    return any(abs(ahka - b) <= margin for b in AHKA_BOUNDARIES) or any(
        abs(jlo - b) <= margin for b in JLO_BOUNDARIES
    )


def _round(v: float, digits: int) -> float:
    """``v`` as printed with ``digits`` decimals (the same rounding as the tables' format)."""
    return float(f"{v:.{digits}f}")


def display_angles(ldfa: float, mpta: float, digits: int = 1) -> tuple[float, float, float, float]:
    """``(LDFA, MPTA, aHKA, JLO)`` as printed: LDFA and MPTA rounded to ``digits`` decimals, aHKA
    and JLO computed from those rounded values (so the printed aHKA is printed MPTA - LDFA)."""
    lr, mr = _round(ldfa, digits), _round(mpta, digits)
    return lr, mr, _round(mr - lr, digits), _round(mr + lr, digits)


def display_conflicts(ldfa: float, mpta: float, digits: int = 1) -> list[str]:
    """Notes for each of aHKA and JLO whose printed value (:func:`display_angles`) falls in another
    CPAK category than its full-precision value (which decides the type); empty when none."""
    ahka, jlo = mpta - ldfa, mpta + ldfa
    _, _, ahka_d, jlo_d = display_angles(ldfa, mpta, digits)
    notes = []
    for name, full, shown, cat in (("aHKA", ahka, ahka_d, ahka_category), ("JLO", jlo, jlo_d, jlo_category)):
        if cat(shown) != cat(full):
            notes.append(f"{name} prints as {shown:.{digits}f} ({cat(shown)}) but is {full:.4f} ({cat(full)}); "
                         "the CPAK type uses the full value")
    return notes
