"""The measurements of one film as a DICOM Structured Report a PACS accepts (highdicom).

Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33) holding a TID 1500 Measurement Report, in the
Study of the measured film (Patient and Study copied or anonymized by
:mod:`cpak_cli.outputs.dicom_common`), a new Series (number :data:`SR_SERIES_NUMBER`).
Unverified and PRELIMINARY: a person has to check the landmarks (the overlay) first.

Content:

* Observation context: the device observer ``cpak-cli`` (UID :data:`DEVICE_OBSERVER_UID`).
* Per leg a TID 1501 measurement group (tracking identifier ``"right leg"``), finding site
  lower limb with laterality (SNOMED CT), referencing the source image: one numeric
  measurement per :data:`LEG_NUMBERS` entry whose key is in ``LegMeasurement.to_json()``, in
  the unit of the table (UCUM ``deg`` / ``mm``), each with its finding site and laterality and
  the algorithm identification (TID 4019: name ``cpak-cli``, the tool version, parameters: each
  model with its card's sha256 prefix, the pixel spacing and its source). A value the leg has
  not got (null in the JSON) is a NUM item with an empty Measured Value Sequence and the
  Numeric Value Qualifier DCM 114006 "Measurement failure", never a number. A value with a
  normal range (the JSON's ``normal``) carries it (TID 312, SCT lower/upper limit) and its
  normality (TID 310: SCT Normal, Abnormally Low, Abnormally High). The CPAK type (when the leg
  has one) and each flag are coded qualitative evaluations (:data:`SCHEME`).
* The film's leg-length difference (right minus left, mm) in a group ``"both legs"`` when the
  JSON has one.
* Per found landmark a TID 1410 planar ROI group (tracking identifier ``"right
  femoral_condyle_lateral"``, finding type SCT 711101009 "Anatomical point", finding site with
  laterality and lateral/medial modifier) whose region is an SCOORD POINT on the source image,
  with the landmark confidence (UCUM ``1``). SCOORD coordinates are those of the image **as
  stored** (before the loader's head-up turn, :func:`stored_point`) in the DICOM convention
  (PS3.3 C.18.6.1.2: column, row; the top-left corner of the top-left pixel is 0.0, 0.0, so a
  pixel centre ``(x, y)`` of docs/conventions.md is ``(x + 0.5, y + 0.5)``).

Codes: SNOMED CT (SCT), DICOM (DCM) and UCUM where they exist; otherwise the private scheme
``99CPAK`` (:data:`SCHEME`), declared in CodingSchemeIdentificationSequence and listed in the
README. A new numeric value is one line in :data:`LEG_NUMBERS`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpak_cli import __version__
from cpak_cli.core import measurement as m
from cpak_cli.core.landmarks import LANDMARKS, SIDES
from cpak_cli.errors import CpakInputError
from cpak_cli.outputs.dicom_common import MANUFACTURER, SourceReference, read_source, save_dicom

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.sr.coding import Code

    from cpak_cli.pipeline.result import ScanResult

__all__ = [
    "SCHEME",
    "SR_SERIES_NUMBER",
    "DEVICE_OBSERVER_UID",
    "LEG_NUMBERS",
    "FLAG_CODES",
    "LANDMARK_SITES",
    "stored_point",
    "write_sr",
]

SCHEME = "99CPAK"
SCHEME_NAME = "cpak-cli private codes"
SR_SERIES_NUMBER = 9902
#: The device observer's UID, the same in every report (the tool, not the computer):
#: ``pydicom.uid.generate_uid(entropy_srcs=["cpak-cli", "device observer"])``.
DEVICE_OBSERVER_UID = "1.2.826.0.1.3680043.8.498.40413324600887814709799447051955178365"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _code(value: str, scheme: str, meaning: str) -> "Code":
    from pydicom.sr.coding import Code

    return Code(value, scheme, meaning)


# (value, scheme, meaning) triples; turned into pydicom Codes where used
DEG = ("deg", "UCUM", "degree")
MM = ("mm", "UCUM", "millimeter")
NO_UNITS = ("1", "UCUM", "no units")
LOWER_LIMB = ("61685007", "SCT", "Lower limb")
KNEE = ("72696002", "SCT", "Knee")
FEMUR = ("71341001", "SCT", "Femur")
TIBIA = ("12611008", "SCT", "Tibia")
LATERALITY = {"right": ("24028007", "SCT", "Right"), "left": ("7771000", "SCT", "Left")}
MODIFIER = {"lateral": ("49370004", "SCT", "Lateral"), "medial": ("255561001", "SCT", "Medial")}
MEASUREMENT_FAILURE = ("114006", "DCM", "Measurement failure")
#: Normality (PS3.16 CID 222) and normal range limits (CID 223), SNOMED CT.
NORMAL = ("17621005", "SCT", "Normal")
ABNORMALLY_LOW = ("371880002", "SCT", "Abnormally Low")
ABNORMALLY_HIGH = ("371879000", "SCT", "Abnormally High")
RANGE_LOWER = ("385524004", "SCT", "Normal Range Lower Limit")
RANGE_UPPER = ("371933006", "SCT", "Normal Range Upper Limit")
NORMAL_RANGE_AUTHORITY = "cpak-cli alignment panel (cpak_cli.core.panel.NORMAL_RANGES; see README)"
ANATOMICAL_POINT = ("711101009", "SCT", "Anatomical point")
PLAIN_RADIOGRAPHY = ("168537006", "SCT", "Plain radiography")
LEG_ALIGNMENT = ("LEGALIGN", SCHEME, "Coronal alignment of the lower limb")
CPAK_CONCEPT = ("CPAK", SCHEME, "CPAK type")
FLAG_CONCEPT = ("FLAG", SCHEME, "Measurement quality flag")
LANDMARK_CONFIDENCE = ("LMCONF", SCHEME, "Landmark confidence")


@dataclass(frozen=True)
class LegNumber:
    """One numeric value of a leg: ``key`` in ``LegMeasurement.to_json()``, its concept name,
    unit and finding site (all ``(value, scheme, meaning)``)."""

    key: str
    name: tuple[str, str, str]
    unit: tuple[str, str, str]
    site: tuple[str, str, str] = KNEE


#: The numbers of a leg in the SR: add a line to report a new value of ``LegMeasurement.to_json``.
LEG_NUMBERS: tuple[LegNumber, ...] = (
    LegNumber("ldfa", ("LDFA", SCHEME, "Lateral distal femoral angle"), DEG),
    LegNumber("mpta", ("MPTA", SCHEME, "Medial proximal tibial angle"), DEG),
    LegNumber("ahka", ("AHKA", SCHEME, "Arithmetic hip-knee-ankle angle"), DEG),
    LegNumber("jlo", ("JLO", SCHEME, "Joint line obliquity"), DEG),
    LegNumber("mhka", ("MHKA", SCHEME, "Mechanical hip-knee-ankle angle"), DEG, LOWER_LIMB),
    LegNumber("jlca", ("JLCA", SCHEME, "Joint line convergence angle"), DEG),
    LegNumber("mad_mm", ("MAD", SCHEME, "Mechanical axis deviation"), MM),
    LegNumber("femur_mm", ("FEMURLEN", SCHEME, "Femoral mechanical length"), MM, FEMUR),
    LegNumber("tibia_mm", ("TIBIALEN", SCHEME, "Tibial mechanical length"), MM, TIBIA),
    LegNumber("leg_mm", ("LEGLEN", SCHEME, "Mechanical leg length"), MM, LOWER_LIMB),
)
#: The film's leg-length difference (``ScanResult.to_json()["leg_length_difference_mm"]``, right
#: minus left): its own measurement group, present when the JSON has a number.
LEG_LENGTH_DIFFERENCE = LegNumber("leg_length_difference_mm",
                                  ("LLD", SCHEME, "Leg length difference, right minus left"), MM, LOWER_LIMB)

#: Flag name -> code value in :data:`SCHEME` (code meaning: the flag name). A flag not listed
#: gets ``F-`` and 10 hex digits of its name's SHA-1 (stable, within the 16 characters of SH).
FLAG_CODES: dict[str, str] = {
    m.FLAG_BORDERLINE: "BORDERLINE",
    m.FLAG_ANGLE_RANGE: "ANGLE-RANGE",
    m.FLAG_GEOMETRY: "GEOMETRY",
    m.FLAG_LOW_CONFIDENCE: "LOW-CONFIDENCE",
    m.FLAG_SPACING_UNCORRECTED: "SPACING-UNCORR",
    m.FLAG_SPACING_USER: "SPACING-USER",
    m.FLAG_ORIENTATION_ASSUMED: "ORIENT-ASSUMED",
    m.FLAG_SIZE: "SIZE",
    m.FLAG_LATERALITY: "LATERALITY",
    m.FLAG_JOINT_DISAGREEMENT: "JOINT-DISAGREE",
}

#: Landmark -> (anatomic site, lateral/medial modifier or None).
LANDMARK_SITES: dict[str, tuple[tuple[str, str, str], str | None]] = {
    "femoral_head": (("2812003", "SCT", "Femoral head"), None),
    "femoral_condyle_lateral": (("310652005", "SCT", "Distal femur"), "lateral"),
    "femoral_condyle_medial": (("310652005", "SCT", "Distal femur"), "medial"),
    "tibial_plateau_lateral": (("306783000", "SCT", "Tibial plateau"), "lateral"),
    "tibial_plateau_medial": (("306783000", "SCT", "Tibial plateau"), "medial"),
    "knee_center": (("49076000", "SCT", "Knee joint"), None),
    "ankle_lateral": (("70258002", "SCT", "Ankle joint"), "lateral"),
    "ankle_medial": (("70258002", "SCT", "Ankle joint"), "medial"),
}


def flag_code(flag: str) -> tuple[str, str, str]:
    """The coded value of a flag in :data:`SCHEME`."""
    value = FLAG_CODES.get(flag) or "F-" + hashlib.sha1(flag.encode()).hexdigest()[:10].upper()
    return (value, SCHEME, flag[:64])


def stored_point(x: float, y: float, orientation_applied: str, turned_rows: int) -> tuple[float, float]:
    """Pixel ``(x, y)`` of the head-up image (docs/conventions.md, pixel-centre convention) ->
    the same point in the image as stored, undoing
    :func:`cpak_cli.input.orientation.apply_orientation` (transpose, then vertical flip).
    ``turned_rows`` is the head-up image's row count."""
    if "flip_vertical" in orientation_applied:
        y = turned_rows - 1 - y
    if "transpose" in orientation_applied:
        x, y = y, x
    return x, y


