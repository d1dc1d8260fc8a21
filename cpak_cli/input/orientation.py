"""PatientOrientation (0020,0020): turn a film head-up and tell where the patient's right is.

PatientOrientation has two values, ``ROW\\COLUMN``: the patient direction in which the column
index grows (along a row, left to right on the image) and the one in which the row index grows
(down the image). Letters: L/R (patient's left/right), A/P (anterior/posterior), H/F
(head/feet); a value may combine letters (``LA``), its first letter being the main direction.

A valid pair for a leg film has one value along the head-foot axis (first letter H or F) and
one across it (first letter L, R, A or P). The image is turned so that the column direction is
F (feet down) without changing the across value's direction along the rows:

=============  =======================  ======================================
value pair     turn (``applied``)       patient's right on the image's left
=============  =======================  ======================================
``X\\F``        ``none``                 X = L: yes; X = R: no
``X\\H``        ``flip_vertical``        as above
``F\\X``        ``transpose``            as above
``H\\X``        ``transpose+flip_vertical``  as above
=============  =======================  ======================================

``transpose`` swaps rows and columns, so the spacing ``(row_mm, col_mm)`` is swapped too.
With X = A or P (a lateral view) the side is unknown: the standard AP display is assumed
(``assumed`` True). An absent or empty PatientOrientation changes nothing and assumes the AP
display; any other value (one value, two along the same axis, no H/F, unknown letters) is
refused with a one-line :class:`~cpak_cli.errors.CpakInputError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cpak_cli.errors import CpakInputError

__all__ = ["Orientation", "parse_orientation", "apply_orientation", "ORIENTATION_TURNS"]

#: The possible values of :attr:`Orientation.applied`.
ORIENTATION_TURNS: tuple[str, ...] = ("none", "flip_vertical", "transpose", "transpose+flip_vertical")

_AXIS = {"L": "LR", "R": "LR", "A": "AP", "P": "AP", "H": "HF", "F": "HF"}
_VALUE = re.compile(r"^[LRAPHF]+$")


@dataclass(frozen=True)
class Orientation:
    """How to turn a stored image head-up, and the side information after the turn."""

    transpose: bool = False
    flip_vertical: bool = False
    patient_right_on_image_left: bool = True
    assumed: bool = True
    raw: str | None = None

    @property
    def applied(self) -> str:
        """One of :data:`ORIENTATION_TURNS`."""
        parts = [name for name, on in (("transpose", self.transpose), ("flip_vertical", self.flip_vertical)) if on]
        return "+".join(parts) or "none"


def _valid_value(value: str) -> bool:
    if not _VALUE.match(value):
        return False
    axes = [_AXIS[c] for c in value]
    return len(set(axes)) == len(axes)  # no axis twice ("LR", "FF")


def parse_orientation(path: str, raw: str | None) -> Orientation:
    """The :class:`Orientation` for a raw PatientOrientation string (values joined by ``\\``).

    Raises :class:`CpakInputError` for a value that is not a valid pair (see module docstring).
    """
    if raw is None or not raw.replace("\\", "").strip():
        return Orientation(raw=raw)
    values = [v.strip().upper() for v in raw.split("\\")]
    ok = len(values) == 2 and all(_valid_value(v) for v in values)
    if ok:
        axes = [_AXIS[v[0]] for v in values]
        ok = axes.count("HF") == 1 and axes[0] != axes[1]
    if not ok:
        raise CpakInputError(
            path,
            f"invalid PatientOrientation '{raw}': need two values ROW\\COLUMN direction, one H or F "
            "and one L, R, A or P (e.g. L\\F)",
        )
    transpose = _AXIS[values[0][0]] == "HF"
    head_foot, across = (values[0], values[1]) if transpose else (values[1], values[0])
    side = across[0]
    return Orientation(
        transpose=transpose,
        flip_vertical=head_foot[0] == "H",
        patient_right_on_image_left=side != "R",
        assumed=side not in ("L", "R"),
        raw=raw,
    )


def apply_orientation(
    pixels: np.ndarray, spacing: tuple[float, float], orientation: Orientation
) -> tuple[np.ndarray, tuple[float, float]]:
    """Turn ``pixels`` (rows, cols) head-up; return the contiguous result and its spacing."""
    if orientation.transpose:
        spacing = (spacing[1], spacing[0])
    return turn(pixels, orientation), spacing


def turn(pixels: np.ndarray, orientation: Orientation) -> np.ndarray:
    """``pixels`` (stored rows, cols) turned head-up: transposed, then flipped vertically, as
    ``orientation`` says; contiguous. The one place the turn is done (full films and windows)."""
    out = pixels.T if orientation.transpose else pixels
    if orientation.flip_vertical:
        out = out[::-1, :]
    return np.ascontiguousarray(out)
