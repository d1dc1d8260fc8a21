"""The one place for test data: hand-built legs with known angles, tiny DICOM films, point-label
folders and tiny network configurations. Tests import from here; fixtures in conftest.py wrap it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
ROWS, COLS = 64, 48


def tiny_model(joint: str = "knee", **kw: Any):
    """A tiny landmark U-Net configuration (depth 3, 64 px): trains and runs in a second."""
    from cpak_cli.networks.models import ModelConfig

    kw.setdefault("encoder_depth", 3)
    kw.setdefault("decoder_channels", (16, 8, 4))
    kw.setdefault("input_size", 64)
    return ModelConfig(joint=joint, **kw)


def write_tiny_weights(folder: Path, seed: int = 0) -> Path:
    """A weights folder of tiny randomly initialised models (the three joints at 64 px and a
    128 x 48 detector) with their cards: the whole pipeline runs on it in well under a second
    per film (mechanics and consistency, not accuracy). Same ``seed``, same weights."""
    import torch

    from cpak_cli.core.landmarks import JOINTS
    from cpak_cli.networks.model_cards import save_weights
    from cpak_cli.networks.models import build_model
    from cpak_cli.training.detector import detector_config

    torch.manual_seed(seed)
    for joint in JOINTS:
        cfg = tiny_model(joint)
        save_weights(build_model(cfg), cfg, folder / joint, training={"note": "tiny random test model"})
    cfg = detector_config(height=128, width=48, encoder_depth=3, decoder_channels=(16, 8, 4))
    save_weights(build_model(cfg), cfg, folder / "detector", training={"note": "tiny random test model"})
    return folder


def build_leg(
    ldfa: float,
    mpta: float,
    side: str = "right",
    spacing_mm: tuple[float, float] = (0.15, 0.15),
    rotation_deg: float = 0.0,
    origin_mm: tuple[float, float] = (150.0, 100.0),
    patient_right_on_image_left: bool = True,
    mhka: float | None = None,
    femur_mm: float = 450.0,
    tibia_mm: float = 380.0,
) -> dict[str, tuple[float, float]]:
    """Eight pixel landmarks of a leg whose LDFA/MPTA are exactly ``ldfa``/``mpta`` (degrees).

    Built in mm (x right, y down), then rotated in-plane by ``rotation_deg`` about the hip and
    converted to pixels with ``spacing_mm = (row, col)``. Independent of cpak_cli.core.geometry.
    The femoral mechanical axis is vertical, ``femur_mm`` long (hip centre -> knee centre); the
    ankle centre lies ``tibia_mm`` from the knee centre. With ``mhka`` (degrees, valgus positive)
    the tibial axis is turned by exactly that angle from the femoral axis' extension, towards
    lateral for valgus (knee medial of the hip-ankle line); without it the ankle centre is
    ``tibia_mm`` below and 12 mm lateral of the knee centre, i.e. mHKA = +atan(12/tibia_mm) (valgus).
    """
    lateral = -1.0 if (side == "right") == patient_right_on_image_left else 1.0
    hip = np.array([0.0, 0.0])
    knee = np.array([0.0, femur_mm])  # straight femoral axis, knee below hip
    # Femoral axis points up (knee -> hip). Joint line direction (medial -> lateral) makes LDFA with it.
    up = (hip - knee) / np.linalg.norm(hip - knee)
    # rotate 'up' towards lateral by ldfa degrees -> direction medial->lateral of condyles
    def rot(v: np.ndarray, deg: float) -> np.ndarray:
        a = math.radians(deg)
        return np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])

    # choose the sign of rotation so the result points laterally
    cand = rot(up, ldfa)
    if np.sign(cand[0]) != lateral:
        cand = rot(up, -ldfa)
    med_to_lat_f = cand
    cond_lat = knee + med_to_lat_f * 38.0 + np.array([0.0, 6.0])
    cond_med = knee - med_to_lat_f * 38.0 + np.array([0.0, 6.0])
    # Tibia: ankle 380 mm below the knee with a slight lateral offset.
    if mhka is None:
        ankle_center = knee + np.array([12.0 * lateral, tibia_mm])
    else:
        t = math.radians(mhka)
        ankle_center = knee + tibia_mm * np.array([lateral * math.sin(t), math.cos(t)])
    down = (ankle_center - knee) / np.linalg.norm(ankle_center - knee)
    cand = rot(down, mpta)
    if np.sign(cand[0]) != -lateral:
        cand = rot(down, -mpta)
    lat_to_med_t = cand  # direction lateral -> medial of plateau
    plat_med = knee + lat_to_med_t * 36.0 + np.array([0.0, 10.0])
    plat_lat = knee - lat_to_med_t * 36.0 + np.array([0.0, 10.0])
    ankle_dir = np.array([lateral, 0.3])
    ankle_lat = ankle_center + ankle_dir * 14.0
    ankle_med = ankle_center - ankle_dir * 14.0
    pts = {
        "femoral_head": hip,
        "femoral_condyle_lateral": cond_lat,
        "femoral_condyle_medial": cond_med,
        "tibial_plateau_lateral": plat_lat,
        "tibial_plateau_medial": plat_med,
        "knee_center": knee,
        "ankle_lateral": ankle_lat,
        "ankle_medial": ankle_med,
    }
    out = {}
    for name, p in pts.items():
        q = rot(p, rotation_deg) + np.asarray(origin_mm)
        out[name] = (float(q[0] / spacing_mm[1]), float(q[1] / spacing_mm[0]))
    return out


def _turn(v: np.ndarray, deg: float) -> np.ndarray:
    """2-D vector turned by ``deg`` degrees, from +x towards +y (clockwise on an image, y down)."""
    a = math.radians(deg)
    return np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])


def build_panel_leg(
    jlca: float,
    mhka: float = 0.0,
    side: str = "right",
    ldfa: float = 87.5,
    femur_mm: float = 450.0,
    tibia_mm: float = 380.0,
    spacing_mm: tuple[float, float] = (0.15, 0.15),
    rotation_deg: float = 0.0,
    origin_mm: tuple[float, float] = (150.0, 100.0),
    patient_right_on_image_left: bool = True,
) -> dict[str, tuple[float, float]]:
    """Eight pixel landmarks of a leg with exactly known JLCA, mHKA, LDFA and mechanical lengths.

    Built in mm (x right, y down), independent of cpak_cli: hip centre at the origin, knee centre
    ``femur_mm`` straight below it; the ankle centre ``tibia_mm`` from the knee centre, the tibial
    axis turned by ``mhka`` degrees from the femoral axis' extension towards lateral (valgus
    positive). The femoral condylar line (medial -> lateral) makes ``ldfa`` degrees with the femoral
    axis on the lateral side; the plateau line (10 mm lower) is the condylar line turned by
    ``jlca`` degrees so that its lateral end drops (the lines converge medially) when ``jlca`` > 0.
    Hence MPTA = ldfa + mhka + jlca. The leg is then rotated in-plane by ``rotation_deg`` about
    the hip, moved by ``origin_mm`` and converted to pixels with ``spacing_mm = (row, col)``.
    """
    lateral = -1.0 if (side == "right") == patient_right_on_image_left else 1.0
    hip = np.array([0.0, 0.0])
    knee = np.array([0.0, femur_mm])
    t = math.radians(mhka)
    ankle = knee + tibia_mm * np.array([lateral * math.sin(t), math.cos(t)])
    # medial -> lateral along the image x axis, then dropped at its lateral end: turning by
    # +lateral*d drops the lateral end by d (y grows downwards) on either side.
    med_to_lat = np.array([lateral, 0.0])
    condylar = _turn(med_to_lat, lateral * (ldfa - 90.0))  # LDFA > 90: lateral end lower
    plateau = _turn(condylar, lateral * jlca)
    ankle_dir = np.array([lateral, 0.0])
    pts = {
        "femoral_head": hip,
        "femoral_condyle_lateral": knee + np.array([0.0, 4.0]) + 38.0 * condylar,
        "femoral_condyle_medial": knee + np.array([0.0, 4.0]) - 38.0 * condylar,
        "tibial_plateau_lateral": knee + np.array([0.0, 14.0]) + 36.0 * plateau,
        "tibial_plateau_medial": knee + np.array([0.0, 14.0]) - 36.0 * plateau,
        "knee_center": knee,
        "ankle_lateral": ankle + 14.0 * ankle_dir,
        "ankle_medial": ankle - 14.0 * ankle_dir,
    }
    out = {}
    for name, p in pts.items():
        q = _turn(p, rotation_deg) + np.asarray(origin_mm)
        out[name] = (float(q[0] / spacing_mm[1]), float(q[1] / spacing_mm[0]))
    return out


class FakeMeasurer:
    """A stand-in for :class:`cpak_cli.pipeline.film.Measurer` (no network): measures every image
    as two known legs ``{side: (LDFA, MPTA, mHKA)}`` (``legs(path)`` when given, else
    :attr:`LEGS`); counts calls. Landmarks named in ``drop`` are not found (a partly measured leg)."""

    LEGS = {"right": (87.0, 84.0, -3.25), "left": (90.0, 91.0, 2.5)}  # right: aHKA -3, JLO 171 -> I
    LENGTHS = {"right": (450.0, 380.0), "left": (446.0, 377.5)}  # femur, tibia (mm): right 6.5 mm longer

    def __init__(self, drop=(), legs=None):
        self.calls = 0
        self.drop = set(drop)
        self.legs = legs

    def measure_images(self, images, boxes=None, release=True):  # a stand-in releases nothing
        from cpak_cli.core.measurement import measure_leg
        from cpak_cli.networks.inference import LandmarkPrediction
        from cpak_cli.pipeline.result import ScanResult

        self.calls += 1
        out = []
        for im in images:
            res = ScanResult(path=im.path, image=im, box_source="detector", models={"knee": "fake@0"})
            for side, (ldfa, mpta, mhka) in (self.LEGS if self.legs is None else self.legs(im.path)).items():
                femur, tibia = self.LENGTHS[side]
                leg = build_leg(ldfa, mpta, side=side, spacing_mm=im.spacing_mm, mhka=mhka, femur_mm=femur,
                                tibia_mm=tibia)
                leg = {n: (None if n in self.drop else p) for n, p in leg.items()}
                res.landmarks[side] = {
                    n: LandmarkPrediction(n, p[0], p[1], p[0] * im.spacing_mm[1], p[1] * im.spacing_mm[0], True,
                                          0.9, 0.95, 300)
                    for n, p in leg.items() if p is not None
                }
                res.legs[side] = measure_leg(side, leg, im.spacing_mm)
            out.append(res)
        return out

    def measure(self, image, boxes=None, release=True):
        return self.measure_images([image], [boxes])[0]


def point_label_folder(root, ids=("a1", "b2", "c3"), spacing_mm=0.9, size=(160, 320)):
    """A folder in the three-point label format (``labels.csv`` + ``images/<id>.png``): each film
    a dark background with two bright "legs" (vertical bars); returns ``(root, rows)`` where rows
    are the label dicts written (pixel coordinates, image left/right legs)."""
    import csv
    from pathlib import Path

    import cv2

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    rows = []
    for k, iid in enumerate(ids):
        img = np.full((h, w), 8, np.uint8)
        for x in (w * 0.3, w * 0.7):
            cv2.rectangle(img, (int(x) - 8, 20), (int(x) + 8, h - 20), 200, -1)
            cv2.circle(img, (int(x), 30), 14, 230, -1)
        cv2.imwrite(str(root / "images" / f"{iid}.png"), img)
        row = {"id": iid, "pixel_spacing_mm": spacing_mm, "width": w, "height": h}
        for side, x in (("imgleft", w * 0.3), ("imgright", w * 0.7)):
            row.update({f"{side}_hip_x": x, f"{side}_hip_y": 16.0 + k, f"{side}_knee_x": x, f"{side}_knee_y": h / 2,
                        f"{side}_ankle_x": x + 2, f"{side}_ankle_y": h - 30.0})
        rows.append(row)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    return root, rows


def gradient(rows: int = ROWS, cols: int = COLS, scale: int = 50) -> np.ndarray:
    """uint16 image whose value grows down the rows and along the columns (all distinct)."""
    r, c = np.mgrid[0:rows, 0:cols]
    return (r * scale + c).astype(np.uint16)


def make_dx(
    pixels: np.ndarray | None = None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    pixel_spacing: Any = (0.15, 0.15),
    imager_spacing: Any = None,
    magnification: Any = None,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    patient_orientation: list[str] | None = None,
    image_laterality: str | None = None,
    frames: int | None = None,
) -> Dataset:
    """A small DX-for-presentation data set (explicit VR little endian) with file meta."""
    if pixels is None:
        pixels = gradient()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = "20240131"
    ds.Modality = "DX"
    ds.Manufacturer = "TestVendor"
    ds.PatientID = "SECRET-ID"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    itemsize = pixels.dtype.itemsize
    ds.BitsAllocated = 8 * itemsize
    ds.BitsStored = bits_stored or 8 * itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames is not None:
        ds.NumberOfFrames = frames
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_spacing)
    if magnification is not None:
        ds.EstimatedRadiographicMagnificationFactor = magnification
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if patient_orientation is not None:
        ds.PatientOrientation = patient_orientation
    if image_laterality is not None:
        ds.ImageLaterality = image_laterality
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def ramp_film(rows: int = 320, cols: int = 120, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A ``bits``-bit film (uint16) large enough for a multi-level JPEG 2000 codestream: a
    diagonal ramp (smooth: the wavelet's low-pass band samples it faithfully) plus a few bright
    'bones' and noise, so that no 48-pixel window is constant."""
    g = np.random.default_rng(seed)
    top = (1 << bits) - 1
    y, x = np.mgrid[0:rows, 0:cols]
    img = 0.15 * top + 0.5 * top * (y / rows) + 0.2 * top * (x / cols)
    for cy, cx in ((rows * 0.2, cols * 0.3), (rows * 0.5, cols * 0.7), (rows * 0.8, cols * 0.4)):
        img += 0.1 * top * (np.hypot(y - cy, x - cx) < min(rows, cols) * 0.12)
    img += g.normal(0, top * 0.004, img.shape)
    return np.clip(np.round(img), 0, top).astype(np.uint16)