def _group_context(source: SourceReference) -> dict[str, Any]:
    import highdicom as hd

    assert source.sop_class_uid is not None and source.sop_instance_uid is not None
    return {
        "group_image": hd.sr.SourceImageForMeasurementGroup(source.sop_class_uid, source.sop_instance_uid),
        "measurement_image": hd.sr.SourceImageForMeasurement(source.sop_class_uid, source.sop_instance_uid),
        "region_image": hd.sr.SourceImageForRegion(source.sop_class_uid, source.sop_instance_uid),
    }


def _algorithm(result: "ScanResult") -> Any:
    import highdicom as hd

    params = [f"model {k}={v}" for k, v in sorted(result.models.items())]
    if result.image is not None:
        sp = result.image.spacing_mm
        params.append(f"pixel spacing {sp[0]:g} x {sp[1]:g} mm ({result.image.spacing_source})")
    return hd.sr.AlgorithmIdentification(name=MANUFACTURER, version=__version__, parameters=params)


def _properties(number: LegNumber, value: float, normal: Any) -> Any:
    """TID 310 properties of a value with a normal range (``{"range": [lo, hi], ...}`` of the
    leg's JSON ``normal``): normality (Normal / Abnormally Low / High) and the range (TID 312)."""
    import highdicom as hd

    lo, hi = (float(v) for v in normal["range"])
    normality = ABNORMALLY_LOW if value < lo else ABNORMALLY_HIGH if value > hi else NORMAL
    limits = [hd.sr.NumContentItem(_code(*concept), limit, _code(*number.unit),
                                   relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES)
              for concept, limit in ((RANGE_LOWER, lo), (RANGE_UPPER, hi))]
    return hd.sr.MeasurementProperties(
        normality=_code(*normality),
        normal_range_properties=hd.sr.NormalRangeProperties(values=limits, authority=NORMAL_RANGE_AUTHORITY))


