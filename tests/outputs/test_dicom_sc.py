"""The overlay as a DICOM Secondary Capture: same patient and study as the film, new series,
the source referenced, orientation of the head-up picture, anonymization, PNG sources."""

import hashlib
import shutil

import numpy as np
import pydicom
import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.outputs.dicom_common import PATIENT_KEYWORDS, STUDY_KEYWORDS, anon_uid
from cpak_cli.outputs.dicom_sc import SC_SERIES_NUMBER, overlay_orientation, write_secondary_capture
from cpak_cli.outputs.overlay import write_overlay
from tests.factories import dciodvfy_errors, write_leg_film

BGR = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
SC = "1.2.840.10008.5.1.4.1.1.7"
#: What an SC may hold: its own modules plus the copied Patient and General Study attributes.
ALLOWED = set(PATIENT_KEYWORDS + STUDY_KEYWORDS) | {
    "SpecificCharacterSet", "StudyInstanceUID", "SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "InstanceNumber", "InstanceCreationDate", "InstanceCreationTime",
    "SeriesDate", "SeriesTime", "ContentDate", "ContentTime", "Manufacturer", "SoftwareVersions", "ConversionType",
    "ImageType", "DerivationDescription", "BurnedInAnnotation", "PatientOrientation", "Laterality",
    "ReferencedImageSequence", "SourceImageSequence", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "PlanarConfiguration", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "LossyImageCompression", "PixelData",
}


def test_sc_copies_patient_and_study_and_references_the_film(tmp_path):
    film = write_leg_film(tmp_path, image_laterality="R")
    before = hashlib.sha256(film.read_bytes()).hexdigest()
    out = write_overlay(tmp_path / "ov.dcm", BGR, source_path=film)
    assert hashlib.sha256(film.read_bytes()).hexdigest() == before  # the source is never modified
    raw = out.read_bytes()
    assert raw[:132] == b"\0" * 128 + b"DICM"
    ds, src = pydicom.dcmread(out), pydicom.dcmread(film)
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == SC
    assert "ReferringPhysicianName" not in src  # a Type 2 attribute the film lacks: present, empty
    for kw in PATIENT_KEYWORDS + STUDY_KEYWORDS + ("StudyInstanceUID",):
        assert ds[kw].value == src[kw].value if kw in src else kw in ds and not ds[kw].value, kw
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SeriesNumber == SC_SERIES_NUMBER
    assert ds.InstanceNumber == 1
    for seq in (ds.ReferencedImageSequence, ds.SourceImageSequence):
        assert seq[0].ReferencedSOPClassUID == src.SOPClassUID
        assert seq[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert set(e.keyword for e in ds) <= ALLOWED  # no identifier beyond the source's
    assert b"SECRET HOSPITAL" not in raw and "InstitutionName" not in ds
    assert list(ds.PatientOrientation) == ["L", "F"] and ds.Laterality == "R"
    assert ds.BurnedInAnnotation == "YES"
    assert np.array_equal(ds.pixel_array, BGR[:, :, ::-1])  # RGB of the BGR picture


@pytest.mark.parametrize("stored, drawn", [
    (["L", "F"], ["L", "F"]), (["R", "H"], ["R", "F"]), (["F", "L"], ["L", "F"]), (["H", "RA"], ["RA", "F"]),
    (None, []),
])
def test_orientation_of_the_head_up_overlay(tmp_path, stored, drawn):
    assert overlay_orientation("\\".join(stored) if stored else None) == drawn
    kw = {"patient_orientation": stored} if stored else {"patient_orientation": None}
    film = write_leg_film(tmp_path, pixels=np.arange(40 * 30, dtype=np.uint16).reshape(40, 30), **kw)
    ds = pydicom.dcmread(write_secondary_capture(tmp_path / "ov.dcm", BGR, film))
    assert list(ds.get("PatientOrientation") or []) == drawn


def test_anonymized_sc(tmp_path):
    film = write_leg_film(tmp_path)
    out = write_secondary_capture(tmp_path / "ov.dcm", BGR, film, anonymize_salt="pepper")
    raw = out.read_bytes()
    for secret in (b"SECRET-ID", b"DOE", b"ACC-SECRET", b"STUDY-SECRET", b"19600101", b"101500"):
        assert secret not in raw
    ds, src = pydicom.dcmread(out), pydicom.dcmread(film)
    assert ds.StudyInstanceUID == anon_uid(src.StudyInstanceUID, "pepper")
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == anon_uid(src.SOPInstanceUID, "pepper")
    assert ds.PatientID and ds.PatientID != src.PatientID and ds.PatientIdentityRemoved == "YES"
    assert ds.StudyDate == src.StudyDate  # kept, as in the anonymized CSV
    again = pydicom.dcmread(write_secondary_capture(tmp_path / "ov2.dcm", BGR, film, anonymize_salt="pepper"))
    assert again.PatientID == ds.PatientID and again.StudyInstanceUID == ds.StudyInstanceUID  # reproducible


def test_png_source_gets_empty_type2_placeholders(tmp_path):
    import cv2

    png = tmp_path / "film.png"
    cv2.imwrite(str(png), np.arange(2000, dtype=np.uint8).reshape(50, 40))
    for source in (png, None):
        ds = pydicom.dcmread(write_secondary_capture(tmp_path / "ov.dcm", BGR, source))
        for kw in PATIENT_KEYWORDS + STUDY_KEYWORDS:
            assert kw in ds and ds[kw].value in ("", None), kw
        assert ds.StudyInstanceUID and "ReferencedImageSequence" not in ds and "SourceImageSequence" not in ds
        assert list(ds.PatientOrientation or []) == []


def test_png_overlay_unchanged_and_missing_source_is_one_line(tmp_path):
    assert write_overlay(tmp_path / "ov.png", BGR).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CpakInputError, match="cannot read the source"):
        write_secondary_capture(tmp_path / "ov.dcm", BGR, tmp_path / "missing.dcm")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_dciodvfy_accepts_the_sc(tmp_path):
    film = write_leg_film(tmp_path)
    for out in (write_secondary_capture(tmp_path / "a.dcm", BGR, film),
                write_secondary_capture(tmp_path / "b.dcm", BGR, film, anonymize_salt="s"),
                write_secondary_capture(tmp_path / "c.dcm", BGR, None)):
        errors, _ = dciodvfy_errors(out)
        assert errors == [], out.name