def write_plain_film(path: Path, rows: int = 640, cols: int = 240, seed: int = 0) -> Path:
    """An uncompressed 12-bit :func:`ramp_film` (textured: no two crops alike) 0.6 m high
    (a plausible spacing of ``600 / rows`` mm), written to ``path``: a film the loader decodes
    in full."""
    mm = 600.0 / rows
    return write(make_dx(pixels=ramp_film(rows, cols, seed=seed), bits_stored=12, pixel_spacing=(mm, mm)), path)


def make_j2k_dx(pixels: np.ndarray | None = None, **kw: Any) -> Dataset:
    """:func:`make_dx` compressed as JPEG 2000 lossless (pylibjpeg-openjpeg's encoder, the
    default 6 resolutions); a window of (2048, 4096) unless ``window`` is given (None: none)."""
    from pydicom.uid import JPEG2000Lossless

    pixels = ramp_film() if pixels is None else pixels
    kw.setdefault("window", (2048.0, 4096.0))
    kw.setdefault("bits_stored", 12)
    ds = make_dx(pixels=pixels, **kw)
    ds.compress(JPEG2000Lossless, pixels, generate_instance_uid=False)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dx(tmp_path: Path, name: str = "img.dcm", **kw: Any) -> Path:
    return write(make_dx(**kw), tmp_path / name)