def _measurement(number: LegNumber, value: Any, side: str | None, algorithm: Any, ctx: dict[str, Any],
                 normal: Any = None) -> Any:
    """A TID 300 measurement (with its normal range when ``normal`` is given); a value that is
    None or not finite becomes a failure (empty Measured Value Sequence + qualifier
    "Measurement failure"). ``side`` None: no laterality (a film-level value)."""
    import highdicom as hd

    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    laterality = _code(*LATERALITY[side]) if side else None
    return hd.sr.Measurement(
        name=_code(*number.name), value=float(value) if ok else 0.0, unit=_code(*number.unit),
        qualifier=None if ok else _code(*MEASUREMENT_FAILURE),
        finding_sites=[hd.sr.FindingSite(_code(*number.site), laterality=laterality)],
        algorithm_id=algorithm, referenced_images=[ctx["measurement_image"]],
        properties=_properties(number, float(value), normal) if ok and normal else None,
    )


def _empty_failed_values(items: Any) -> int:
    """Empty the Measured Value Sequence of every NUM item (recursively) qualified "Measurement
    failure": PS3.3 C.18.1, the qualifier then gives the reason for the absent value. Done on
    the finished document because highdicom cannot hold a NUM item without a value (its
    placeholder 0.0 never reaches the file). Returns the number of items emptied."""
    n = 0
    for item in items:
        qualifier = item.get("NumericValueQualifierCodeSequence")
        if item.get("ValueType") == "NUM" and qualifier and qualifier[0].CodeValue == MEASUREMENT_FAILURE[0]:
            item.MeasuredValueSequence = []
            n += 1
        n += _empty_failed_values(item.get("ContentSequence") or [])
    return n


