"""Pixel spacing of a radiograph: which DICOM rule applies, and whether the result is plausible.

Rules (DICOM PS3.3 10.7.1.1 / 10.7.1.3), first match wins; ``source`` is the string reported
as :attr:`cpak_cli.input.loader.LoadedImage.spacing_source` (``*``: flagged
``spacing_uncorrected_magnification`` by :func:`cpak_cli.pipeline.result.scan_flags`):

1. ``--pixel-spacing`` given: the user's value -> ``user`` (flag ``spacing_user``).
2. PixelSpacing with PixelSpacingCalibrationType GEOMETRY or FIDUCIAL: PixelSpacing as is ->
   ``PixelSpacing (calibrated GEOMETRY)`` / ``PixelSpacing (calibrated FIDUCIAL)``.
3. PixelSpacing equal to ImagerPixelSpacing, EstimatedRadiographicMagnificationFactor present:
   PixelSpacing / factor -> ``PixelSpacing=ImagerPixelSpacing/magnification``.
4. PixelSpacing equal to ImagerPixelSpacing, no factor: PixelSpacing as is ->
   ``PixelSpacing=ImagerPixelSpacing (uncorrected)`` ``*``.
5. PixelSpacing different from ImagerPixelSpacing: PixelSpacing as is ->
   ``PixelSpacing (corrected: differs from ImagerPixelSpacing)``.
6. PixelSpacing alone: as is -> ``PixelSpacing``.
7. No usable PixelSpacing, ImagerPixelSpacing and the factor: ImagerPixelSpacing / factor ->
   ``ImagerPixelSpacing/magnification``.
8. ImagerPixelSpacing alone: as is -> ``ImagerPixelSpacing`` ``*``.

"Equal" means equal to 1e-4 relative per value. PS3.3 10.7.1.3: PixelSpacing equal to
ImagerPixelSpacing means the spacing was *not* corrected for the geometric magnification;
a PixelSpacingCalibrationType says it was calibrated (GEOMETRY: from the acquisition
geometry, FIDUCIAL: from an object of known size), so no further correction is applied.
An unknown calibration type is ignored (the other rules apply).

Plausibility (the spacing actually used, after the turn to head-up, see
:mod:`cpak_cli.input.orientation`):

* a spacing from the file must lie in 0.05-2.0 mm per pixel (both values) and give a film
  height ``rows x row spacing`` of 0.3-2.5 m; otherwise it counts as missing: a one-line
  :class:`~cpak_cli.errors.CpakInputError` naming the spacing and the reason, unless the caller
  has a user spacing to fall back on. Images with fewer than :data:`MIN_ROWS_CHECKED` rows
  (thumbnails, the test suite's tiny synthetic DICOMs, phantom films rendered with a small
  ``--max-size``) are not checked: at that size neither a stale spacing nor a coarse one can be
  told from a real full-leg film's.
* a user spacing (``--pixel-spacing``) is only range-checked (0.05-2.0 mm), never against the
  film's height: the user knows the film (e.g. 512x1024 PNG exports at 0.5-1.15 mm).
"""

from __future__ import annotations

import math
from typing import Any

from cpak_cli.errors import CpakInputError
from cpak_cli.input.tags import dicom_pair_of, positive_float, raw_str

__all__ = [
    "SPACING_SOURCES",
    "UNCORRECTED_SPACING_SOURCES",
    "SPACING_RANGE_MM",
    "FILM_HEIGHT_RANGE_M",
    "MIN_ROWS_CHECKED",
    "NO_SPACING_HINT",
    "check_user_spacing",
    "spacing_from_dicom",
    "check_file_spacing",
]

SRC_PIXEL = "PixelSpacing"
SRC_CALIBRATED = "PixelSpacing (calibrated {})"
SRC_CORRECTED = "PixelSpacing (corrected: differs from ImagerPixelSpacing)"
SRC_EQUAL_MAG = "PixelSpacing=ImagerPixelSpacing/magnification"
SRC_EQUAL_UNCORRECTED = "PixelSpacing=ImagerPixelSpacing (uncorrected)"
SRC_IMAGER_MAG = "ImagerPixelSpacing/magnification"
SRC_IMAGER = "ImagerPixelSpacing"
SRC_USER = "user"
CALIBRATION_TYPES = ("GEOMETRY", "FIDUCIAL")

#: Every possible :attr:`LoadedImage.spacing_source`.
SPACING_SOURCES: tuple[str, ...] = (
    SRC_PIXEL,
    *(SRC_CALIBRATED.format(t) for t in CALIBRATION_TYPES),
    SRC_CORRECTED,
    SRC_EQUAL_MAG,
    SRC_EQUAL_UNCORRECTED,
    SRC_IMAGER_MAG,
    SRC_IMAGER,
    SRC_USER,
)
#: Sources whose spacing is at the detector, not corrected for magnification (lengths in mm are
#: overestimated by the magnification, typically 5-15 %): flag ``spacing_uncorrected_magnification``.
UNCORRECTED_SPACING_SOURCES: frozenset[str] = frozenset({SRC_IMAGER, SRC_EQUAL_UNCORRECTED})

