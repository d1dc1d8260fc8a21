"""What the DICOM outputs (Secondary Capture overlay, Structured Report) share.

* :func:`read_source`: the Patient and General Study modules of the measured film, read again
  from its header (``stop_before_pixels``; the source is opened read-only and never modified),
  plus the identity of the source image (SOP Class/Instance UID, Series Instance UID) that an
  output references. Only the Type 1/2 attributes of those two modules (and IssuerOfPatientID,
  StudyDescription, SpecificCharacterSet) are copied: an output carries no identifier the source
  does not have.
* Anonymized (``anonymize_salt``, as ``cpak batch --anonymize``): PatientID, StudyID and
  AccessionNumber become :func:`cpak_cli.pipeline.batch_csv.salted_hash` of their value (StudyID and
  AccessionNumber cut to 16 characters, their VR's limit), PatientName ``ANON^<hash>``; every UID of the source
  (study, series, instance) becomes ``2.25.<the same hash as a decimal number>`` (:func:`anon_uid`),
  so all outputs of one film still reference each other, and the CSV's ``sop_instance_uid`` hash
  is the hexadecimal form of the same number. Birth date, sex, study time, referring physician,
  study description and issuer are emptied or dropped; the study date is kept, as in the CSV.
  PatientIdentityRemoved is ``YES`` with a DeidentificationMethod.
* A source that is not DICOM (PNG/TIFF input): no patient and no study to copy. Every Type 2
  attribute of the Patient and General Study modules is present and **empty** (unknown) and the
  StudyInstanceUID is a new one; nothing references a source image.
* :func:`new_instance` fills the new Series (new SeriesInstanceUID, SeriesNumber) and instance
  (new SOPInstanceUID, InstanceNumber 1, creation dates); :func:`save_dicom` writes a Part 10
  file with a zeroed 128-byte preamble, atomically.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_bytes
from cpak_cli.errors import CpakInputError

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

__all__ = [
    "MANUFACTURER",
    "PATIENT_KEYWORDS",
    "STUDY_KEYWORDS",
    "SourceReference",
    "anon_uid",
    "read_source",
    "new_instance",
    "save_dicom",
]

MANUFACTURER = "cpak-cli"
#: Patient module (PS3.3 C.7.1.1): Type 2 attributes, then the Type 3 one copied when not anonymizing.
PATIENT_KEYWORDS: tuple[str, ...] = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
#: General Study module (PS3.3 C.7.2.1): Type 2 attributes (StudyInstanceUID, Type 1, apart).
STUDY_KEYWORDS: tuple[str, ...] = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_OPTIONAL_COPIED: tuple[str, ...] = ("IssuerOfPatientID", "StudyDescription")
DEIDENTIFICATION_METHOD = "cpak-cli --anonymize: salted SHA-256 of names, IDs and UIDs"  # LO: <= 64


def anon_uid(uid: str | None, salt: str) -> str:
    """``2.25.<int>`` from the salted hash of ``uid`` (empty for an empty ``uid``): a valid UID
    (PS3.5 B.2), the same for the same ``uid`` and salt in every output."""
    from cpak_cli.pipeline.batch_csv import salted_hash

    h = salted_hash(uid, salt)
    return f"2.25.{int(h, 16)}" if h else ""


@dataclass(frozen=True)
class SourceReference:
    """The measured film as the DICOM outputs see it.

    Attributes:
        header: a Dataset holding exactly what outputs copy: the Patient and General Study
            attributes (all Type 2 present, maybe empty; StudyInstanceUID always set) and
            SpecificCharacterSet when the source has one; anonymized when asked.
        sop_class_uid, sop_instance_uid, series_instance_uid: the source image's identity (as
            the outputs reference it: anonymized UIDs under anonymization); None for a source
            that is not DICOM or lacks them.
        patient_orientation: PatientOrientation as stored (``"L\\F"``) or None.
        laterality: ImageLaterality, else Laterality, when R, L or B; else None.
        anonymized: whether ``header`` and the UIDs are anonymized.
    """

    header: "Dataset"
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    patient_orientation: str | None = None
    laterality: str | None = None
    anonymized: bool = False

    @property
    def referencable(self) -> bool:
        """True when there is a source image instance to reference."""
        return bool(self.sop_class_uid and self.sop_instance_uid)

    def sop_reference(self) -> "Dataset":
        """An item of a SOP Instance Reference Macro (ReferencedSOPClassUID +
        ReferencedSOPInstanceUID) naming the source image."""
        from pydicom import Dataset

        if not self.referencable:
            raise ValueError("the source has no SOP instance to reference")
        item = Dataset()
        item.ReferencedSOPClassUID = self.sop_class_uid
        item.ReferencedSOPInstanceUID = self.sop_instance_uid
        return item

    def evidence(self) -> "Dataset":
        """``header`` plus the source's SOP Class/Instance and Series Instance UIDs: what an SR
        needs of the image it references (highdicom ``evidence``)."""
        from copy import deepcopy

        ds = deepcopy(self.header)
        ds.SOPClassUID = self.sop_class_uid
        ds.SOPInstanceUID = self.sop_instance_uid
        ds.SeriesInstanceUID = self.series_instance_uid
        return ds


def _placeholder() -> SourceReference:
    from pydicom import Dataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    for kw in PATIENT_KEYWORDS + STUDY_KEYWORDS:
        setattr(ds, kw, "")
    ds.StudyInstanceUID = generate_uid()
    return SourceReference(header=ds)


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)


def _laterality(ds: Any) -> str | None:
    for kw in ("ImageLaterality", "Laterality"):
        v = _text(ds, kw).strip().upper()
        if v in ("R", "L", "B"):
            return v
    return None


def _read_header(path: Path) -> Any:
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        except Exception as exc:  # noqa: BLE001 - one line for the user, never a traceback
            from cpak_cli.input.tags import short

            raise CpakInputError(path, f"cannot read the source DICOM header ({short(exc)})") from None


def read_source(source_path: str | Path | None, anonymize_salt: str | None = None) -> SourceReference:
    """The :class:`SourceReference` of the film at ``source_path`` (see the module docstring).

    ``None`` or a PNG/TIFF file gives the placeholder (empty Type 2 patient and study, a new
    StudyInstanceUID, nothing to reference). Raises :class:`CpakInputError` when the file is
    missing or its DICOM header cannot be read.
    """
    from pydicom import Dataset
    from pydicom.uid import generate_uid

    from cpak_cli.input.sniff import image_format, read_head
    from cpak_cli.input.tags import raw_str

    if source_path is None:
        return _placeholder()
    path = Path(source_path)
    try:
        head = read_head(path)
    except OSError as exc:
        raise CpakInputError(path, f"cannot read the source file ({exc.strerror or exc})") from None
    if image_format(head) is not None:
        return _placeholder()
    src = _read_header(path)
    ds = Dataset()
    if anonymize_salt is None:
        if "SpecificCharacterSet" in src:
            ds.SpecificCharacterSet = src.SpecificCharacterSet
        for kw in PATIENT_KEYWORDS + STUDY_KEYWORDS:
            ds[kw] = src[kw] if kw in src else _empty_element(kw)
        for kw in _OPTIONAL_COPIED:
            if kw in src and _text(src, kw):
                ds[kw] = src[kw]
        study_uid = _text(src, "StudyInstanceUID") or generate_uid()
        uids = {kw: _text(src, kw) or None for kw in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID")}
    else:
        from cpak_cli.pipeline.batch_csv import salted_hash

        name = salted_hash(_text(src, "PatientName"), anonymize_salt)
        ds.PatientName = f"ANON^{name}" if name else ""
        ds.PatientID = salted_hash(_text(src, "PatientID"), anonymize_salt)
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyDate = _text(src, "StudyDate")
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = salted_hash(_text(src, "StudyID"), anonymize_salt)[:16]
        ds.AccessionNumber = salted_hash(_text(src, "AccessionNumber"), anonymize_salt)[:16]
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        study_uid = anon_uid(_text(src, "StudyInstanceUID"), anonymize_salt) or generate_uid()
        uids = {kw: anon_uid(_text(src, kw), anonymize_salt) or None for kw in ("SOPInstanceUID", "SeriesInstanceUID")}
        uids["SOPClassUID"] = _text(src, "SOPClassUID") or None
    ds.StudyInstanceUID = study_uid
    return SourceReference(
        header=ds,
        sop_class_uid=uids["SOPClassUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        patient_orientation=raw_str(src, "PatientOrientation"),
        laterality=_laterality(src),
        anonymized=anonymize_salt is not None,
    )


def _empty_element(keyword: str) -> Any:
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    tag = tag_for_keyword(keyword)
    assert tag is not None
    return DataElement(tag, dictionary_VR(tag), "")


def new_instance(ds: "Dataset", source: SourceReference, sop_class_uid: str, modality: str,
                 series_number: int, series_description: str) -> None:
    """Fill ``ds`` with the copied Patient and General Study modules of ``source``, a new Series
    (new SeriesInstanceUID, ``series_number``, ``modality``), a new instance (new
    SOPInstanceUID, InstanceNumber 1, instance creation and series date/time: now, local time)
    and the equipment (Manufacturer ``cpak-cli``, SoftwareVersions the tool's version)."""
    from copy import deepcopy

    from pydicom.uid import generate_uid

    for elem in deepcopy(source.header):
        ds[elem.tag] = elem
    now = datetime.datetime.now()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = 1
    ds.InstanceCreationDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__


def save_dicom(path: str | Path, ds: "Dataset") -> Path:
    """Write ``ds`` as a DICOM Part 10 file (128 zero bytes, ``DICM``, file meta from the SOP
    Class/Instance UIDs; Explicit VR Little Endian unless ``ds.file_meta`` says otherwise),
    atomically. Returns the path."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = FileDataset(str(path), ds, file_meta=meta, preamble=b"\0" * 128)
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    return atomic_write_bytes(path, buf.getvalue())
