"""DX (Digital X-Ray, For Presentation) DICOM writer for phantom films.

The files carry every Type 1 and Type 2 attribute of the DX Image For Presentation IOD
(PS3.3 A.26.1), so a validator (dicom3tools ``dciodvfy``) reports no errors. Spacing, as
:mod:`cpak_cli.input.spacing` reads it (the effective spacing is always ``case.spacing_mm``):

* ``case.spacing_tag == "ImagerPixelSpacing"``: ImagerPixelSpacing (the detector spacing,
  effective x magnification) with EstimatedRadiographicMagnificationFactor and the source
  distances; no PixelSpacing. Loader source ``ImagerPixelSpacing/magnification``.
* ``case.spacing_tag == "PixelSpacing"``: the film is a parallel projection (magnification
  1.0, ``case.magnification``), so the detector spacing equals the spacing in the object
  plane: ImagerPixelSpacing and PixelSpacing carry the same values, and
  PixelSpacingCalibrationType ``GEOMETRY`` says that PixelSpacing accounts for the (unit)
  magnification. Loader source ``PixelSpacing (calibrated GEOMETRY)``, never flagged
  ``spacing_uncorrected_magnification``.

The phantom has no detector or positioner: DetectorType and PositionerType are present and
empty (Type 2, unknown); AcquisitionContextSequence is empty (Type 2).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cpak_cli.atomic import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

    from .generate import PhantomCase

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
#: (code value, coding scheme, meaning): SNOMED CT codes of the anatomy and the view (PS3.16
#: CID 4009 / CID 4010).
LOWER_LIMB = ("61685007", "SCT", "Lower limb")
ANTERO_POSTERIOR = ("399348003", "SCT", "antero-posterior")


def _code_item(code: tuple[str, str, str]) -> "Dataset":
    import pydicom

    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def write_dicom(case: "PhantomCase", img: np.ndarray, path: Path) -> None:
    """Write ``img`` (uint16, MONOCHROME2 sense, as returned by ``render``) as a DX file.

    MONOCHROME1 cases are inverted here.  UIDs are deterministic from ``(seed, index)``.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

    maxv = (1 << case.bits_stored) - 1
    px = np.ascontiguousarray(img.astype(np.uint16))
    lo, hi = np.percentile(px[:: max(1, px.shape[0] // 400), :: max(1, px.shape[1] // 200)], [0.5, 99.5])
    center, width = (lo + hi) / 2.0, max(hi - lo, 16.0)
    if case.photometric == "MONOCHROME1":
        px = (maxv - px).astype(np.uint16)
        center = maxv - center

    ent = ["cpak-phantom", str(case.seed), str(case.index)]
    study_uid = generate_uid(entropy_srcs=ent + ["study"])
    series_uid = generate_uid(entropy_srcs=ent + ["series"])
    sop_uid = generate_uid(entropy_srcs=ent + ["sop"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DX_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["cpak-cli-phantom-impl"])
    meta.ImplementationVersionName = "CPAK_PHANTOM_1"

    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DX_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    day = 1 + (case.seed * 31 + case.index) % 28
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = f"202401{day:02d}"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = f"{8 + case.index % 10:02d}{case.index % 60:02d}00"
    ds.AccessionNumber = f"PH{case.seed % 100000:05d}{case.index:05d}"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "cpak-cli phantom"
    ds.InstitutionName = "PHANTOM"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "LONG LEG STANDING AP"
    ds.SeriesDescription = "STANDING AP BILATERAL" if case.laterality == "B" else "STANDING AP"
    ds.PatientName = f"PHANTOM^CASE{case.index:04d}"
    ds.PatientID = f"PHANTOM-{case.index:04d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "LOWER LIMB" if case.laterality == "B" else "LEG"
    ds.ViewPosition = "AP"
    ds.ImageLaterality = case.laterality
    ds.PatientOrientation = ["L", "F"] if case.patient_right_on_image_left else ["R", "F"]
    ds.KVP = "85"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = case.photometric
    ds.Rows, ds.Columns = int(px.shape[0]), int(px.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = case.bits_stored
    ds.HighBit = case.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "INVERSE" if case.photometric == "MONOCHROME1" else "IDENTITY"  # PS3.3 C.8.11.3
    ds.BurnedInAnnotation = "NO"
    ds.AnatomicRegionSequence = [_code_item(LOWER_LIMB)]
    ds.ViewCodeSequence = [_code_item(ANTERO_POSTERIOR)]
    ds.DetectorType = ""
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if case.photometric == "MONOCHROME1" else 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{center:.1f}"
    ds.WindowWidth = f"{width:.1f}"
    ds.LossyImageCompression = "00"
    if case.spacing_tag == "PixelSpacing":
        ds.PixelSpacing = list(case.spacing_strings)
        ds.ImagerPixelSpacing = list(case.spacing_strings)
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "phantom: parallel projection, magnification 1.0"
    else:
        ds.ImagerPixelSpacing = list(case.spacing_strings)
        ds.EstimatedRadiographicMagnificationFactor = case.magnification_string
        ds.DistanceSourceToDetector = "1800"
        ds.DistanceSourceToPatient = f"{1800 / case.magnification:.1f}"
    ds.PixelData = px.tobytes()
    if case.compression == "rle":
        ds.compress(RLELossless, px, generate_instance_uid=False)
    elif case.compression == "jpeg2000":
        ds.compress(JPEG2000Lossless, px, generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue())
    _ = pydicom
