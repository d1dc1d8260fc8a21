"""Tests of the digital phantom (cpak_cli.phantom): exact truth, variety, determinism,
rendering, DICOM output and the CLI command.  Renders are tiny (scale / max_size)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cpak_cli.core.cpak import cpak_type
from cpak_cli.core.landmarks import JOINTS, LANDMARKS, SIDES
from cpak_cli.phantom import make_case, render, write_case
from cpak_cli.phantom.spec import AHKA_RANGES, JLO_RANGES

TINY = dict(max_size=400)


def _angles(pts: dict, spacing: tuple[float, float]) -> tuple[float, float]:
    """Independent LDFA/MPTA (mm space) for the test."""
    r, c = spacing

    def mm(n: str) -> np.ndarray:
        return np.array([pts[n][0] * c, pts[n][1] * r])

    def ang(u: np.ndarray, v: np.ndarray) -> float:
        return math.degrees(math.atan2(abs(u[0] * v[1] - u[1] * v[0]), float(u @ v)))

    k = mm("knee_center")
    ldfa = ang(mm("femoral_head") - k, mm("femoral_condyle_lateral") - mm("femoral_condyle_medial"))
    a = (mm("ankle_lateral") + mm("ankle_medial")) / 2
    mpta = ang(a - k, mm("tibial_plateau_medial") - mm("tibial_plateau_lateral"))
    return ldfa, mpta


@pytest.mark.parametrize("opts", [
    {},
    {"spacing_mm": (0.15, 0.139)},  # anisotropic
    {"spacing_mm": (0.1, 0.13), "scale": 0.05, "imager_spacing_fraction": 1.0},
    {"flipped_fraction": 0.5, "anisotropic_fraction": 1.0},
])
def test_truth_equals_construction_90_cases(opts: dict) -> None:
    for i in range(90):
        case = make_case(11, i, **opts)
        for side in SIDES:
            leg = case.params["legs"][side]
            ldfa, mpta = _angles(case.landmarks[side], case.spacing_mm)
            assert abs(ldfa - leg["ldfa"]) < 0.05 and abs(mpta - leg["mpta"]) < 0.05
            assert abs(ldfa - case.angles[side]["ldfa"]) < 1e-6
            assert abs(mpta - case.angles[side]["mpta"]) < 1e-6
            t = case.angles[side]
            assert t["cpak"] == cpak_type(mpta - ldfa, mpta + ldfa) == leg["target_cpak"]
            assert 80 <= ldfa <= 97 and 80 <= mpta <= 97


def test_all_cpak_types_and_borderline() -> None:
    types = {s: set() for s in SIDES}
    border = 0
    bounds_a = sorted({b for r in AHKA_RANGES for b in r})[1:-1]
    bounds_j = sorted({b for r in JLO_RANGES for b in r})[1:-1]
    for i in range(200, 290):  # any 90 consecutive cases
        case = make_case(3, i)
        for s in SIDES:
            a = case.angles[s]
            types[s].add(a["cpak"])
            d = min([abs(a["ahka"] - b) for b in bounds_a] + [abs(a["jlo"] - b) for b in bounds_j])
            if d < 0.5:
                border += 1
    assert all(len(v) == 9 for v in types.values()), types
    assert 12 <= border <= 45  # ~15 % of 180 legs


def test_landmarks_in_image_and_boxes() -> None:
    for i in range(30):
        case = make_case(5, i, **TINY)
        rows, cols = case.shape
        assert max(rows, cols) <= 400
        for s in SIDES:
            assert set(case.landmarks[s]) == set(LANDMARKS)
            for joint, names in JOINTS.items():
                x0, y0, x1, y1 = case.boxes[s][joint]
                side_mm = ((x1 - x0) * case.spacing_mm[1], (y1 - y0) * case.spacing_mm[0])
                assert abs(side_mm[0] - side_mm[1]) < 1e-6  # square in mm
                assert 75 <= side_mm[0] <= 175
                for n in names:
                    x, y = case.landmarks[s][n]
                    assert 0 <= x <= cols - 1 and 0 <= y <= rows - 1
                    assert x0 < x < x1 and y0 < y < y1
        # standard orientation: patient's right on image left, lateral of right leg = smaller x
        r, lt = case.landmarks["right"], case.landmarks["left"]
        assert r["knee_center"][0] < lt["knee_center"][0]
        assert r["femoral_condyle_lateral"][0] < r["femoral_condyle_medial"][0]
        assert lt["femoral_condyle_lateral"][0] > lt["femoral_condyle_medial"][0]
        assert r["ankle_lateral"][0] < r["ankle_medial"][0]
        assert r["femoral_head"][1] < r["knee_center"][1] < r["ankle_lateral"][1]


def test_flipped_single_leg_and_cropped_ankle() -> None:
    c = make_case(2, 4, flipped_fraction=1.0, **TINY)
    assert not c.patient_right_on_image_left
    assert c.landmarks["right"]["knee_center"][0] > c.landmarks["left"]["knee_center"][0]
    assert c.landmarks["right"]["femoral_condyle_lateral"][0] > c.landmarks["right"]["femoral_condyle_medial"][0]
    c = make_case(2, 5, single_leg_fraction=1.0, **TINY)
    assert c.laterality in ("R", "L") and len(c.landmarks) == 1
    side = "right" if c.laterality == "R" else "left"
    assert set(c.landmarks[side]) == set(LANDMARKS)
    c = make_case(2, 6, missing_ankle_fraction=1.0, **TINY)
    for s in SIDES:
        assert "ankle_lateral" not in c.landmarks[s] and "ankle" not in c.boxes[s]
        assert "knee" in c.boxes[s] and s in c.angles  # truth still known


def test_same_seed_same_pixels() -> None:
    a = render(make_case(9, 1, **TINY))
    b = render(make_case(9, 1, **TINY))
    assert a.dtype == np.uint16 and a.shape == make_case(9, 1, **TINY).shape
    assert np.array_equal(a, b)
    c = render(make_case(9, 2, **TINY))
    assert not np.array_equal(a[:50, :50], c[:50, :50]) or a.shape != c.shape


def test_image_looks_like_a_radiograph() -> None:
    case = make_case(4, 0, max_size=800, noise=False, distractors=False)
    img = render(case).astype(float)
    maxv = (1 << case.bits_stored) - 1
    r = case.landmarks["right"]
    x, y = (int(round(v)) for v in r["femoral_head"])
    assert img.max() <= maxv
    # bone bright, air dark (MONOCHROME2 sense)
    air = img[case.shape[0] // 2, 1]
    assert img[y, x] > air + 0.1 * maxv
    assert air < 0.3 * maxv


def test_roi_matches_full_render() -> None:
    case = make_case(6, 3, max_size=1400)
    full = render(case).astype(np.float64)
    kx, ky = (int(v) for v in case.landmarks["left"]["knee_center"])
    roi = (kx - 100, ky - 120, kx + 140, ky + 90)
    part = render(case, roi).astype(np.float64)
    ref = full[roi[1]:roi[3], roi[0]:roi[2]]
    assert part.shape == ref.shape
    maxv = (1 << case.bits_stored) - 1
    assert abs(part.mean() - ref.mean()) < 0.01 * maxv
    assert np.abs(part - ref).mean() < 0.03 * maxv
    assert np.corrcoef(part.ravel(), ref.ravel())[0, 1] > 0.9
    # noise-free: near-identical
    case = make_case(6, 3, max_size=1400, noise=False)
    full = render(case).astype(np.float64)[roi[1]:roi[3], roi[0]:roi[2]]
    part = render(case, roi).astype(np.float64)
    assert np.abs(part - full).mean() < 0.005 * maxv
    # window partly outside the film reads 0 there
    edge = render(case, (-20, -10, 30, 40))
    assert edge.shape == (50, 50) and edge[:10].max() == 0


@pytest.mark.parametrize("compression", ["none", "rle", "jpeg2000"])
def test_write_case_dicom(tmp_path: Path, compression: str) -> None:
    import pydicom

    case = make_case(8, 7, compression=compression, imager_spacing_fraction=0.0,
                     monochrome1_fraction=0.0, spacing_mm=(0.15, 0.16), **TINY)
    paths = write_case(case, tmp_path, preview=True)
    assert set(paths) == {"dicom", "landmarks", "boxes", "preview"}
    ds = pydicom.dcmread(paths["dicom"])
    assert ds.Modality == "DX" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert str(ds.PatientName) == "PHANTOM^CASE0007" and ds.PatientID == "PHANTOM-0007"
    assert list(ds.PatientOrientation) == ["L", "F"] and ds.ImageLaterality == "B"
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx(list(case.spacing_mm), abs=1e-12)
    assert (ds.Rows, ds.Columns) == case.shape and ds.BitsAllocated == 16
    assert np.array_equal(ds.pixel_array, render(case))
    lm = json.loads(paths["landmarks"].read_text())
    assert lm["image"] == paths["dicom"].name
    assert lm["pixel_spacing_mm"] == list(case.spacing_mm)
    assert lm["legs"]["right"]["knee_center"] == list(case.landmarks["right"]["knee_center"])
    assert lm["truth"]["left"]["cpak"] == case.angles["left"]["cpak"]
    assert lm["phantom"]["seed"] == 8 and lm["phantom"]["index"] == 7
    bx = json.loads(paths["boxes"].read_text())
    assert bx["boxes"]["left"]["knee"] == case.boxes["left"]["knee"]


def test_dicom_imager_spacing_monochrome1_flipped(tmp_path: Path) -> None:
    import pydicom

    case = make_case(8, 8, imager_spacing_fraction=1.0, monochrome1_fraction=1.0,
                     flipped_fraction=1.0, anisotropic_fraction=1.0, **TINY)
    p = write_case(case, tmp_path)["dicom"]
    ds = pydicom.dcmread(p)
    assert "PixelSpacing" not in ds
    eff = [float(v) / float(ds.EstimatedRadiographicMagnificationFactor) for v in ds.ImagerPixelSpacing]
    assert eff == pytest.approx(list(case.spacing_mm), rel=1e-12)
    assert list(ds.PatientOrientation) == ["R", "F"] and ds.PhotometricInterpretation == "MONOCHROME1"
    maxv = (1 << case.bits_stored) - 1
    assert np.array_equal(ds.pixel_array, maxv - render(case))
    from cpak_cli.input.loader import load_image  # pydicom is a hard dependency: no silent return

    im = load_image(p)
    assert im.spacing_mm == pytest.approx(case.spacing_mm, rel=1e-9)
    assert im.patient_right_on_image_left is False


def test_same_seed_same_dicom_pixel_bytes(tmp_path: Path) -> None:
    import pydicom

    a = write_case(make_case(1, 2, compression="rle", **TINY), tmp_path / "a")["dicom"]
    b = write_case(make_case(1, 2, compression="rle", **TINY), tmp_path / "b")["dicom"]
    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    assert da.PixelData == db.PixelData and da.SOPInstanceUID == db.SOPInstanceUID


def test_implants_and_distractors_render() -> None:
    case = make_case(12, 0, tka_fraction=1.0, plate_fraction=1.0, max_size=600)
    names = {b.name for b in case.scene.bodies}
    assert {"tka_femoral", "tka_tibial"} <= names
    img = render(case)
    x, y = (int(round(v)) for v in case.landmarks["right"]["femoral_condyle_medial"])
    assert img[y - 3, x] > 0.6 * ((1 << case.bits_stored) - 1)  # metal is bright


def test_unknown_option_rejected() -> None:
    with pytest.raises(TypeError):
        make_case(0, 0, nonsense=1)


def test_cli_writes_files(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from cpak_cli.cli.phantom import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "phantom" a sub-command
        pass

    res = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path), "--count", "2", "--seed", "3",
                                   "--start", "5", "--small", "--compression", "rle"])
    assert res.exit_code == 0, res.output
    for i in (5, 6):
        for suffix in (".dcm", ".landmarks.json", ".boxes.json"):
            assert (tmp_path / f"case{i:04d}{suffix}").is_file()
    res = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path), "--compression", "zip"])
    assert res.exit_code == 2


# ---------------------------------------------------------------------------------- variety
def test_variety_off_is_unchanged() -> None:
    for seed, i, kw in ((3, 0, dict(max_size=500)), (7, 5, dict(max_size=400, tka_fraction=1.0, plate_fraction=1.0))):
        a, b = make_case(seed, i, **kw), make_case(seed, i, variety=False, **kw)
        assert a.landmarks == b.landmarks and a.params == b.params and a.options == b.options
        assert "variety" not in a.options and "variety" not in a.params
        assert np.array_equal(render(a), render(b))
    # variety on shares the base draws (CPAK targets) but is a different film
    a = make_case(3, 0, max_size=500)
    c = make_case(3, 0, variety=True, max_size=500)
    assert c.options["variety"] is True and "variety" in c.params
    for s in SIDES:
        assert c.params["legs"][s]["target_cpak"] == a.params["legs"][s]["target_cpak"]
        assert c.angles[s]["cpak"] == a.angles[s]["cpak"]


def test_variety_truth_exact_and_fractions() -> None:
    ped = oa = flex = shield = 0
    for i in range(90):
        case = make_case(21, i, variety=True)
        ped += case.params["variety"]["pediatric"]
        shield += "shield" in case.params["variety"]
        rows, cols = case.shape
        for side in SIDES:
            leg = case.params["legs"][side]
            oa += "oa" in leg
            flex += "flexion_deg" in leg
            ldfa, mpta = _angles(case.landmarks[side], case.spacing_mm)
            assert abs(ldfa - leg["ldfa"]) < 0.05 and abs(mpta - leg["mpta"]) < 0.05
            assert abs(ldfa - case.angles[side]["ldfa"]) < 1e-6
            assert abs(mpta - case.angles[side]["mpta"]) < 1e-6
            assert case.angles[side]["cpak"] == leg["target_cpak"]
            assert set(case.landmarks[side]) == set(LANDMARKS)
            for x, y in case.landmarks[side].values():
                assert 0 <= x <= cols - 1 and 0 <= y <= rows - 1
            if "oa" in leg:  # narrowed compartment
                assert 0.0 <= leg["oa"]["gap_mm"] <= 1.8
    assert 20 <= ped <= 55 and 10 <= oa <= 50 and 25 <= flex <= 70 and 20 <= shield <= 55


def test_variety_oa_gap_geometry() -> None:
    from cpak_cli.phantom.anatomy import knee_gaps
    from cpak_cli.phantom.generate import _leg_params
    from cpak_cli.phantom.spec import PhantomOptions
    from cpak_cli.phantom.variety import _solve_oa

    lp, _ = _leg_params(1, 1, "right", 1.0, PhantomOptions())
    for side, gn, go in (("medial", 0.0, 5.0), ("lateral", 1.2, 4.0)):
        js, jlca = _solve_oa(lp, side, gn, go)
        lat, med = knee_gaps(lp)
        assert (med, lat) == pytest.approx((gn, go) if side == "medial" else (go, gn), abs=0.02)


def _physis_contrast(case, side: str) -> float:
    """Darkening of the distal femoral physis band vs 2.5 mm beyond its edges (fraction of range)."""
    img = render(case).astype(np.float64)
    lm = case.landmarks[side]
    sp = np.array([case.spacing_mm[1], case.spacing_mm[0]])
    lat, med = np.array(lm["femoral_condyle_lateral"]) * sp, np.array(lm["femoral_condyle_medial"]) * sp
    head = np.array(lm["femoral_head"]) * sp
    u = (lat - med) / np.hypot(*(lat - med))
    n = np.array([-u[1], u[0]])
    if n @ (head - (lat + med) / 2) > 0:
        n = -n  # distal
    ph = case.params["legs"][side]["physes"]
    c = (lat + med) / 2 + 15.0 * case.params["size"] * u  # through the lateral condyle, off the notch

    def val(t: float) -> float:
        return float(np.mean([img[int(round(q[1])), int(round(q[0]))]
                              for o in np.linspace(-4, 4, 9) for q in [(c - t * n + o * u) / sp]]))

    off = ph["w"] / 2 + 2.5
    # the physis undulates: its centre part is raised by up to ``wave`` mm
    ts = np.arange(ph["df"] - 1.0, ph["df"] + ph["wave"] * case.params["size"] + 1.0, 0.25)
    best = max(0.5 * (val(t - off) + val(t + off)) - val(t) for t in ts)
    return best / ((1 << case.bits_stored) - 1)


def test_variety_pediatric_physes_visible() -> None:
    seen = 0
    for i in range(16):
        case = make_case(5, i, variety=True, noise=False, distractors=False, spacing_mm=(0.4, 0.4))
        if not case.params["variety"]["pediatric"]:
            assert case.params["legs"]["right"]["physes"] is None
            continue
        seen += 1
        for side in SIDES:
            assert _physis_contrast(case, side) > 0.03
        assert case.params["size"] < 0.9 + 1e-9
    assert seen >= 3


def test_variety_deterministic_roi_and_dicom(tmp_path: Path) -> None:
    import pydicom

    from cpak_cli.input.loader import load_image

    for i in range(4):
        a = make_case(9, i, variety=True, max_size=600)
        b = make_case(9, i, variety=True, max_size=600)
        assert a.landmarks == b.landmarks and a.params == b.params
        ia = render(a)
        assert np.array_equal(ia, render(b))
        assert ia.max() <= (1 << a.bits_stored) - 1
        paths = write_case(a, tmp_path / str(i), preview=True)
        ds = pydicom.dcmread(paths["dicom"])
        assert ds.BitsStored == a.bits_stored
        im = load_image(paths["dicom"])
        assert im.spacing_mm == pytest.approx(a.spacing_mm, rel=1e-9)
        assert tuple(np.asarray(im.pixels).shape[:2]) == a.shape
    # a window renders like the same part of the full film (crops for training)
    case = make_case(9, 1, variety=True, max_size=1400, noise=False)
    full = render(case).astype(np.float64)
    kx, ky = (int(v) for v in case.landmarks["left"]["knee_center"])
    roi = (kx - 100, ky - 120, kx + 140, ky + 90)
    part = render(case, roi).astype(np.float64)
    maxv = (1 << case.bits_stored) - 1
    assert np.abs(part - full[roi[1]:roi[3], roi[0]:roi[2]]).mean() < 0.01 * maxv


def test_variety_cli_flag(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from cpak_cli.cli.phantom import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:
        pass

    res = CliRunner().invoke(app, ["phantom", "--out", str(tmp_path), "--count", "1", "--seed", "3", "--small", "--variety"])
    assert res.exit_code == 0, res.output
    lm = json.loads((tmp_path / "case0000.landmarks.json").read_text())
    assert lm["phantom"]["options"]["variety"] is True
