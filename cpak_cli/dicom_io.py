"""Load one radiograph (DICOM, or PNG/TIFF with a user-given spacing) as a normalised grey image.

Contract (see docs/conventions.md):

* ``LoadedImage.pixels`` is a float32 2-D array ``(rows, cols)`` with values in ``[0, 1]``,
  **head up** (row 0 = top = towards the head), with bone / high attenuation **bright** (the
  MONOCHROME2 sense). The pipeline is: stored values (pydicom applies BitsStored and the
  signedness of PixelRepresentation) -> modality LUT (RescaleSlope/Intercept or Modality LUT
  Sequence) -> VOI (first VOI LUT Sequence item, else the first WindowCenter/WindowWidth pair,
  else min-max scaling) -> inversion (``1 - v``) for MONOCHROME1 or Presentation LUT Shape
  INVERSE (:mod:`cpak_cli.dicom_values`; INVERSE on MONOCHROME1 is the same single inversion
  the standard requires MONOCHROME1 to carry, not a second one) -> turn head up by both values
  of PatientOrientation (:mod:`cpak_cli.dicom_orientation`: none, flip_vertical, transpose or
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
  not checked (thumbnails, synthetic test films). See :mod:`cpak_cli.dicom_spacing`.
* ``LoadedImage.patient_right_on_image_left`` says which image side holds the patient's right
  (after the turn); ``assumed_orientation`` is True when the file did not say (no
  PatientOrientation, or an A/P one) and the standard AP display, patient's right on the image's
  left, is assumed. ``orientation_applied`` says which turn was made.

Every problem with an input file is raised as a one-line
:class:`cpak_cli.errors.CpakInputError` ``"PATH: reason"``; no pydicom/OpenCV exception
escapes :func:`load_image`. Input files are only ever opened for reading.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli.dicom_orientation import ORIENTATION_TURNS, Orientation, apply_orientation, parse_orientation
from cpak_cli.dicom_spacing import (
    NO_SPACING_HINT,
    SPACING_SOURCES,
    UNCORRECTED_SPACING_SOURCES,
    check_file_spacing,
    check_user_spacing,
    spacing_from_dicom,
)
from cpak_cli.dicom_tags import first_number, raw_str, short
from cpak_cli.dicom_values import INVERSIONS, minmax, polarity, voi_to_unit
from cpak_cli.errors import CpakInputError

__all__ = [
    "LoadedImage",
    "load_image",
    "is_probably_dicom",
    "SPACING_SOURCES",
    "UNCORRECTED_SPACING_SOURCES",
    "ORIENTATION_TURNS",
    "INVERSIONS",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic + BigTIFF
# Groups a DICOM data set without preamble plausibly starts with (file meta, identifying,
# patient, acquisition, relationship, image pixel description; 0x0000/0x0004 for old files).
_FIRST_GROUPS = frozenset({0x0000, 0x0002, 0x0004, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028})
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


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One radiograph, normalised for the pipeline.

    Attributes:
        pixels: float32 ``(rows, cols)`` in ``[0, 1]``, bone bright (MONOCHROME2 sense), head up
            (row 0 = top of the film, towards the head; turned per ``orientation_applied``).
        spacing_mm: ``(row_mm, col_mm)`` in millimetres per pixel of ``pixels`` (swapped from the
            file's order when the turn transposed the image).
        spacing_source: which rule gave ``spacing_mm``, one of :data:`SPACING_SOURCES` (see the
            module docstring); those in :data:`UNCORRECTED_SPACING_SOURCES` are at the detector,
            *not* corrected for magnification (lengths overestimated, typically 5-15 %);
            ``"user"``: ``--pixel-spacing`` / ``fallback_spacing``.
        patient_right_on_image_left: True if the patient's right is on the image's left (small
            x) of ``pixels``, the standard AP display.
        assumed_orientation: True when PatientOrientation (0020,0020) did not decide the side
            (absent/empty, or its across value is A/P) and the standard AP display was assumed;
            always True for PNG/TIFF.
        laterality: ImageLaterality (0020,0062), else Laterality (0020,0060): ``"R"``,
            ``"L"``, ``"B"`` (both) or None (absent/other values such as "U").
        path: the input path as given (str).
        sop_instance_uid, study_date, modality, transfer_syntax (UID string), photometric
            (PhotometricInterpretation as stored, before inversion): None when absent (always
            None for PNG/TIFF).
        rows, cols: ``pixels.shape``.
        file_format: ``"dicom"``, ``"png"`` or ``"tiff"``.
        voi_source: how values were mapped to ``[0, 1]``: ``"voi_lut"``, ``"window"`` or
            ``"minmax"``.
        patient_orientation: the raw PatientOrientation value as stored (e.g. ``"F\\R"``) or
            None.
        orientation_applied: the turn made to bring the head up, one of
            :data:`ORIENTATION_TURNS`: ``"none"``, ``"flip_vertical"``, ``"transpose"`` or
            ``"transpose+flip_vertical"`` (always ``"none"`` for PNG/TIFF).
        inversion: why the values were inverted (``1 - v``), one of :data:`INVERSIONS`:
            ``"none"``, ``"MONOCHROME1"``, ``"PresentationLUTShape INVERSE"`` (on MONOCHROME2)
            or ``"MONOCHROME1+INVERSE"`` (one inversion).
        metadata: a few informative tags as strings (Manufacturer, StudyInstanceUID,
            SeriesInstanceUID, ViewPosition, ... and ``TransferSyntaxName``); only tags present
            in the file. No patient identifiers.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float]
    spacing_source: str
    patient_right_on_image_left: bool
    assumed_orientation: bool
    laterality: str | None
    path: str
    sop_instance_uid: str | None = None
    study_date: str | None = None
    modality: str | None = None
    transfer_syntax: str | None = None
    photometric: str | None = None
    rows: int = 0
    cols: int = 0
    file_format: str = "dicom"
    voi_source: str = "minmax"
    patient_orientation: str | None = None
    orientation_applied: str = "none"
    inversion: str = "none"
    metadata: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------- sniffing


def _read_head(path: Path, n: int = 256) -> bytes:
    with open(path, "rb") as fh:  # read-only
        return fh.read(n)


def _looks_like_dicom(head: bytes) -> bool:
    """Cheap DICOM test on the first bytes of a file (no parsing of the whole file)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # No preamble: the first element's tag must be in a plausible low group, followed either by
    # an explicit VR (two upper-case letters) or an implicit 32-bit length that is not absurd.
    for endian in ("<", ">"):
        group, elem = struct.unpack(endian + "HH", head[:4])
        if group not in _FIRST_GROUPS:
            continue
        vr = head[4:6]
        if len(vr) == 2 and all(65 <= b <= 90 for b in vr):
            return True
        (length,) = struct.unpack(endian + "I", head[4:8])
        if length < 0x0100_0000 or length == 0xFFFF_FFFF:
            return True
    return False


