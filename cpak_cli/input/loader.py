"""Load one radiograph (DICOM, or PNG/TIFF with a user-given spacing) as a normalised grey image.

Contract (see docs/conventions.md):

* ``LoadedImage.pixels`` is a float32 2-D array ``(rows, cols)`` with values in ``[0, 1]``,
  **head up** (row 0 = top = towards the head), with bone / high attenuation **bright** (the
  MONOCHROME2 sense). The pipeline is: stored values (pydicom applies BitsStored and the
  signedness of PixelRepresentation) -> modality LUT (RescaleSlope/Intercept or Modality LUT
  Sequence) -> VOI (first VOI LUT Sequence item, else the first WindowCenter/WindowWidth pair,
  else min-max scaling) -> inversion (``1 - v``) for MONOCHROME1 or Presentation LUT Shape
  INVERSE (:mod:`cpak_cli.input.values`; INVERSE on MONOCHROME1 is the same single inversion
  the standard requires MONOCHROME1 to carry, not a second one) -> turn head up by both values
  of PatientOrientation (:mod:`cpak_cli.input.orientation`: none, flip_vertical, transpose or
  transpose+flip_vertical; an invalid pair is refused).
* ``LoadedImage.spacing_mm`` is ``(row_mm, col_mm)`` of the returned (turned) pixels:
  ``row_mm`` is the distance between adjacent rows (vertical), ``col_mm`` the distance between
  adjacent columns; swapped from the file's order when the turn transposes. Anisotropic spacing
  is kept as is. ``spacing_source`` says exactly which rule gave it (PS3.3 10.7.1.1/10.7.1.3):

  - ``user``: ``--pixel-spacing`` (in the file's stored ROW COL order), range-checked 0.05-2.0 mm;
  - ``PixelSpacing (calibrated GEOMETRY)`` / ``PixelSpacing (calibrated FIDUCIAL)``:
    PixelSpacingCalibrationType says PixelSpacing was calibrated; used as is;
  - ``PixelSpacing=ImagerPixelSpacing/magnification``: PixelSpacing equals ImagerPixelSpacing
    (not corrected) and is divided by EstimatedRadiographicMagnificationFactor;
  - ``PixelSpacing=ImagerPixelSpacing (uncorrected)``: equal, no factor: used as is, flagged
    ``spacing_uncorrected_magnification``;
  - ``PixelSpacing (corrected: differs from ImagerPixelSpacing)``: used as is;
  - ``PixelSpacing``: PixelSpacing alone; used as is;
  - ``ImagerPixelSpacing/magnification``: no usable PixelSpacing; detector spacing / factor;
  - ``ImagerPixelSpacing``: detector spacing, no factor: flagged
    ``spacing_uncorrected_magnification`` (lengths overestimated by the magnification).

  A spacing from the file outside 0.05-2.0 mm per pixel, or giving a head-up film height
  (rows x row spacing) outside 0.3-2.5 m, counts as missing (one-line error naming the spacing
  and the reason; ``fallback_spacing`` is used instead when given). Images under 512 rows are
  not checked (thumbnails, synthetic test films). See :mod:`cpak_cli.input.spacing`.
* ``LoadedImage.patient_right_on_image_left`` says which image side holds the patient's right
  (after the turn); ``assumed_orientation`` is True when the file did not say (no
  PatientOrientation, or an A/P one) and the standard AP display, patient's right on the image's
  left, is assumed. ``orientation_applied`` says which turn was made.

Every problem with an input file is raised as a one-line
:class:`cpak_cli.errors.CpakInputError` ``"PATH: reason"``; no pydicom/OpenCV exception
escapes :func:`load_image`. Input files are only ever opened for reading.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli.errors import CpakInputError, CpakMemoryError
from cpak_cli.input.dicom_decode import check_image_kind, decode_unit, read_dataset, transfer_syntax
from cpak_cli.input.film_source import FilmSource
from cpak_cli.input.image import LoadedImage
from cpak_cli.input.orientation import ORIENTATION_TURNS, Orientation, apply_orientation, parse_orientation
from cpak_cli.input.partial import partial_pixels
from cpak_cli.input.raster import load_raster
from cpak_cli.input.sniff import image_format, is_probably_dicom, looks_like_dicom, read_head
from cpak_cli.input.spacing import (
    SPACING_SOURCES,
    UNCORRECTED_SPACING_SOURCES,
    check_file_spacing,
    check_user_spacing,
    spacing_from_dicom,
)
from cpak_cli.input.tags import raw_str, short
from cpak_cli.input.values import INVERSIONS, polarity

__all__ = [
    "LoadedImage",
    "FilmSource",
    "load_image",
    "open_film",
    "is_probably_dicom",
    "SPACING_SOURCES",
    "UNCORRECTED_SPACING_SOURCES",
    "ORIENTATION_TURNS",
    "INVERSIONS",
]

_METADATA_KEYWORDS: tuple[str, ...] = (
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPClassUID",
    "SeriesDescription",
    "BodyPartExamined",
    "ViewPosition",
    "PatientOrientation",
    "ImageLaterality",
    "Laterality",
    "PresentationLUTShape",
    "PresentationIntentType",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "PixelSpacingCalibrationType",
    "EstimatedRadiographicMagnificationFactor",
    "DistanceSourceToDetector",
    "DistanceSourceToPatient",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "DerivationDescription",
    "BurnedInAnnotation",
)



def _laterality(ds: Any) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = raw_str(ds, keyword)
        if value:
            value = value.upper()
            if value in ("R", "L", "B"):
                return value
    return None


def _metadata(ds: Any, ts_name: str | None) -> dict[str, str]:
    meta: dict[str, str] = {}
    for keyword in _METADATA_KEYWORDS:
        value = raw_str(ds, keyword)
        if value is not None:
            meta[keyword] = value[:200]
    if ts_name:
        meta["TransferSyntaxName"] = ts_name
    return meta


def _spacing(
    spath: str, ds: Any, orientation: Orientation, turned_rows: int,
    pixel_spacing: tuple[float, float] | None, fallback_spacing: tuple[float, float] | None,
) -> tuple[tuple[float, float], str]:
    """The spacing in the file's stored ``(row, col)`` order and its source.

    The user's spacing wins; otherwise the file's (rules and plausibility: see
    :mod:`cpak_cli.input.spacing`; plausibility is judged on the head-up film, ``turned_rows``
    rows), and when the file has none, an invalid or an implausible one, ``fallback_spacing``.
    """
    if pixel_spacing is not None:
        return check_user_spacing(spath, pixel_spacing), "user"
    try:
        spacing, source = spacing_from_dicom(spath, ds)
        turned = (spacing[1], spacing[0]) if orientation.transpose else spacing
        check_file_spacing(spath, turned, source, turned_rows)
    except CpakInputError:
        if fallback_spacing is None:
            raise
        return check_user_spacing(spath, fallback_spacing), "user"
    return spacing, source


def _load_dicom(
    path: Path, spath: str, pixel_spacing: tuple[float, float] | None, has_dicm: bool,
    fallback_spacing: tuple[float, float] | None = None, lazy: bool = False,
) -> LoadedImage:
    ds, early_note = read_dataset(path, spath, has_dicm)
    photometric, phot_u = check_image_kind(spath, ds)
    ts = transfer_syntax(spath, ds)
    pieces = partial_pixels(ds, ts, phot_u) if lazy else None
    if pieces is None:
        unit, voi_source, inversion = decode_unit(spath, ds, ts, early_note, phot_u)
        stored_shape = (int(unit.shape[0]), int(unit.shape[1]))
    else:
        stored_shape, voi_source, inversion = pieces.shape, "window", polarity(phot_u, ds)
    orientation = parse_orientation(spath, raw_str(ds, "PatientOrientation"))
    turned_rows = stored_shape[1] if orientation.transpose else stored_shape[0]
    spacing, source = _spacing(spath, ds, orientation, turned_rows, pixel_spacing, fallback_spacing)
    ts_name = ts.name if ts.name != str(ts) else None
    turned_shape = stored_shape[::-1] if orientation.transpose else stored_shape
    meta: dict[str, Any] = dict(
        spacing_mm=(spacing[1], spacing[0]) if orientation.transpose else spacing,
        spacing_source=source,
        patient_right_on_image_left=orientation.patient_right_on_image_left,
        assumed_orientation=orientation.assumed,
        laterality=_laterality(ds),
        path=spath,
        sop_instance_uid=raw_str(ds, "SOPInstanceUID"),
        study_date=raw_str(ds, "StudyDate"),
        modality=raw_str(ds, "Modality"),
        transfer_syntax=str(ts),
        photometric=photometric,
        rows=int(turned_shape[0]),
        cols=int(turned_shape[1]),
        file_format="dicom",
        voi_source=voi_source,
        patient_orientation=orientation.raw,
        orientation_applied=orientation.applied,
        inversion=inversion,
        metadata=_metadata(ds, ts_name),
    )
    if pieces is not None:
        return FilmSource(pieces, orientation, (spath, pixel_spacing, fallback_spacing), **meta)
    turned, _ = apply_orientation(unit.astype(np.float32), spacing, orientation)
    return LoadedImage(pixels=turned, **meta)


# --------------------------------------------------------------------------------- entry point


def open_film(
    path: str | Path, pixel_spacing: tuple[float, float] | None = None,
    fallback_spacing: tuple[float, float] | None = None,
) -> LoadedImage:
    """:func:`load_image`, but decoding only what the measurement uses where the file allows:
    a :class:`~cpak_cli.input.film_source.FilmSource` (a LoadedImage whose ``pixels`` are
    decoded on first use; the pipeline reads its overview and windows) for JPEG 2000 films that
    can be decoded piecewise exactly (:func:`~cpak_cli.input.partial.partial_pixels`), else the
    plain LoadedImage of :func:`load_image`. Same arguments, metadata, checks and errors."""
    return _load(path, pixel_spacing, fallback_spacing, lazy=True)


def load_image(
    path: str | Path, pixel_spacing: tuple[float, float] | None = None,
    fallback_spacing: tuple[float, float] | None = None,
) -> LoadedImage:
    """Load a DICOM radiograph (or a PNG/TIFF with ``pixel_spacing``) as a :class:`LoadedImage`.

    Args:
        path: a DICOM file (Part 10 with preamble, or a raw data set without preamble/file
            meta), or an 8/16-bit greyscale PNG/TIFF. Recognised by content, not extension.
            Opened read-only; never modified.
        pixel_spacing: optional ``(row_mm, col_mm)`` in the file's stored row/column order
            (swapped with the image when the turn head-up transposes it); overrides the file's
            spacing (source ``"user"``). Must lie in 0.05-2.0 mm. Required for PNG/TIFF.
        fallback_spacing: optional ``(row_mm, col_mm)`` (same order and range) used only when
            the file gives no usable spacing: none, an invalid one or an implausible one (and
            for PNG/TIFF); source ``"user"``. A file's own plausible spacing always wins.

    Returns:
        The image (float32 in [0, 1], bone bright), its spacing in mm ``(row_mm, col_mm)`` and
        where it came from, and the orientation/laterality information; see
        :class:`LoadedImage`.

    Raises:
        CpakInputError: one line ``"PATH: reason"`` for a missing/unreadable file, a non-DICOM
            file, no PixelData, multi-frame, colour, unexpected shape, truncated/corrupt pixel
            data, an unsupported transfer syntax, no, invalid or implausible pixel spacing, an
            invalid PatientOrientation pair, no contrast; :class:`~cpak_cli.errors.CpakMemoryError`
            (a CpakInputError) when the memory ran out while loading.
    """
    return _load(path, pixel_spacing, fallback_spacing, lazy=False)


def _load(
    path: str | Path, pixel_spacing: tuple[float, float] | None, fallback_spacing: tuple[float, float] | None,
    lazy: bool,
) -> LoadedImage:
    p = Path(path)
    spath = str(path)
    if pixel_spacing is not None:
        check_user_spacing(spath, pixel_spacing)
    try:
        if not p.exists():
            raise CpakInputError(spath, "file not found")
        if p.is_dir():
            raise CpakInputError(spath, "is a directory, not a file")
        try:
            head = read_head(p)
        except OSError as exc:
            raise CpakInputError(
                spath, f"cannot read file ({exc.strerror or short(exc)})"
            ) from None
        if not head:
            raise CpakInputError(spath, "empty file")
        # 'DICM' first: a DICOM preamble may itself look like a TIFF header (dual-format files)
        has_dicm = len(head) >= 132 and head[128:132] == b"DICM"
        fmt = None if has_dicm else image_format(head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt is not None:
                return load_raster(p, spath, fmt, pixel_spacing or fallback_spacing)
            if not looks_like_dicom(head):
                raise CpakInputError(
                    spath, "not a DICOM file (no 'DICM' marker and no DICOM header), nor PNG/TIFF"
                )
            return _load_dicom(p, spath, pixel_spacing, has_dicm, fallback_spacing, lazy)
    except CpakInputError:
        raise
    except MemoryError:
        raise CpakMemoryError(spath, "image too large to load (out of memory)") from None
    except Exception as exc:  # noqa: BLE001 - boundary: never let a traceback reach the CLI
        raise CpakInputError(
            spath, f"cannot load image ({type(exc).__name__}: {short(exc)})"
        ) from None
