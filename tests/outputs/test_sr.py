"""DICOM SR (TID 1500) of a measured film: every number equals the JSON, failures are
qualified, landmarks point at the stored image, same study, anonymization, validity."""

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.input.loader import load_image
from cpak_cli.input.orientation import ORIENTATION_TURNS, apply_orientation, parse_orientation
from cpak_cli.outputs.dicom_common import anon_uid
from cpak_cli.outputs.sr import DEVICE_OBSERVER_UID, LEG_NUMBERS, SCHEME, stored_point, write_sr
from tests.factories import LEG_FILM_SHAPE, build_leg, dciodvfy_errors, measured_result, write_leg_film

hd = pytest.importorskip("highdicom")
FAILURE = "114006"
TURNS = {"none": ["L", "F"], "flip_vertical": ["L", "H"], "transpose": ["F", "L"], "transpose+flip_vertical": ["H", "R"]}


def _items(items):
    """Every content item of the tree, depth first."""
    for it in items:
        yield it
        yield from _items(it.get("ContentSequence") or [])


def _tracking_id(group) -> str:
    return next(str(c.TextValue) for c in group.ContentSequence
                if c.ValueType == "TEXT" and c.ConceptNameCodeSequence[0].CodeValue == "112039")


def groups(ds) -> dict[str, object]:
    """Measurement groups by tracking identifier ("right leg", "left femoral_head", ...)."""
    out = {}
    for it in _items(ds.ContentSequence):
        if it.ValueType == "CONTAINER" and it.ConceptNameCodeSequence[0].CodeValue == "125007":
            out[_tracking_id(it)] = it
    return out


def numbers(group) -> dict[str, object]:
    """The group's own NUM items by concept code value."""
    return {c.ConceptNameCodeSequence[0].CodeValue: c for c in group.ContentSequence if c.ValueType == "NUM"}


def value_of(num) -> float:
    mv = num.MeasuredValueSequence[0]
    return float(mv.FloatingPointValue) if "FloatingPointValue" in mv else float(mv.NumericValue)


def two_legs(image, drop=None):
    drop = drop or {}
    legs = {}
    for side, (ldfa, mpta) in (("right", (87.0, 84.0)), ("left", (90.0, 91.0))):
        pts = build_leg(ldfa, mpta, side=side, spacing_mm=image.spacing_mm,
                        origin_mm=(125.0 if side == "right" else 375.0, 60.0))
        legs[side] = {n: (None if n in drop.get(side, ()) else p) for n, p in pts.items()}
    return legs


@pytest.fixture
def film(tmp_path) -> Path:
    return write_leg_film(tmp_path)


def test_every_number_equals_the_json(film, tmp_path):
    res = measured_result(load_image(film), two_legs(load_image(film)))
    out = write_sr(tmp_path / "sr.dcm", res)
    ds = pydicom.dcmread(out)
    js = res.to_json()["legs"]
    g = groups(ds)
    for side in ("right", "left"):
        assert js[side]["error"] is None
        nums = numbers(g[f"{side} leg"])
        assert len(nums) == len(LEG_NUMBERS)
        for n in LEG_NUMBERS:
            num = nums[n.name[0]]
            assert value_of(num) == js[side][n.key]  # exact: the FD value is the JSON float
            assert num.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == n.unit[0]
            assert n.unit[0] == ("mm" if n.key.endswith("_mm") else "deg")
            assert "NumericValueQualifierCodeSequence" not in num
            normality = [c for c in num.get("ContentSequence", []) if c.ValueType == "CODE"
                         and c.ConceptNameCodeSequence[0].CodeValue == "121402"]  # DCM Normality
            if n.key in js[side]["normal"]:
                abnormal = normality[0].ConceptCodeSequence[0].CodeValue != "17621005"
                assert abnormal == (n.key in js[side]["outside_normal"])
                limits = sorted(value_of(c) for c in _items(num.ContentSequence) if c.ValueType == "NUM")
                assert limits == sorted(js[side]["normal"][n.key]["range"])
            else:
                assert normality == []
        cpak = [c for c in g[f"{side} leg"].ContentSequence
                if c.ValueType == "CODE" and c.ConceptNameCodeSequence[0].CodeValue == "CPAK"]
        assert [c.ConceptCodeSequence[0].CodeValue for c in cpak] == [f"CPAK-{js[side]['cpak']}"]
        for name, lm in js[side]["landmarks"].items():  # confidences of the landmark groups
            conf = numbers(g[f"{side} {name}"])["LMCONF"]
            assert value_of(conf) == lm["confidence"]
    # highdicom reads it back with the same values
    sr = hd.sr.srread(out)
    leg_groups = sr.content.get_image_measurement_groups()
    assert [grp.tracking_identifier for grp in leg_groups] == ["right leg", "left leg", "both legs"]
    lld = leg_groups.pop().get_measurements()
    assert [m.value for m in lld] == [res.to_json()["leg_length_difference_mm"]]
    for grp, side in zip(leg_groups, ("right", "left")):
        got = {m.name.value: m.value for m in grp.get_measurements()}
        assert got == {n.name[0]: js[side][n.key] for n in LEG_NUMBERS}
    assert len(sr.content.get_planar_roi_measurement_groups()) == 16