def _image_format(head: bytes) -> str | None:
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    return None


def is_probably_dicom(path: str | Path) -> bool:
    """Return True if ``path`` is a readable file that looks like DICOM.

    Cheap: reads only the first 256 bytes. True when the bytes 128..131 are ``b"DICM"`` (Part 10
    file with preamble) or, for files without preamble, when the first element tag is in a
    plausible low group (0002, 0008, 0010, 0018, 0020, 0028, ...) followed by an explicit VR or a
    sane implicit length. Never raises (unreadable paths and directories give False).
    """
    try:
        p = Path(path)
        if not p.is_file():
            return False
        return _looks_like_dicom(_read_head(p))
    except (OSError, ValueError):
        return False


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


# --------------------------------------------------------------------------------- DICOM


def _ts_label(uid: Any) -> str:
    try:
        name = uid.name if getattr(uid, "name", "") and uid.name != str(uid) else ""
    except Exception:  # noqa: BLE001
        name = ""
    return f"'{name}' ({uid})" if name else f"'{uid}'"


def _read_dataset(path: Path, spath: str, has_dicm: bool) -> tuple[Any, str]:
    """Parse the file (forced) and check it holds one greyscale image; return (ds, note)."""
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(str(path), force=True)
        except Exception as exc:  # noqa: BLE001
            raise CpakInputError(spath, f"unreadable DICOM file ({short(exc)})") from None
    ends_early = any("end of file" in str(w.message).lower() for w in caught)
    early_note = " (file ends early)" if ends_early else ""
    try:
        keys = set(ds.keys())
    except Exception:  # noqa: BLE001
        keys = set()
    if not keys:
        meta0 = getattr(ds, "file_meta", None)
        if ends_early or has_dicm or (meta0 is not None and len(meta0) > 0):
            raise CpakInputError(
                spath, f"DICOM file truncated or corrupt: no data elements could be read{early_note}"
            )
        raise CpakInputError(spath, "not a DICOM file (no data elements)")
    return ds, early_note


