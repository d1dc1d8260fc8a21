"""The overlay picture as a DICOM Secondary Capture Image (PS3.3 A.8.1) that a PACS accepts.

Same Study and Patient as the measured film (:mod:`cpak_cli.outputs.dicom_common`: copied, or
anonymized, or empty placeholders for a PNG/TIFF source), a new Series (number
:data:`SC_SERIES_NUMBER`), every Type 1 and Type 2 attribute of the IOD, and the source image
referenced in ReferencedImageSequence and SourceImageSequence (SOP Class + Instance UID).

The overlay is drawn on the film turned head up (:mod:`cpak_cli.input.orientation`), so its
PatientOrientation is ``X\\F`` with X the source's across-the-body value (``L\\F`` for the
standard AP display); empty (unknown) when the source has none. Laterality is the source's R or L
(empty for both legs or unknown). BurnedInAnnotation is ``YES``: the picture carries text (the
title is the input path unless anonymized). The picture is resampled for display: it has no
pixel spacing and is not for measuring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cpak_cli.outputs.dicom_common import SourceReference, new_instance, read_source, save_dicom

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

__all__ = ["SC_SERIES_NUMBER", "overlay_orientation", "write_secondary_capture"]

SC_SERIES_NUMBER = 9901
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: DCM 121322 "Source image for image processing operation" (PS3.16 CID 7202).
_PURPOSE_SOURCE = ("121322", "DCM", "Source image for image processing operation")


def overlay_orientation(patient_orientation: str | None) -> list[str]:
    """PatientOrientation of a picture drawn on the head-up film (rows: the source's across
    value, columns: F), from the source's stored value; ``[]`` when the source has none or an
    invalid one (the loader refuses those before anything is drawn)."""
    from cpak_cli.errors import CpakInputError
    from cpak_cli.input.orientation import parse_orientation

    if not patient_orientation:
        return []
    try:
        o = parse_orientation("", patient_orientation)
    except CpakInputError:
        return []
    values = [v.strip().upper() for v in patient_orientation.split("\\")]
    across = values[1] if o.transpose else values[0]
    return [across, "F"]


def _dataset(bgr: np.ndarray, source: SourceReference) -> "Dataset":
    from pydicom import Dataset

    rgb = np.ascontiguousarray(np.asarray(bgr, dtype=np.uint8)[:, :, ::-1])
    ds = Dataset()
    new_instance(ds, source, SECONDARY_CAPTURE, "OT", SC_SERIES_NUMBER, "cpak-cli overlay")
    ds.ConversionType = "WSD"  # workstation
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "cpak-cli overlay: landmarks, axes and angles drawn on the source film turned head up"
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = overlay_orientation(source.patient_orientation)
    ds.Laterality = source.laterality if source.laterality in ("R", "L") else ""
    if source.referencable:
        ds.ReferencedImageSequence = [source.sop_reference()]
        item = source.sop_reference()
        purpose = Dataset()
        purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _PURPOSE_SOURCE
        item.PurposeOfReferenceCodeSequence = [purpose]
        ds.SourceImageSequence = [item]
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = rgb.tobytes()
    return ds


def write_secondary_capture(path: str | Path, bgr: np.ndarray, source_path: str | Path | None = None, *,
                            anonymize_salt: str | None = None) -> Path:
    """Write ``bgr`` (uint8 ``(rows, cols, 3)``, OpenCV BGR order) as an RGB Secondary Capture
    at ``path`` (atomically) and return the path.

    ``source_path`` is the measured film (re-read header only; never modified); None or a
    PNG/TIFF source gives empty Type 2 patient/study attributes and a new study (see
    :mod:`cpak_cli.outputs.dicom_common`). ``anonymize_salt`` anonymizes what is copied.
    Raises :class:`~cpak_cli.errors.CpakInputError` when the source header cannot be read.
    """
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"overlay must be (rows, cols, 3), got {bgr.shape}")
    return save_dicom(path, _dataset(bgr, read_source(source_path, anonymize_salt)))