def test_failed_and_partial_legs_carry_the_failure_qualifier(film, tmp_path):
    image = load_image(film)
    legs = two_legs(image, drop={"right": ("ankle_lateral", "ankle_medial")})
    legs["left"] = {}  # nothing found: not measured at all
    res = measured_result(image, legs)
    js = res.to_json()["legs"]
    assert js["right"]["ldfa"] is not None and js["right"]["mpta"] is None  # partly measured
    assert all(js["left"][n.key] is None for n in LEG_NUMBERS)
    ds = pydicom.dcmread(write_sr(tmp_path / "sr.dcm", res))
    g = groups(ds)
    failed = 0
    for side in ("right", "left"):
        nums = numbers(g[f"{side} leg"])
        assert set(nums) == {n.name[0] for n in LEG_NUMBERS}
        for n in LEG_NUMBERS:
            num = nums[n.name[0]]
            if js[side][n.key] is None:
                assert len(num.MeasuredValueSequence) == 0  # no number at all
                assert num.NumericValueQualifierCodeSequence[0].CodeValue == FAILURE
                assert num.NumericValueQualifierCodeSequence[0].CodingSchemeDesignator == "DCM"
                failed += 1
            else:
                assert value_of(num) == js[side][n.key] and "NumericValueQualifierCodeSequence" not in num
    assert failed == sum(js[s][n.key] is None for s in ("right", "left") for n in LEG_NUMBERS)
    assert "both legs" not in g  # no leg-length difference without both lengths
    # only found landmarks become points; a leg without a CPAK type has no CPAK evaluation
    assert {k for k in g if k.startswith("right ")} == {f"right {n}" for n, p in legs["right"].items() if p} | {"right leg"}
    assert not [k for k in g if k.startswith("left ") and k != "left leg"]
    assert not [c for c in _items(g["left leg"].ContentSequence)
                if c.ValueType == "CODE" and c.ConceptNameCodeSequence[0].CodeValue == "CPAK"]


@pytest.mark.parametrize("turn", ORIENTATION_TURNS)
def test_stored_point_inverts_the_head_up_turn(turn):
    rng = np.random.default_rng(0)
    stored = rng.random((7, 5))
    turned, _ = apply_orientation(stored, (1.0, 1.0), parse_orientation("x", "\\".join(TURNS[turn])))
    assert parse_orientation("x", "\\".join(TURNS[turn])).applied == turn
    for y in range(turned.shape[0]):
        for x in range(turned.shape[1]):
            xs, ys = stored_point(x, y, turn, turned.shape[0])
            assert stored[int(ys), int(xs)] == turned[y, x]


@pytest.mark.parametrize("turn", ["flip_vertical", "transpose+flip_vertical"])
def test_scoord_points_at_the_stored_pixel_on_a_turned_film(tmp_path, turn):
    """A bright dot in the stored film: the loader turns the film, the landmark is found at the
    dot in the turned frame, and the SR's SCOORD names the stored pixel (+0.5, DICOM corners)."""
    rows, cols = LEG_FILM_SHAPE if "transpose" not in turn else LEG_FILM_SHAPE[::-1]
    pixels = np.full((rows, cols), 100, np.uint16)
    pixels[37, 21] = 4000
    path = write_leg_film(tmp_path, pixels=pixels, patient_orientation=TURNS[turn])
    image = load_image(path)
    assert image.orientation_applied == turn
    y_t, x_t = np.unravel_index(int(np.argmax(image.pixels)), image.pixels.shape)
    legs = two_legs(image)
    legs["right"]["knee_center"] = (float(x_t), float(y_t))
    ds = pydicom.dcmread(write_sr(tmp_path / "sr.dcm", measured_result(image, legs)))
    region = next(c for c in groups(ds)["right knee_center"].ContentSequence if c.ValueType == "SCOORD")
    assert region.GraphicType == "POINT"
    assert [float(v) for v in region.GraphicData] == [21.5, 37.5]
    ref = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == image.sop_instance_uid
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"