def _leg_group(side: str, leg: dict[str, Any], algorithm: Any, ctx: dict[str, Any]) -> Any:
    import highdicom as hd
    from pydicom.uid import generate_uid

    normal = leg.get("normal") or {}
    measurements = [_measurement(n, leg.get(n.key), side, algorithm, ctx, normal.get(n.key))
                    for n in LEG_NUMBERS if n.key in leg]
    evaluations = []
    if leg.get("cpak"):
        evaluations.append(hd.sr.QualitativeEvaluation(
            _code(*CPAK_CONCEPT), _code(f"CPAK-{leg['cpak']}", SCHEME, f"CPAK type {leg['cpak']}")))
    for flag in leg.get("flags", []):
        evaluations.append(hd.sr.QualitativeEvaluation(_code(*FLAG_CONCEPT), _code(*flag_code(flag))))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{side} leg"),
        finding_type=_code(*LEG_ALIGNMENT),
        finding_sites=[hd.sr.FindingSite(_code(*LOWER_LIMB), laterality=_code(*LATERALITY[side]))],
        algorithm_id=algorithm, measurements=measurements, qualitative_evaluations=evaluations or None,
        source_images=[ctx["group_image"]],
    )


def _landmark_groups(result: "ScanResult", side: str, algorithm: Any, ctx: dict[str, Any]) -> list[Any]:
    import highdicom as hd
    import numpy as np
    from pydicom.uid import generate_uid

    assert result.image is not None
    image = result.image
    out = []
    preds = result.landmarks.get(side, {})
    for name in LANDMARKS:
        p = preds.get(name)
        if p is None or not p.found:
            continue
        xs, ys = stored_point(float(p.x), float(p.y), image.orientation_applied, int(image.rows))  # no decode
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POINT,
                                   graphic_data=np.array([[xs + 0.5, ys + 0.5]]), source_image=ctx["region_image"])
        site, modifier = LANDMARK_SITES[name]
        finding_site = hd.sr.FindingSite(_code(*site), laterality=_code(*LATERALITY[side]),
                                         topographical_modifier=_code(*MODIFIER[modifier]) if modifier else None)
        confidence = hd.sr.Measurement(name=_code(*LANDMARK_CONFIDENCE), value=float(p.confidence),
                                       unit=_code(*NO_UNITS))
        out.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{side} {name}"),
            referenced_region=region, finding_type=_code(*ANATOMICAL_POINT), finding_sites=[finding_site],
            algorithm_id=algorithm, measurements=[confidence],
        ))
    return out


