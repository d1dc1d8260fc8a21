"""Load one radiograph (DICOM, or PNG/TIFF with a user-given spacing) as a normalised grey image.

Contract (see docs/conventions.md):

* ``LoadedImage.pixels`` is a float32 2-D array ``(rows, cols)`` with values in ``[0, 1]``,
  stored as displayed (row 0 = top), with bone / high attenuation **bright** (the
  MONOCHROME2 sense). The pipeline is: stored values (pydicom applies BitsStored and the
  signedness of PixelRepresentation) -> modality LUT (RescaleSlope/Intercept or Modality LUT
  Sequence) -> VOI (first VOI LUT Sequence item, else the first WindowCenter/WindowWidth pair,
  else min-max scaling) -> MONOCHROME1 inversion (``1 - v``).
* ``LoadedImage.spacing_mm`` is ``(row_mm, col_mm)`` (DICOM order): ``row_mm`` is the distance
  between adjacent rows (vertical), ``col_mm`` the distance between adjacent columns.
  Anisotropic spacing is kept as is.
* ``LoadedImage.patient_right_on_image_left`` says which image side holds the patient's right;
  ``assumed_orientation`` is True when the file did not say (then the standard AP display,
  patient's right on the image's left, is assumed).

Every problem with an input file is raised as a one-line
:class:`cpak_cli.errors.CpakInputError` ``"PATH: reason"``; no pydicom/OpenCV exception
escapes :func:`load_image`. Input files are only ever opened for reading.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli.errors import CpakInputError

__all__ = [
    "LoadedImage",
    "load_image",
    "is_probably_dicom",
    "SPACING_SOURCES",
]

#: The possible values of :attr:`LoadedImage.spacing_source`.
SPACING_SOURCES: tuple[str, ...] = (
    "PixelSpacing",
    "ImagerPixelSpacing/magnification",
    "ImagerPixelSpacing",
    "user",
)

_NO_SPACING_HINT = "pass --pixel-spacing ROW COL"
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
        pixels: float32 ``(rows, cols)`` in ``[0, 1]``, bone bright (MONOCHROME2 sense), stored
            as displayed (row 0 = top of the film).
        spacing_mm: ``(row_mm, col_mm)`` in millimetres per pixel (DICOM order).
        spacing_source: where ``spacing_mm`` came from, one of :data:`SPACING_SOURCES`:
            ``"PixelSpacing"`` (0028,0030); ``"ImagerPixelSpacing/magnification"``
            (ImagerPixelSpacing (0018,1164) divided by EstimatedRadiographicMagnificationFactor
            (0018,1114), i.e. corrected to the patient plane); ``"ImagerPixelSpacing"`` (detector
            plane, *not* corrected for magnification, lengths are overestimated by the
            magnification, typically 5-15 %); ``"user"`` (``--pixel-spacing``).
        patient_right_on_image_left: True if the patient's right is on the image's left (small
            x), the standard AP display.
        assumed_orientation: True when PatientOrientation (0020,0020) did not decide the side
            (missing, or its first value is not L/R) and the standard AP display was assumed;
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
        patient_orientation: the raw PatientOrientation value (e.g. ``"L\\F"``) or None.
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


# --------------------------------------------------------------------------------- helpers


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _check_spacing(path: str, values: Any, what: str) -> tuple[float, float]:
    """Validate a ``(row_mm, col_mm)`` pair (user given): two finite numbers > 0."""
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
    return (row_mm, col_mm)


def _dicom_pair(value: Any) -> tuple[float, float] | None:
    """Two positive finite floats from a DS value (MultiValue/list/str), else None."""
    try:
        if isinstance(value, (str, bytes)):
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            seq: list[Any] = [v for v in text.replace(",", "\\").split("\\")]
        else:
            seq = list(value)
        if len(seq) == 1:  # a single value: isotropic (seen in the wild)
            seq = [seq[0], seq[0]]
        if len(seq) != 2:
            return None
        a, b = float(seq[0]), float(seq[1])
    except (TypeError, ValueError):
        return None
    if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0:
        return (a, b)
    return None


def _raw_str(ds: Any, keyword: str) -> str | None:
    """The value of ``keyword`` as a short string, or None when absent/empty/unreadable."""
    try:
        elem = ds.get(keyword)
        if elem is None:
            return None
        if isinstance(elem, (list, tuple)) or type(elem).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in elem)
        else:
            text = str(elem)
    except Exception:  # noqa: BLE001 - a malformed value is just absent
        return None
    text = " ".join(text.split())
    return text or None


def _spacing_from_dicom(path: str, ds: Any) -> tuple[tuple[float, float], str]:
    bad: list[str] = []
    if "PixelSpacing" in ds:
        raw = _raw_str(ds, "PixelSpacing")
        pair = _dicom_pair_safe(ds, "PixelSpacing")
        if pair is not None:
            return pair, "PixelSpacing"
        bad.append(f"PixelSpacing {raw!r}")
    if "ImagerPixelSpacing" in ds:
        raw = _raw_str(ds, "ImagerPixelSpacing")
        pair = _dicom_pair_safe(ds, "ImagerPixelSpacing")
        if pair is not None:
            mag = _positive_float_safe(ds, "EstimatedRadiographicMagnificationFactor")
            if mag is not None:
                return (pair[0] / mag, pair[1] / mag), "ImagerPixelSpacing/magnification"
            return pair, "ImagerPixelSpacing"
        bad.append(f"ImagerPixelSpacing {raw!r}")
    if bad:
        raise CpakInputError(
            path,
            f"invalid pixel spacing ({'; '.join(bad)}): must be two positive numbers; "
            f"{_NO_SPACING_HINT}",
        )
    raise CpakInputError(
        path, f"no pixel spacing (PixelSpacing/ImagerPixelSpacing) in the file; {_NO_SPACING_HINT}"
    )


def _dicom_pair_safe(ds: Any, keyword: str) -> tuple[float, float] | None:
    try:
        value = ds[keyword].value
    except Exception:  # noqa: BLE001 - unparsable DS value
        return None
    if value is None or value == "":
        return None
    return _dicom_pair(value)


def _positive_float_safe(ds: Any, keyword: str) -> float | None:
    try:
        value = ds[keyword].value if keyword in ds else None
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes, int, float)):
            value = list(value)[0]
        f = float(value)
    except Exception:  # noqa: BLE001
        return None
    return f if math.isfinite(f) and f > 0 else None


def _orientation(ds: Any) -> tuple[bool, bool, str | None]:
    """Return (patient_right_on_image_left, assumed, raw PatientOrientation).

    PatientOrientation (0020,0020) value 1 is the patient direction of the first row, i.e. the
    direction in which x (column index) increases. "L" (towards the patient's left) means the
    patient's right is on the image's left; "R" the opposite. Compound values ("LA", "RF")
    use their first letter. Anything else (A/P/H/F, empty, missing) leaves the standard AP
    convention assumed.
    """
    raw = _raw_str(ds, "PatientOrientation")
    if raw:
        first = raw.split("\\")[0].strip().upper()
        if first[:1] == "L":
            return True, False, raw
        if first[:1] == "R":
            return False, False, raw
    return True, True, raw


def _laterality(ds: Any) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = _raw_str(ds, keyword)
        if value:
            value = value.upper()
            if value in ("R", "L", "B"):
                return value
    return None


def _window_to_unit(
    arr: np.ndarray, center: float, width: float, function: str
) -> np.ndarray | None:
    """Apply a VOI window (PS3.3 C.11.2.1.2) and return values in [0, 1]; None if invalid."""
    function = (function or "LINEAR").strip().upper()
    x = arr.astype(np.float64, copy=False)
    if function == "SIGMOID":
        if width <= 0:
            return None
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            return None
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    # LINEAR (default; unknown functions are treated as LINEAR)
    if width < 1:
        return None
    if width == 1:
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _first_number(value: Any) -> float | None:
    try:
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes, int, float)):
            seq = list(value)
            if not seq:
                return None
            value = seq[0]
        f = float(value)
    except Exception:  # noqa: BLE001
        return None
    return f if math.isfinite(f) else None


def _minmax(path: str, arr: np.ndarray) -> np.ndarray:
    x = arr.astype(np.float64, copy=False)
    if x.size == 0:
        raise CpakInputError(path, "image is empty")
    finite = np.isfinite(x)
    if not finite.all():
        if not finite.any():
            raise CpakInputError(path, "image has no finite pixel values")
        x = np.where(finite, x, np.nanmin(np.where(finite, x, np.nan)))
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise CpakInputError(path, f"image has no contrast (all pixels equal {lo:g})")
    return (x - lo) / (hi - lo)


def _voi_to_unit(path: str, ds: Any, arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Map modality-LUT output ``arr`` to [0, 1] with the file's VOI, else min-max."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        try:
            item = ds.VOILUTSequence[0]
            out = apply_voi_lut(arr, ds, index=0, prefer_lut=True).astype(np.float64)
            nbits = int(item.LUTDescriptor[2])
            lut = item.get("LUTData")
            lo, hi = 0.0, float(2**nbits - 1)
            if isinstance(lut, (list, tuple)) or type(lut).__name__ == "MultiValue":
                vals = [float(v) for v in lut]
                if vals:
                    lo, hi = min(vals), max(vals)
            hi = max(hi, float(out.max()))
            lo = min(lo, float(out.min()))
            if hi > lo:
                unit = np.clip((out - lo) / (hi - lo), 0.0, 1.0)
                if float(unit.max() - unit.min()) > 1e-6:
                    return unit, "voi_lut"
        except Exception:  # noqa: BLE001 - a broken VOI LUT falls back to the window/min-max
            pass
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = _first_number(ds.get("WindowCenter"))
        width = _first_number(ds.get("WindowWidth"))
        if center is not None and width is not None:
            unit = _window_to_unit(arr, center, width, _raw_str(ds, "VOILUTFunction") or "")
            # a window that misses the data (constant result) is ignored
            if unit is not None and float(unit.max() - unit.min()) > 1e-6:
                return unit, "window"
    return _minmax(path, arr), "minmax"


def _metadata(ds: Any, ts_name: str | None) -> dict[str, str]:
    meta: dict[str, str] = {}
    for keyword in _METADATA_KEYWORDS:
        value = _raw_str(ds, keyword)
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


def _load_dicom(
    path: Path, spath: str, pixel_spacing: tuple[float, float] | None, has_dicm: bool,
    fallback_spacing: tuple[float, float] | None = None,
) -> LoadedImage:
    import pydicom
    from pydicom.pixels import apply_modality_lut, get_decoder
    from pydicom.uid import (
        UID,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(str(path), force=True)
        except Exception as exc:  # noqa: BLE001
            raise CpakInputError(spath, f"unreadable DICOM file ({_short(exc)})") from None
    ends_early = any("end of file" in str(w.message).lower() for w in caught)
    early_note = " (file ends early)" if ends_early else ""

    # ---- what kind of object is it
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
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise CpakInputError(spath, "float pixel data is not supported")
        raise CpakInputError(spath, "no PixelData in the DICOM file (not an image)")
    frames = _first_number(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise CpakInputError(
            spath, f"multi-frame DICOM ({int(frames)} frames) is not supported; export one frame"
        )
    spp = _first_number(ds.get("SamplesPerPixel")) or 1
    photometric = _raw_str(ds, "PhotometricInterpretation")
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

    # ---- transfer syntax
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
    ts_name = ts.name if ts.name != str(ts) else None
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

    # ---- pixels
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise CpakInputError(
            spath, f"pixel data truncated or corrupt{early_note} ({ts_label}): {_short(exc)}"
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
        raise CpakInputError(spath, f"invalid modality LUT / rescale ({_short(exc)})") from None
    unit, voi_source = _voi_to_unit(spath, ds, modality_values)
    if phot_u == "MONOCHROME1":
        unit = 1.0 - unit
    pixels = np.ascontiguousarray(np.clip(unit, 0.0, 1.0), dtype=np.float32)

    # ---- spacing and orientation
    if pixel_spacing is not None:
        spacing, source = _check_spacing(spath, pixel_spacing, "--pixel-spacing"), "user"
    elif fallback_spacing is not None and "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds:
        spacing, source = _check_spacing(spath, fallback_spacing, "--pixel-spacing"), "user"
    else:
        spacing, source = _spacing_from_dicom(spath, ds)
    right_on_left, assumed, raw_orient = _orientation(ds)

    return LoadedImage(
        pixels=pixels,
        spacing_mm=spacing,
        spacing_source=source,
        patient_right_on_image_left=right_on_left,
        assumed_orientation=assumed,
        laterality=_laterality(ds),
        path=spath,
        sop_instance_uid=_raw_str(ds, "SOPInstanceUID"),
        study_date=_raw_str(ds, "StudyDate"),
        modality=_raw_str(ds, "Modality"),
        transfer_syntax=str(ts),
        photometric=photometric,
        rows=int(pixels.shape[0]),
        cols=int(pixels.shape[1]),
        file_format="dicom",
        voi_source=voi_source,
        patient_orientation=raw_orient,
        metadata=_metadata(ds, ts_name),
    )


# --------------------------------------------------------------------------------- PNG / TIFF


def _load_raster(
    path: Path, spath: str, fmt: str, pixel_spacing: tuple[float, float] | None
) -> LoadedImage:
    if pixel_spacing is None:
        raise CpakInputError(spath, f"PNG/TIFF has no pixel spacing; {_NO_SPACING_HINT}")
    spacing = _check_spacing(spath, pixel_spacing, "--pixel-spacing")
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
                spath, f"unreadable {fmt.upper()} image ({_short(exc)})"
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
    pixels = np.ascontiguousarray(_minmax(spath, arr), dtype=np.float32)
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
        pixel_spacing: optional ``(row_mm, col_mm)``; overrides the file's spacing (source
            ``"user"``). Required for PNG/TIFF.
        fallback_spacing: optional ``(row_mm, col_mm)`` used only when the file has no spacing
            tag at all (and for PNG/TIFF); source ``"user"``. A file's own spacing always wins.

    Returns:
        The image (float32 in [0, 1], bone bright), its spacing in mm ``(row_mm, col_mm)`` and
        where it came from, and the orientation/laterality information; see
        :class:`LoadedImage`.

    Raises:
        CpakInputError: one line ``"PATH: reason"`` for a missing/unreadable file, a non-DICOM
            file, no PixelData, multi-frame, colour, unexpected shape, truncated/corrupt pixel
            data, an unsupported transfer syntax, no or invalid pixel spacing, no contrast.
    """
    p = Path(path)
    spath = str(path)
    if pixel_spacing is not None:
        _check_spacing(spath, pixel_spacing, "--pixel-spacing")
    try:
        if not p.exists():
            raise CpakInputError(spath, "file not found")
        if p.is_dir():
            raise CpakInputError(spath, "is a directory, not a file")
        try:
            head = _read_head(p)
        except OSError as exc:
            raise CpakInputError(
                spath, f"cannot read file ({exc.strerror or _short(exc)})"
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
            spath, f"cannot load image ({type(exc).__name__}: {_short(exc)})"
        ) from None
