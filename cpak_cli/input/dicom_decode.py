"""DICOM decoding: parse the data set, refuse what is not one greyscale image, check the transfer
syntax has a decoder, and map the stored values to ``[0, 1]`` bone bright.

Every failure is a one-line :class:`cpak_cli.errors.CpakInputError` ``"PATH: reason"``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli.errors import CpakInputError
from cpak_cli.input.tags import first_number, raw_str, short
from cpak_cli.input.values import polarity, voi_to_unit


def ts_label(uid: Any) -> str:
    try:
        name = uid.name if getattr(uid, "name", "") and uid.name != str(uid) else ""
    except Exception:  # noqa: BLE001
        name = ""
    return f"'{name}' ({uid})" if name else f"'{uid}'"


def read_dataset(path: Path, spath: str, has_dicm: bool) -> tuple[Any, str]:
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


def check_image_kind(spath: str, ds: Any) -> tuple[str | None, str]:
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


def transfer_syntax(spath: str, ds: Any) -> Any:
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
    label = ts_label(ts)
    try:
        decoder = get_decoder(ts)
    except Exception:  # noqa: BLE001 - NotImplementedError / ValueError for unknown UIDs
        raise CpakInputError(
            spath, f"unsupported transfer syntax {label}: no decoder for its pixel data"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(str(m) for m in getattr(decoder, "missing_dependencies", []))
        raise CpakInputError(
            spath,
            f"unsupported transfer syntax {label}: no decoder plugin installed"
            + (f" ({missing})" if missing else ""),
        )
    return ts


def decode_unit(spath: str, ds: Any, ts: Any, early_note: str, phot_u: str) -> tuple[np.ndarray, str, str]:
    """Decode the pixels and map them to [0, 1], bone bright: (pixels, voi_source, inversion)."""
    from pydicom.pixels import apply_modality_lut

    check_jpeg2000_tiles(spath, ds, ts)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise CpakInputError(
            spath, f"pixel data truncated or corrupt{early_note} ({ts_label(ts)}): {short(exc)}"
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


def check_jpeg2000_tiles(spath: str, ds: Any, ts: Any) -> None:
    """Refuse a JPEG 2000 film whose codestream lacks tiles: OpenJPEG decodes it without an
    error, the missing tiles black (:func:`cpak_cli.input.j2k_stream.tile_coverage`).

    Raises:
        CpakInputError: ``"PATH: JPEG 2000 pixel data damaged: K of N tiles missing"``.
    """
    if not str(ts).startswith("1.2.840.10008.1.2.4.9"):  # JPEG 2000 (.90-.93, .201-.203 differ)
        return
    from cpak_cli.input.j2k_stream import frame_codestream, tile_coverage

    cs = frame_codestream(ds.PixelData) if "PixelData" in ds else None
    coverage = tile_coverage(cs) if cs else None
    if coverage is not None and coverage[0] < coverage[1]:
        raise CpakInputError(
            spath, f"JPEG 2000 pixel data damaged: {coverage[1] - coverage[0]} of {coverage[1]} tiles missing"
        )