def _scheme_item() -> Any:
    from pydicom import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "cpak-cli"
    return item


def build_sr(result: "ScanResult", source: SourceReference) -> Any:
    """The SR (a highdicom ``ComprehensiveSR`` dataset) of ``result`` on ``source``. Numbers
    are taken from ``result.to_json()``, so they equal the JSON output exactly."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    ctx = _group_context(source)
    algorithm = _algorithm(result)
    doc = result.to_json()
    legs = doc["legs"]
    groups: list[Any] = []
    for side in SIDES:
        if side in legs:
            groups.append(_leg_group(side, legs[side], algorithm, ctx))
            groups.extend(_landmark_groups(result, side, algorithm, ctx))
    lld = doc.get(LEG_LENGTH_DIFFERENCE.key)
    if lld is not None:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="both legs"),
            finding_sites=[hd.sr.FindingSite(_code(*LOWER_LIMB))], algorithm_id=algorithm,
            measurements=[_measurement(LEG_LENGTH_DIFFERENCE, lld, None, algorithm, ctx)],
            source_images=[ctx["group_image"]]))
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID, name=MANUFACTURER, manufacturer_name=MANUFACTURER,
            model_name=f"{MANUFACTURER} {__version__}"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_code(*PLAIN_RADIOGRAPHY),
        imaging_measurements=groups or None,
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[source.evidence()], content=report[0], series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description="cpak-cli knee alignment measurements",
    )
    sr.SoftwareVersions = __version__
    _empty_failed_values(sr.ContentSequence)
    sr.CodingSchemeIdentificationSequence = [_scheme_item()]
    return sr


def write_sr(path: str | Path, result: "ScanResult", source_path: str | Path | None = None, *,
             anonymize_salt: str | None = None) -> Path:
    """Write the SR of ``result`` (a measured :class:`~cpak_cli.pipeline.result.ScanResult`) at
    ``path`` (atomically) and return the path.

    ``source_path`` is the measured DICOM film (default ``result.path``); its header is read
    again (never modified) for the Patient and Study and the reference. ``anonymize_salt``
    anonymizes them as ``cpak batch --anonymize`` does. Raises
    :class:`~cpak_cli.errors.CpakInputError` when the film was not measured, is not DICOM (PNG/
    TIFF: landmarks need a DICOM image to point at) or has no SOP Class/Instance UID.
    """
    src = result.path if source_path is None else source_path
    if result.image is None:
        raise CpakInputError(src, f"no SR: the film was not measured ({result.error or 'no image'})")
    if result.image.file_format != "dicom":
        raise CpakInputError(src, "a DICOM SR needs a DICOM film to reference (the input is "
                                  f"{result.image.file_format.upper()}); use --json instead")
    source = read_source(src, anonymize_salt)
    if not source.referencable:
        raise CpakInputError(src, "no SR: the film has no SOPClassUID/SOPInstanceUID to reference")
    return save_dicom(path, build_sr(result, source))