def _check_image_kind(spath: str, ds: Any) -> tuple[str | None, str]:
    """Refuse what is not a single-frame greyscale image; return (photometric, its upper case)."""
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise CpakInputError(spath, "float pixel data is not supported")
        raise CpakInputError(spath, "no PixelData in the DICOM file (not an image)")
    frames = first_number(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise CpakInputError(
            spath, f"multi-frame DICOM ({int(frames)} frames) is not supported; export one frame"
        )
    spp = first_number(ds.get("SamplesPerPixel")) or 1
    photometric = raw_str(ds, "PhotometricInterpretation")
    phot_u = (photometric or "").upper()
    if spp > 1 or phot_u.startswith(("RGB", "YBR", "PALETTE", "HSV", "ARGB", "CMYK")):
        raise CpakInputError(
            spath,
            f"colour image (SamplesPerPixel={int(spp)}, {photometric or 'no photometric'}) "
            "is not supported; a greyscale radiograph is needed",
        )
    if phot_u and phot_u not in ("MONOCHROME1", "MONOCHROME2"):
        raise CpakInputError(spath, f"unsupported PhotometricInterpretation {photometric!r}")
    missing_tags = [
        k for k in ("Rows", "Columns", "BitsAllocated", "PixelRepresentation") if ds.get(k) is None
    ]
    if missing_tags:
        raise CpakInputError(
            spath, f"incomplete image header: missing {', '.join(missing_tags)}"
        )
    if not phot_u:
        # lenient: a single-sample image without PhotometricInterpretation is read as
        # MONOCHROME2 (in memory only; ``photometric`` stays None)
        ds.PhotometricInterpretation = "MONOCHROME2"
        phot_u = "MONOCHROME2"
    return photometric, phot_u


def _transfer_syntax(spath: str, ds: Any) -> Any:
    """The transfer syntax UID (set in memory for raw data sets); refuse it without a decoder."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if not ts:
        # no file meta (raw data set): use the encoding the reader detected
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if implicit is None:
            implicit, little = True, True
        ts = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        if meta is None:
            from pydicom.dataset import FileMetaDataset

            ds.file_meta = FileMetaDataset()  # in memory only; the file is never written
        ds.file_meta.TransferSyntaxUID = ts
    ts = UID(str(ts))
    ts_label = _ts_label(ts)
    try:
        decoder = get_decoder(ts)
    except Exception:  # noqa: BLE001 - NotImplementedError / ValueError for unknown UIDs
        raise CpakInputError(
            spath, f"unsupported transfer syntax {ts_label}: no decoder for its pixel data"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(str(m) for m in getattr(decoder, "missing_dependencies", []))
        raise CpakInputError(
            spath,
            f"unsupported transfer syntax {ts_label}: no decoder plugin installed"
            + (f" ({missing})" if missing else ""),
        )
    return ts


def _decode_unit(spath: str, ds: Any, ts: Any, early_note: str, phot_u: str) -> tuple[np.ndarray, str, str]:
    """Decode the pixels and map them to [0, 1], bone bright: (pixels, voi_source, inversion)."""
    from pydicom.pixels import apply_modality_lut

    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise CpakInputError(
            spath, f"pixel data truncated or corrupt{early_note} ({_ts_label(ts)}): {short(exc)}"
        ) from None
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise CpakInputError(
            spath, f"unexpected pixel array shape {tuple(raw.shape)}; a single 2-D image is needed"
        )
    if raw.shape[0] < 2 or raw.shape[1] < 2:
        raise CpakInputError(spath, f"image too small ({raw.shape[0]}x{raw.shape[1]} pixels)")
    try:
        modality_values = np.asarray(apply_modality_lut(raw, ds))
    except Exception as exc:  # noqa: BLE001
        raise CpakInputError(spath, f"invalid modality LUT / rescale ({short(exc)})") from None
    unit, voi_source = voi_to_unit(spath, ds, modality_values)
    inversion = polarity(phot_u, ds)
    if inversion != "none":
        unit = 1.0 - unit
    return np.clip(unit, 0.0, 1.0), voi_source, inversion


def _spacing(
    spath: str, ds: Any, orientation: Orientation, turned_rows: int,
    pixel_spacing: tuple[float, float] | None, fallback_spacing: tuple[float, float] | None,
) -> tuple[tuple[float, float], str]:
    """The spacing in the file's stored ``(row, col)`` order and its source.

    The user's spacing wins; otherwise the file's (rules and plausibility: see
    :mod:`cpak_cli.dicom_spacing`; plausibility is judged on the head-up film, ``turned_rows``
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
    fallback_spacing: tuple[float, float] | None = None,
) -> LoadedImage:
    ds, early_note = _read_dataset(path, spath, has_dicm)
    photometric, phot_u = _check_image_kind(spath, ds)
    ts = _transfer_syntax(spath, ds)
    unit, voi_source, inversion = _decode_unit(spath, ds, ts, early_note, phot_u)
    orientation = parse_orientation(spath, raw_str(ds, "PatientOrientation"))
    turned_rows = unit.shape[1] if orientation.transpose else unit.shape[0]
    spacing, source = _spacing(spath, ds, orientation, turned_rows, pixel_spacing, fallback_spacing)
    turned, spacing = apply_orientation(unit.astype(np.float32), spacing, orientation)
    ts_name = ts.name if ts.name != str(ts) else None
    return LoadedImage(
        pixels=turned,
        spacing_mm=spacing,
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
        rows=int(turned.shape[0]),
        cols=int(turned.shape[1]),
        file_format="dicom",
        voi_source=voi_source,
        patient_orientation=orientation.raw,
        orientation_applied=orientation.applied,
        inversion=inversion,
        metadata=_metadata(ds, ts_name),
    )


# --------------------------------------------------------------------------------- PNG / TIFF


def _load_raster(
    path: Path, spath: str, fmt: str, pixel_spacing: tuple[float, float] | None
) -> LoadedImage:
    if pixel_spacing is None:
        raise CpakInputError(spath, f"PNG/TIFF has no pixel spacing; {NO_SPACING_HINT}")
    spacing = check_user_spacing(spath, pixel_spacing)
    import cv2

    arr: np.ndarray | None
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old_level = None
    try:
        if log is not None:  # keep OpenCV's decoder complaints off the terminal
            old_level = log.getLogLevel()
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        # np.fromfile + imdecode: works with any path encoding, file opened read-only
        buf = np.fromfile(str(path), dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except Exception:  # noqa: BLE001
        arr = None
    finally:
        if log is not None and old_level is not None:
            log.setLogLevel(old_level)
    if arr is None:
        try:
            from PIL import Image  # optional fallback (e.g. unusual TIFF compressions)
        except ImportError:
            raise CpakInputError(spath, f"unreadable {fmt.upper()} image") from None
        try:
            with Image.open(path) as im:
                arr = np.asarray(im)
        except Exception as exc:  # noqa: BLE001
            raise CpakInputError(
                spath, f"unreadable {fmt.upper()} image ({short(exc)})"
            ) from None
    arr = np.asarray(arr)
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] in (2, 3, 4):
            colour = arr[:, :, :3] if arr.shape[2] >= 3 else arr[:, :, :1]
            if colour.shape[2] == 3 and not (
                np.array_equal(colour[:, :, 0], colour[:, :, 1])
                and np.array_equal(colour[:, :, 0], colour[:, :, 2])
            ):
                raise CpakInputError(
                    spath, "colour image is not supported; a greyscale radiograph is needed"
                )
            arr = colour[:, :, 0]  # grey stored as RGB(A) / grey+alpha: drop alpha
        else:
            raise CpakInputError(spath, f"unexpected image shape {tuple(arr.shape)}")
    if arr.ndim != 2:
        raise CpakInputError(spath, f"unexpected image shape {tuple(arr.shape)}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise CpakInputError(spath, f"image too small ({arr.shape[0]}x{arr.shape[1]} pixels)")
    pixels = np.ascontiguousarray(minmax(spath, arr), dtype=np.float32)
    return LoadedImage(
        pixels=pixels,
        spacing_mm=spacing,
        spacing_source="user",
        patient_right_on_image_left=True,
        assumed_orientation=True,
        laterality=None,
        path=spath,
        rows=int(pixels.shape[0]),
        cols=int(pixels.shape[1]),
        file_format=fmt,
        voi_source="minmax",
        metadata={"dtype": str(arr.dtype)},
    )


# --------------------------------------------------------------------------------- entry point


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
            invalid PatientOrientation pair, no contrast.
    """
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
            head = _read_head(p)
        except OSError as exc:
            raise CpakInputError(
                spath, f"cannot read file ({exc.strerror or short(exc)})"
            ) from None
        if not head:
            raise CpakInputError(spath, "empty file")
        # 'DICM' first: a DICOM preamble may itself look like a TIFF header (dual-format files)
        has_dicm = len(head) >= 132 and head[128:132] == b"DICM"
        fmt = None if has_dicm else _image_format(head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt is not None:
                return _load_raster(p, spath, fmt, pixel_spacing or fallback_spacing)
            if not _looks_like_dicom(head):
                raise CpakInputError(
                    spath, "not a DICOM file (no 'DICM' marker and no DICOM header), nor PNG/TIFF"
                )
            return _load_dicom(p, spath, pixel_spacing, has_dicm, fallback_spacing)
    except CpakInputError:
        raise
    except MemoryError:
        raise CpakInputError(spath, "image too large to load (out of memory)") from None
    except Exception as exc:  # noqa: BLE001 - boundary: never let a traceback reach the CLI
        raise CpakInputError(
            spath, f"cannot load image ({type(exc).__name__}: {short(exc)})"
        ) from None