SPACING_RANGE_MM = (0.05, 2.0)
FILM_HEIGHT_RANGE_M = (0.3, 2.5)
MIN_ROWS_CHECKED = 512
NO_SPACING_HINT = "pass --pixel-spacing ROW COL"
_EQUAL_REL_TOL = 1e-4


def _in_range(spacing: tuple[float, float]) -> bool:
    lo, hi = SPACING_RANGE_MM
    return all(lo <= v <= hi for v in spacing)


def _range_text() -> str:
    return f"outside {SPACING_RANGE_MM[0]}-{SPACING_RANGE_MM[1]} mm per pixel"


def check_user_spacing(path: str, values: Any, what: str = "--pixel-spacing") -> tuple[float, float]:
    """Validate a user-given ``(row_mm, col_mm)``: two finite numbers in 0.05-2.0 mm."""
    try:
        seq = list(values)
        if len(seq) != 2:
            raise ValueError
        row_mm, col_mm = float(seq[0]), float(seq[1])
    except (TypeError, ValueError):
        raise CpakInputError(
            path, f"{what} must be two numbers ROW COL in mm, got {values!r}"
        ) from None
    if not (math.isfinite(row_mm) and math.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise CpakInputError(
            path, f"{what} must be two positive numbers ROW COL in mm, got {row_mm:g} {col_mm:g}"
        )
    if not _in_range((row_mm, col_mm)):
        raise CpakInputError(
            path, f"implausible {what} {row_mm:g} {col_mm:g}: {_range_text()}"
        )
    return (row_mm, col_mm)


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=_EQUAL_REL_TOL) for x, y in zip(a, b))


def spacing_from_dicom(path: str, ds: Any) -> tuple[tuple[float, float], str]:
    """``((row_mm, col_mm), source)`` by the rules of the module docstring.

    Raises :class:`CpakInputError` when the file has no spacing or only invalid ones (an invalid
    PixelSpacing falls through to ImagerPixelSpacing). Plausibility is not checked here.
    """
    bad: list[str] = []
    imager = dicom_pair_of(ds, "ImagerPixelSpacing") if "ImagerPixelSpacing" in ds else None
    mag = positive_float(ds, "EstimatedRadiographicMagnificationFactor")
    if "PixelSpacing" in ds:
        pixel = dicom_pair_of(ds, "PixelSpacing")
        if pixel is not None:
            calibration = (raw_str(ds, "PixelSpacingCalibrationType") or "").upper()
            if calibration in CALIBRATION_TYPES:
                return pixel, SRC_CALIBRATED.format(calibration)
            if imager is not None and _same(pixel, imager):
                if mag is not None:
                    return (pixel[0] / mag, pixel[1] / mag), SRC_EQUAL_MAG
                return pixel, SRC_EQUAL_UNCORRECTED
            if imager is not None:
                return pixel, SRC_CORRECTED
            return pixel, SRC_PIXEL
        bad.append(f"PixelSpacing {raw_str(ds, 'PixelSpacing')!r}")
    if "ImagerPixelSpacing" in ds:
        if imager is not None:
            if mag is not None:
                return (imager[0] / mag, imager[1] / mag), SRC_IMAGER_MAG
            return imager, SRC_IMAGER
        bad.append(f"ImagerPixelSpacing {raw_str(ds, 'ImagerPixelSpacing')!r}")
    if bad:
        raise CpakInputError(
            path,
            f"invalid pixel spacing ({'; '.join(bad)}): must be two positive numbers; "
            f"{NO_SPACING_HINT}",
        )
    raise CpakInputError(
        path, f"no pixel spacing (PixelSpacing/ImagerPixelSpacing) in the file; {NO_SPACING_HINT}"
    )


def check_file_spacing(path: str, spacing: tuple[float, float], source: str, rows: int) -> None:
    """Raise :class:`CpakInputError` when a spacing read from the file is implausible.

    ``rows`` and ``spacing`` are those of the image as it will be measured (head up), so the
    film height is ``rows * spacing[0]``. Images with fewer than :data:`MIN_ROWS_CHECKED` rows
    are not checked (see the module docstring).
    """
    if rows < MIN_ROWS_CHECKED:
        return
    row_mm, col_mm = spacing
    what = f"implausible pixel spacing {row_mm:g} x {col_mm:g} mm ({source})"
    if not _in_range(spacing):
        raise CpakInputError(path, f"{what}: {_range_text()}; {NO_SPACING_HINT}")
    height_m = rows * row_mm / 1000.0
    lo, hi = FILM_HEIGHT_RANGE_M
    if not lo <= height_m <= hi:
        raise CpakInputError(
            path,
            f"{what}: film height {height_m:.3g} m ({rows} rows) outside {lo}-{hi} m; "
            f"{NO_SPACING_HINT}",
        )