def test_same_study_new_series_references_and_observer(film, tmp_path):
    res = measured_result(load_image(film), two_legs(load_image(film)))
    out = write_sr(tmp_path / "sr.dcm", res)
    assert out.read_bytes()[:132] == b"\0" * 128 + b"DICM"
    ds, src = pydicom.dcmread(out), pydicom.dcmread(film)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and ds.Modality == "SR"
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate"):
        assert ds[kw].value == src[kw].value
    assert "InstitutionName" not in ds  # nothing beyond the Patient and Study modules is copied
    ev = ds.CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    texts = {str(c.TextValue) for c in _items(ds.ContentSequence) if c.ValueType == "TEXT"}
    for k, v in res.models.items():
        assert f"model {k}={v}" in texts
    assert any(t.startswith("pixel spacing 2 x 2 mm") for t in texts)
    uids = {str(c.UID) for c in _items(ds.ContentSequence) if c.ValueType == "UIDREF"}
    assert DEVICE_OBSERVER_UID in uids
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME


def test_anonymized_sr_hashes_identifiers(film, tmp_path):
    res = measured_result(load_image(film), two_legs(load_image(film)))
    out = write_sr(tmp_path / "sr.dcm", res, anonymize_salt="pepper")
    raw = out.read_bytes()
    for secret in (b"SECRET-ID", b"DOE", b"ACC-SECRET", b"STUDY-SECRET", b"19600101"):
        assert secret not in raw
    ds, src = pydicom.dcmread(out), pydicom.dcmread(film)
    assert ds.StudyInstanceUID == anon_uid(src.StudyInstanceUID, "pepper") != src.StudyInstanceUID
    refs = {c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for c in _items(ds.ContentSequence) if c.ValueType == "IMAGE"}
    assert refs == {anon_uid(src.SOPInstanceUID, "pepper")}
    assert ds.PatientIdentityRemoved == "YES"


def test_png_source_and_unmeasured_film_are_refused(tmp_path):
    import cv2

    png = tmp_path / "film.png"
    cv2.imwrite(str(png), np.arange(2000, dtype=np.uint8).reshape(50, 40))
    image = load_image(png, pixel_spacing=(0.5, 0.5))
    with pytest.raises(CpakInputError, match="DICOM SR needs a DICOM film"):
        write_sr(tmp_path / "sr.dcm", measured_result(image, {}))
    from cpak_cli.pipeline.result import ScanResult

    with pytest.raises(CpakInputError, match="not measured"):
        write_sr(tmp_path / "sr.dcm", ScanResult(path=str(png), image=None, error="bad file"))
    assert not (tmp_path / "sr.dcm").exists()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_dciodvfy_accepts_the_sr(film, tmp_path):
    image = load_image(film)
    legs = two_legs(image, drop={"left": ("ankle_lateral",)})
    res = measured_result(image, legs)  # numbers and failures
    for out in (write_sr(tmp_path / "sr.dcm", res), write_sr(tmp_path / "anon.dcm", res, anonymize_salt="s")):
        errors, _ = dciodvfy_errors(out)
        assert errors == []


def test_writing_an_sr_does_not_decode_a_lazily_opened_film(tmp_path, monkeypatch):
    """The SR's landmark points need only the film's row count: a JPEG 2000 film opened
    piecewise is not decoded in full to write it."""
    from cpak_cli.input import loader
    from cpak_cli.input.film_source import FilmSource
    from tests.factories import make_j2k_dx, write

    path = write(make_j2k_dx(pixel_spacing=(0.5, 0.5)), tmp_path / "j2k.dcm")
    image = loader.open_film(path)
    assert isinstance(image, FilmSource)
    full_decodes = []
    monkeypatch.setattr(loader, "load_image", lambda *a, **k: full_decodes.append(a) or None)
    rows, cols = image.rows, image.cols
    legs = {"right": {"femoral_head": (cols * 0.3, rows * 0.1), "knee_center": (cols * 0.3, rows * 0.5)}}
    write_sr(tmp_path / "sr.dcm", measured_result(image, legs), path)
    assert full_decodes == [] and image.fast