def encode_jpeg_lossless(img: np.ndarray, precision: int) -> bytes:
    """Minimal JPEG lossless (process 14, predictor 1) encoder, for the decode round trip."""
    rows, cols = img.shape
    x = img.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]  # first row: left neighbour
    pred[1:, 0] = x[:-1, 0]  # first column: the pixel above
    pred[1:, 1:] = x[1:, :-1]  # predictor 1 (Ra)
    diff = (x - pred) % 65536
    diff = np.where(diff >= 32768, diff - 65536, diff)

    bits: list[str] = []
    for d in diff.ravel().tolist():
        ssss = 0 if d == 0 else (16 if d == -32768 else abs(d).bit_length())
        bits.append(format(ssss, "05b"))  # 17 symbols, all 5-bit canonical codes 0..16
        if 0 < ssss < 16:
            extra = d if d > 0 else d + (1 << ssss) - 1
            bits.append(format(extra, f"0{ssss}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    sof3 = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    counts = [0] * 16
    counts[4] = 17
    dht = bytes([0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])
    return b"\xff\xd8" + seg(0xC3, sof3) + seg(0xC4, dht) + seg(0xDA, sos) + bytes(data) + b"\xff\xd9"


# ----------------------------------------------------------------- DICOM outputs (SC overlay, SR)

#: A film big enough to hold a :func:`build_leg` leg at 2 mm pixels (1000 x 500 mm), kept under
#: the loader's plausibility check size (512 rows).
LEG_FILM_SHAPE = (500, 250)
LEG_FILM_SPACING = (2.0, 2.0)
FAKE_MODELS = {"hip": "hip@0123456789ab", "knee": "knee@fedcba987654", "ankle": "ankle@00aa11bb22cc",
               "detector": "detector@a1b2c3d4e5f6"}


def write_leg_film(tmp_path: Path, name: str = "film.dcm", **kw: Any) -> Path:
    """A DX film of :data:`LEG_FILM_SHAPE` at :data:`LEG_FILM_SPACING` mm with patient data
    (PatientName ``DOE^JANE``, PatientID ``SECRET-ID``, accession and study ID) and ``L\\F``
    orientation unless ``kw`` says otherwise (``make_dx`` keywords)."""
    kw.setdefault("pixels", gradient(*LEG_FILM_SHAPE, scale=2))
    kw.setdefault("pixel_spacing", LEG_FILM_SPACING)
    kw.setdefault("patient_orientation", ["L", "F"])
    ds = make_dx(**kw)
    ds.PatientName = "DOE^JANE"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-SECRET"
    ds.StudyID = "STUDY-SECRET"
    ds.StudyTime = "101500"
    ds.InstitutionName = "SECRET HOSPITAL"
    return write(ds, tmp_path / name)


def measured_result(image: Any, legs: dict[str, dict[str, Any]], confidence: float = 0.9) -> Any:
    """A :class:`~cpak_cli.pipeline.result.ScanResult` of ``image`` with the given pixel landmarks
    per side (a landmark that is None or absent is not found) measured by the real
    :func:`~cpak_cli.pipeline.result.assemble_leg` (no networks), models :data:`FAKE_MODELS`."""
    from cpak_cli.core.landmarks import LANDMARKS
    from cpak_cli.networks.inference import LandmarkPrediction
    from cpak_cli.pipeline.result import ScanResult, assemble_leg

    row_mm, col_mm = image.spacing_mm
    res = ScanResult(path=image.path, image=image, models=dict(FAKE_MODELS))
    for side, points in legs.items():
        preds = {}
        for n in LANDMARKS:
            p = points.get(n)
            preds[n] = (LandmarkPrediction(n, p[0], p[1], p[0] * col_mm, p[1] * row_mm, True, confidence, 0.95, 50)
                        if p is not None else
                        LandmarkPrediction(n, math.nan, math.nan, math.nan, math.nan, False, 0.01, 0.01, 0))
        res.landmarks[side] = preds
        res.legs[side] = assemble_leg(side, preds, image, [], 0.5)
    return res


def dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``: the lines dicom3tools' ``dciodvfy`` prints for ``path``."""
    import subprocess

    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]


class LegsMeasurer:
    """A stand-in :class:`~cpak_cli.pipeline.film.Measurer` (no networks): every film gets two
    legs built by :func:`build_leg` (right LDFA 87 / MPTA 84, left 90 / 91) at the film's spacing,
    placed side by side on a :func:`write_leg_film` film, measured by :func:`measured_result`."""

    LEGS = {"right": (87.0, 84.0, 125.0), "left": (90.0, 91.0, 375.0)}  # ldfa, mpta, origin x (mm)

    def legs(self, image: Any) -> dict[str, dict[str, Any]]:
        return {side: build_leg(ldfa, mpta, side=side, spacing_mm=image.spacing_mm, origin_mm=(x_mm, 60.0))
                for side, (ldfa, mpta, x_mm) in self.LEGS.items()}

    def measure(self, image: Any, boxes: Any = None, release: bool = True) -> Any:
        return measured_result(image, self.legs(image))

    def measure_images(self, images: Any, boxes: Any = None, release: bool = True) -> list[Any]:
        return [self.measure(im) for im in images]


def phantom_folder(root: Path, seed: int, count: int, scale: float = 0.12) -> Path:
    """``count`` small phantom cases (DICOM + truth landmarks + boxes, 1/``scale`` coarser than a
    real film) written into ``root``; cases ``0..count-1`` of ``seed``. Returns ``root``."""
    from cpak_cli.phantom import make_case, write_case

    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_case(make_case(seed, i, scale=scale), root)
    return root


def text_film(
    rows: int = 900,
    cols: int = 420,
    texts: tuple[tuple[str, tuple[int, int], float], ...] = (("DOE^JANE 1961-04-02", (12, 30), 14.0),),
    dark_texts: tuple[tuple[str, tuple[int, int], float], ...] = (),
    marker: tuple[str, tuple[int, int], float] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, list[tuple[str, tuple[float, float, float, float]]], tuple[float, float, float, float]]:
    """A synthetic long-leg film with text burned in at known places, for text redaction tests.

    Two legs (bright shafts with brighter cortices, condyle and plateau blobs, trabecular
    texture) stand on soft tissue over dark air, with quantum-like noise. ``texts`` are
    ``(text, (x, y) baseline-left origin in pixels, cap height in pixels)`` drawn at full
    brightness; ``dark_texts`` are drawn black (put them on a bright area: the soft tissue
    between x 0.1 and 0.9 of the width, mid-height, is bright); ``marker`` is one bold letter (a lead side
    marker). Returns ``(pixels float32 (rows, cols) in [0, 1] bone bright, [(text, box)],
    legs_box)``: each box ``(x0, y0, x1, y1)`` covers every pixel its text touches, and
    ``legs_box`` covers both legs' bones (the region a redaction must never blank).
    """
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((rows, cols), 0.04, np.float32)
    cv2.ellipse(img, (cols // 2, rows // 2), (int(cols * 0.47), int(rows * 0.6)), 0, 0, 360, 0.35, -1)
    img = cv2.GaussianBlur(img, (0, 0), 6)
    bones = []
    for cx in (int(cols * 0.38), int(cols * 0.62)):
        w = max(6, cols // 20)
        shaft = np.zeros_like(img)
        cv2.rectangle(shaft, (cx - w, int(rows * 0.12)), (cx + w, int(rows * 0.92)), 0.35, -1)
        cv2.rectangle(shaft, (cx - w, int(rows * 0.12)), (cx + w, int(rows * 0.92)), 0.55, 3)
        cv2.ellipse(shaft, (cx, int(rows * 0.5)), (int(w * 2.2), int(w * 1.4)), 0, 0, 360, 0.5, -1)
        cv2.ellipse(shaft, (cx, int(rows * 0.12)), (int(w * 1.8), int(w * 1.8)), 0, 0, 360, 0.55, -1)
        texture = cv2.GaussianBlur(rng.standard_normal((rows, cols)).astype(np.float32), (0, 0), 1.5) * 0.08
        img += np.where(shaft > 0, shaft + texture, 0.0)
        bones.append((cx - int(w * 2.2) - 4, int(rows * 0.12) - int(w * 1.8) - 4,
                      cx + int(w * 2.2) + 4, int(rows * 0.92) + 4))
    img += rng.normal(0.0, 0.012, img.shape).astype(np.float32)
    boxes: list[tuple[str, tuple[float, float, float, float]]] = []
    items = [(t, o, h, 1.0, cv2.FONT_HERSHEY_SIMPLEX) for t, o, h in texts]
    items += [(t, o, h, 0.0, cv2.FONT_HERSHEY_SIMPLEX) for t, o, h in dark_texts]
    if marker is not None:
        items.append((marker[0], marker[1], marker[2], 1.0, cv2.FONT_HERSHEY_DUPLEX))
    for text, (x, y), h, value, font in items:
        fs, th = h / 22.0, max(1, int(round(h / 7.0)))
        mask = np.zeros((rows, cols), np.uint8)
        cv2.putText(mask, text, (x, y), font, fs, 255, th, cv2.LINE_AA)
        m = mask.astype(np.float32) / 255.0
        img = img * (1.0 - m) + value * m
        (w, hh), base = cv2.getTextSize(text, font, fs, th)
        boxes.append((text, (float(x - th - 1), float(y - hh - th - 1), float(x + w + th + 1), float(y + base + th + 1))))
    legs = (float(min(b[0] for b in bones)), float(min(b[1] for b in bones)),
            float(max(b[2] for b in bones)), float(max(b[3] for b in bones)))
    return np.clip(img, 0.0, 1.0), boxes, legs


class TruthMeasurer:
    """Stand-in measurer for batch tests: every image gets the same known legs.

    ``landmarks[side][name] = (x, y)`` and ``boxes[side][joint] = (x0, y0, x1, y1)`` in pixels of
    the loaded image (e.g. a phantom case's truth); angles are measured from the landmarks."""

    def __init__(self, landmarks: dict, boxes: dict) -> None:
        self.landmarks, self.boxes = landmarks, boxes

    def measure_images(self, images: list, boxes: Any = None, release: bool = True) -> list:
        from cpak_cli.core.measurement import measure_leg
        from cpak_cli.networks.inference import LandmarkPrediction
        from cpak_cli.pipeline.result import ScanResult

        out = []
        for im in images:
            res = ScanResult(path=im.path, image=im, box_source="file", models={"knee": "truth@0"})
            for side, pts in self.landmarks.items():
                res.landmarks[side] = {
                    n: LandmarkPrediction(n, p[0], p[1], p[0] * im.spacing_mm[1], p[1] * im.spacing_mm[0], True,
                                          1.0, 1.0, 100)
                    for n, p in pts.items()
                }
                res.boxes[side] = {j: tuple(b) for j, b in self.boxes.get(side, {}).items()}
                res.legs[side] = measure_leg(side, dict(pts), im.spacing_mm)
            out.append(res)
        return out


def pillow_j2k(pixels: np.ndarray, tile: int) -> bytes:
    """A tiled JPEG 2000 codestream (Pillow's encoder, 5/3 wavelet, ``tile`` x ``tile`` tiles).
    Lossless for uint8 ``pixels`` without a one-pixel-wide last tile; NOT lossless for uint16
    (Pillow's tiled 16-bit encoding breaks the tiles right of the first column)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG2000", no_jp2=True, tile_size=(tile, tile), irreversible=False)
    return buf.getvalue()


def tiled_j2k_dx(pixels: np.ndarray, tile: int = 128, drop_after_first_tile: bool = False, **kw: Any) -> Dataset:
    """:func:`make_dx` with ``pixels`` as a TILED JPEG 2000 lossless codestream (Pillow's
    encoder, ``tile`` x ``tile`` tiles); ``drop_after_first_tile`` keeps only the first tile-part
    (plus EOC): a damaged film whose other tiles are missing. (Not lossless: see
    :func:`pillow_j2k`.)"""
    import struct

    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    cs = pillow_j2k(pixels.astype(np.uint16), tile)
    if drop_after_first_tile:
        i = cs.index(b"\xff\x90")
        cs = cs[: i + struct.unpack(">I", cs[i + 6 : i + 10])[0]] + b"\xff\xd9"
    kw.setdefault("bits_stored", 12)
    ds = make_dx(pixels=pixels, **kw)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([cs])
    ds["PixelData"].VR = "OB"
    return ds


class FakeNvImage:
    """What a fake nvImageCodec decoder returns: ``cpu()`` gives a host array (rows, cols, 1)."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def cpu(self) -> np.ndarray:
        return self.arr


def fake_nvimgcodec(frame: Any = None) -> Any:
    """A stand-in for the ``nvidia.nvimgcodec`` module (no GPU): ``Decoder().decode(codestreams,
    params=...)`` returns per codestream ``frame(codestream)`` (an array, None, or it raises)
    wrapped as :class:`FakeNvImage` with a trailing channel axis; by default the OpenJPEG decode
    in the precision's dtype (what the real library gives). ``module.calls`` counts decode calls
    and ``module.sizes`` the batch sizes."""
    import types

    from cpak_cli.input import openjp2
    from cpak_cli.input.j2k_stream import codestream_info

    def exact(cs: bytes) -> np.ndarray:
        info = codestream_info(cs)
        assert info is not None
        return openjp2.decode(cs).astype(np.uint8 if info.precision <= 8 else np.uint16)

    mod = types.ModuleType("nvidia.nvimgcodec")
    mod.calls, mod.sizes = 0, []
    make = frame or exact

    class Decoder:
        def __init__(self, device_id: int = 0, backend_kinds: Any = None) -> None:
            self.device_id, self.backend_kinds = device_id, backend_kinds

        def decode(self, codestreams: list[bytes], params: Any = None) -> list[Any]:
            assert params is not None and params.allow_any_depth
            mod.calls += 1
            mod.sizes.append(len(codestreams))
            out = []
            for cs in codestreams:
                arr = make(cs)
                out.append(None if arr is None else FakeNvImage(np.asarray(arr)[..., None]))
            return out

    class DecodeParams:
        def __init__(self, allow_any_depth: bool = False, color_spec: Any = None) -> None:
            self.allow_any_depth, self.color_spec = allow_any_depth, color_spec

    mod.Decoder, mod.DecodeParams = Decoder, DecodeParams
    mod.ColorSpec = types.SimpleNamespace(UNCHANGED="unchanged")
    mod.BackendKind = types.SimpleNamespace(GPU_ONLY="gpu", HYBRID_CPU_GPU="hybrid")
    return mod


# ------------------------------------------------------------------ decode-worker test hooks
# Run in a decode worker before each request (Cage(hook=...)); module level, so that they pickle.
def crash_on_segv(op: str, path: str) -> None:
    """A file named ``*segv*`` crashes the worker when opened."""
    import os
    import signal

    if "segv" in Path(path).name and op == "open":
        os.kill(os.getpid(), signal.SIGSEGV)


def log_requests(op: str, path: str) -> None:
    """One line ``PID OP NAME`` per request, appended to ``$CPAK_TEST_REQUEST_LOG``; an open
    takes 0.3 s more (films opened at once use every worker); a request about a held film
    (``op`` ``"held"``) named ``*slow*`` takes 0.5 s more, one named ``*hang*`` 60 s."""
    import os
    import time

    name = Path(path).name
    with open(os.environ["CPAK_TEST_REQUEST_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {op} {name}\n")
    if op == "open":
        time.sleep(0.3)
    if op == "held":
        time.sleep(60 if "hang" in name else 0.5 if "slow" in name else 0)


def logged_requests(log: Path) -> list[list[str]]:
    """The requests :func:`log_requests` logged in ``log``, ``[pid, op, name]`` each."""
    return [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []
