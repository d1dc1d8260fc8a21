"""Tests of cpak_cli.input.loader: every file is built here (tiny, fast)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1, RLELossless

from cpak_cli.errors import CpakInputError
from cpak_cli.input.loader import LoadedImage, is_probably_dicom, load_image
from tests.factories import COLS, ROWS, encode_jpeg_lossless, gradient, make_dx, write, write_dx  # noqa: E402

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


# --------------------------------------------------------------------------------- helpers


def reference(tmp_path: Path, **kw: Any) -> np.ndarray:
    """Pixels of the same image loaded uncompressed, for round-trip comparisons."""
    return load_image(write_dx(tmp_path, "reference.dcm", **kw)).pixels


def assert_one_line_error(exc: pytest.ExceptionInfo[CpakInputError], path: Path, *words: str):
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)


# --------------------------------------------------------------------------------- basics


def test_basic_dx_loads(tmp_path: Path) -> None:
    path = write_dx(tmp_path, patient_orientation=["L", "F"], image_laterality="B")
    img = load_image(path)
    assert isinstance(img, LoadedImage)
    assert img.pixels.dtype == np.float32
    assert img.pixels.shape == (ROWS, COLS) == (img.rows, img.cols)
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0
    # gradient preserved: brighter downwards and to the right, stored as displayed
    assert img.pixels[0, 0] == 0.0 and img.pixels[-1, -1] == 1.0
    assert img.pixels[10, 5] < img.pixels[11, 5] and img.pixels[10, 5] < img.pixels[10, 6]
    assert img.spacing_mm == (0.15, 0.15) and img.spacing_source == "PixelSpacing"
    assert img.patient_right_on_image_left is True and img.assumed_orientation is False
    assert img.laterality == "B"
    assert img.path == str(path)
    assert img.modality == "DX" and img.study_date == "20240131"
    assert img.sop_instance_uid and img.sop_instance_uid.startswith("1.")
    assert img.transfer_syntax == ExplicitVRLittleEndian
    assert img.photometric == "MONOCHROME2"
    assert img.file_format == "dicom" and img.voi_source == "minmax"
    assert img.metadata["Manufacturer"] == "TestVendor"
    assert "StudyInstanceUID" in img.metadata and "SeriesInstanceUID" in img.metadata
    assert "PatientID" not in img.metadata
    assert all(isinstance(v, str) for v in img.metadata.values())


def test_input_file_not_modified(tmp_path: Path) -> None:
    path = write_dx(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    path.chmod(0o444)
    load_image(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------------- spacing


def test_spacing_anisotropic_row_col_order(tmp_path: Path) -> None:
    img = load_image(write_dx(tmp_path, pixel_spacing=(0.2, 0.1)))
    assert img.spacing_mm == (0.2, 0.1)
    assert img.spacing_source == "PixelSpacing"


def test_pixel_spacing_wins_over_imager(tmp_path: Path) -> None:
    img = load_image(
        write_dx(tmp_path, pixel_spacing=(0.14, 0.14), imager_spacing=(0.15, 0.15), magnification=1.2)
    )
    assert img.spacing_mm == (0.14, 0.14)
    assert img.spacing_source == "PixelSpacing (corrected: differs from ImagerPixelSpacing)"


def test_imager_spacing_with_magnification(tmp_path: Path) -> None:
    img = load_image(
        write_dx(tmp_path, pixel_spacing=None, imager_spacing=(0.18, 0.12), magnification=1.2)
    )
    assert img.spacing_mm == pytest.approx((0.15, 0.10))
    assert img.spacing_source == "ImagerPixelSpacing/magnification"


def test_imager_spacing_without_magnification(tmp_path: Path) -> None:
    img = load_image(write_dx(tmp_path, pixel_spacing=None, imager_spacing=(0.18, 0.12)))
    assert img.spacing_mm == pytest.approx((0.18, 0.12))
    assert img.spacing_source == "ImagerPixelSpacing"


def test_zero_magnification_is_ignored(tmp_path: Path) -> None:
    img = load_image(
        write_dx(tmp_path, pixel_spacing=None, imager_spacing=(0.18, 0.12), magnification=0)
    )
    assert img.spacing_source == "ImagerPixelSpacing"


def test_zero_pixel_spacing_falls_back_to_imager(tmp_path: Path) -> None:
    img = load_image(write_dx(tmp_path, pixel_spacing=(0, 0), imager_spacing=(0.18, 0.18)))
    assert img.spacing_source == "ImagerPixelSpacing"


def test_user_spacing_overrides(tmp_path: Path) -> None:
    img = load_image(write_dx(tmp_path, pixel_spacing=(0.2, 0.2)), pixel_spacing=(0.3, 0.25))
    assert img.spacing_mm == (0.3, 0.25) and img.spacing_source == "user"
    # also when the file has no spacing at all
    img = load_image(write_dx(tmp_path, "b.dcm", pixel_spacing=None), pixel_spacing=(0.1, 0.1))
    assert img.spacing_mm == (0.1, 0.1) and img.spacing_source == "user"


def test_no_spacing_error(tmp_path: Path) -> None:
    path = write_dx(tmp_path, pixel_spacing=None)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "no pixel spacing", "--pixel-spacing")


@pytest.mark.parametrize("bad", [(0, 0), (-0.1, 0.1), (0.1, 0)])
def test_nonpositive_spacing_error(tmp_path: Path, bad: tuple[float, float]) -> None:
    path = write_dx(tmp_path, pixel_spacing=bad)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "PixelSpacing", "positive", "--pixel-spacing")


def test_non_numeric_spacing_error(tmp_path: Path) -> None:
    path = write_dx(tmp_path, pixel_spacing=(1.5, 1.5))
    data = path.read_bytes()
    assert data.count(b"1.5\\1.5 ") == 1
    path.write_bytes(data.replace(b"1.5\\1.5 ", b"abc\\1.5 "))
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "PixelSpacing", "--pixel-spacing")


@pytest.mark.parametrize("bad", [(0.0, 0.1), (-1.0, 1.0), (float("nan"), 0.1), (0.1,), ("a", "b")])
def test_bad_user_spacing_error(tmp_path: Path, bad: Any) -> None:
    path = write_dx(tmp_path)
    with pytest.raises(CpakInputError) as exc:
        load_image(path, pixel_spacing=bad)
    assert_one_line_error(exc, path, "--pixel-spacing")


# --------------------------------------------------------------------------------- pixel values


def test_monochrome1_is_inverted_bone_bright(tmp_path: Path) -> None:
    mono2 = load_image(write_dx(tmp_path, "m2.dcm")).pixels
    img = load_image(write_dx(tmp_path, "m1.dcm", photometric="MONOCHROME1"))
    assert img.photometric == "MONOCHROME1"
    np.testing.assert_allclose(img.pixels, 1.0 - mono2, atol=1e-6)
    # in MONOCHROME1 the highest stored value is displayed black: after loading it is 0
    assert img.pixels[-1, -1] == 0.0 and img.pixels[0, 0] == 1.0


def test_monochrome1_with_window_inverted(tmp_path: Path) -> None:
    w = (1000.5, 1001.0)
    m2 = load_image(write_dx(tmp_path, "m2.dcm", window=w)).pixels
    m1 = load_image(write_dx(tmp_path, "m1.dcm", window=w, photometric="MONOCHROME1")).pixels
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_negative_rescale_slope_flips(tmp_path: Path) -> None:
    plain = load_image(write_dx(tmp_path, "a.dcm")).pixels
    img = load_image(write_dx(tmp_path, "b.dcm", rescale=(-1.0, 5000.0)))
    np.testing.assert_allclose(img.pixels, 1.0 - plain, atol=1e-6)


def test_window_linear(tmp_path: Path) -> None:
    # values 0..3197; window [500, 1500]: <=500 -> 0, >1500 -> 1, 1000 -> 0.5
    pix = gradient()
    img = load_image(write_dx(tmp_path, pixels=pix, window=(1000.5, 1001.0)))
    assert img.voi_source == "window"
    expected = np.clip((pix.astype(float) - 1000.0) / 1000.0 + 0.5, 0, 1)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)
    assert img.pixels[pix == 1000][0] == pytest.approx(0.5)


def test_window_in_rescaled_units(tmp_path: Path) -> None:
    # output = 2 * stored - 1000; window centred on output 1000 <=> stored 1000
    pix = gradient()
    img = load_image(write_dx(tmp_path, pixels=pix, rescale=(2.0, -1000.0), window=(1000.5, 1001.0)))
    out = 2.0 * pix - 1000.0
    expected = np.clip((out - 1000.0) / 1000.0 + 0.5, 0, 1)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_window_multivalue_uses_first(tmp_path: Path) -> None:
    ds = make_dx()
    ds.WindowCenter = [1000.5, 3000.0]
    ds.WindowWidth = [1001.0, 10.0]
    img = load_image(write(ds, tmp_path / "w.dcm"))
    assert img.voi_source == "window"
    assert img.pixels[gradient() == 1000][0] == pytest.approx(0.5)


def test_window_sigmoid(tmp_path: Path) -> None:
    pix = gradient()
    img = load_image(write_dx(tmp_path, pixels=pix, window=(1000.0, 500.0), voi_function="SIGMOID"))
    expected = 1 / (1 + np.exp(-4 * (pix.astype(float) - 1000.0) / 500.0))
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_window_missing_the_data_falls_back_to_minmax(tmp_path: Path) -> None:
    img = load_image(write_dx(tmp_path, window=(100000.0, 10.0)))
    assert img.voi_source == "minmax"
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0


def test_voi_lut_sequence(tmp_path: Path) -> None:
    pix = (np.arange(ROWS * COLS) % 256).reshape(ROWS, COLS).astype(np.uint16)
    ds = make_dx(pixels=pix, window=(10000.0, 2.0))  # the LUT is preferred over the window
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.add_new(0x00283006, "US", [0 if v < 128 else 65535 for v in range(256)])
    ds.VOILUTSequence = [item]
    img = load_image(write(ds, tmp_path / "lut.dcm"))
    assert img.voi_source == "voi_lut"
    np.testing.assert_array_equal(img.pixels, (pix >= 128).astype(np.float32))


def test_signed_12_bit(tmp_path: Path) -> None:
    values = (gradient().astype(np.int32) - 2048).clip(-2048, 2047)
    stored = (values & 0x0FFF).astype(np.uint16)  # 12-bit two's complement, upper bits zero
    img = load_image(write_dx(tmp_path, pixels=stored, bits_stored=12, signed=True))
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_signed_12_bit_with_rescale_and_window(tmp_path: Path) -> None:
    values = (gradient().astype(np.int32) - 2048).clip(-2048, 2047)
    stored = (values & 0x0FFF).astype(np.uint16)
    img = load_image(
        write_dx(tmp_path, pixels=stored, bits_stored=12, signed=True, rescale=(1.0, 1024.0),
                 window=(1024.5, 1001.0))
    )
    out = values + 1024.0  # window [524, 1524] in output units
    expected = np.clip((out - 1024.0) / 1000.0 + 0.5, 0, 1)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_8_bit_image(tmp_path: Path) -> None:
    pix = (gradient() % 256).astype(np.uint8)
    img = load_image(write_dx(tmp_path, pixels=pix))
    np.testing.assert_allclose(img.pixels, pix / 255.0, atol=1e-6)


def test_constant_image_no_contrast(tmp_path: Path) -> None:
    path = write_dx(tmp_path, pixels=np.full((ROWS, COLS), 7, np.uint16))
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "no contrast")


# --------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize(
    "orientation, right_on_left, assumed",
    [
        (["L", "F"], True, False),
        (["R", "F"], False, False),
        (["LA", "F"], True, False),
        (["RP", "F"], False, False),
        (["A", "F"], True, True),
        (["P", "F"], True, True),
        (None, True, True),
    ],
)
def test_orientation(tmp_path: Path, orientation: Any, right_on_left: bool, assumed: bool) -> None:
    img = load_image(write_dx(tmp_path, patient_orientation=orientation))
    assert img.patient_right_on_image_left is right_on_left
    assert img.assumed_orientation is assumed


@pytest.mark.parametrize("lat, expected", [("R", "R"), ("L", "L"), ("B", "B"), ("U", None), (None, None)])
def test_image_laterality(tmp_path: Path, lat: str | None, expected: str | None) -> None:
    img = load_image(write_dx(tmp_path, image_laterality=lat))
    assert img.laterality == expected
    # laterality never decides the orientation
    assert img.assumed_orientation is True


def test_series_laterality_used_when_no_image_laterality(tmp_path: Path) -> None:
    ds = make_dx()
    ds.Laterality = "L"
    assert load_image(write(ds, tmp_path / "l.dcm")).laterality == "L"


# --------------------------------------------------------------------------------- file forms


def test_no_preamble_with_meta(tmp_path: Path) -> None:
    full = write_dx(tmp_path, "full.dcm")
    bare = tmp_path / "bare"
    bare.write_bytes(full.read_bytes()[132:])  # no preamble, no 'DICM'
    assert is_probably_dicom(bare)
    a, b = load_image(full), load_image(bare)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert b.spacing_mm == a.spacing_mm


def test_raw_implicit_dataset_without_meta(tmp_path: Path) -> None:
    ds = make_dx()
    del ds.file_meta
    path = tmp_path / "raw_implicit"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    assert is_probably_dicom(path)
    img = load_image(path)
    np.testing.assert_array_equal(img.pixels, reference(tmp_path))
    assert img.transfer_syntax == "1.2.840.10008.1.2"


# --------------------------------------------------------------------------------- compression


def test_rle_lossless_round_trip(tmp_path: Path) -> None:
    ds = make_dx()
    ds.compress(RLELossless)
    img = load_image(write(ds, tmp_path / "rle.dcm"))
    assert img.transfer_syntax == RLELossless
    assert img.metadata["TransferSyntaxName"] == "RLE Lossless"
    np.testing.assert_array_equal(img.pixels, reference(tmp_path))


def test_rle_signed_monochrome1_round_trip(tmp_path: Path) -> None:
    values = (gradient().astype(np.int32) - 2048).clip(-2048, 2047)
    kw: dict[str, Any] = dict(
        pixels=(values & 0x0FFF).astype(np.uint16), bits_stored=12, signed=True,
        photometric="MONOCHROME1",
    )
    ds = make_dx(**kw)
    ds.compress(RLELossless)
    img = load_image(write(ds, tmp_path / "rle.dcm"))
    np.testing.assert_array_equal(img.pixels, reference(tmp_path, **kw))


def test_jpeg2000_lossless_round_trip(tmp_path: Path) -> None:
    from pydicom.pixels import get_encoder

    if not get_encoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 encoder (pylibjpeg-openjpeg) installed")
    pix = (gradient() % 4096).astype(np.uint16)
    ds = make_dx(pixels=pix, bits_stored=12)
    ds.compress(JPEG2000Lossless)
    img = load_image(write(ds, tmp_path / "j2k.dcm"))
    assert img.transfer_syntax == JPEG2000Lossless
    np.testing.assert_array_equal(img.pixels, reference(tmp_path, pixels=pix, bits_stored=12))


def test_jpeg_lossless_sv1_decode(tmp_path: Path) -> None:
    pix = (gradient(scale=60) % 4096).astype(np.uint16)
    ds = make_dx(pixels=pix, bits_stored=12)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([encode_jpeg_lossless(pix, precision=12)])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "00"
    img = load_image(write(ds, tmp_path / "jll.dcm"))
    assert img.transfer_syntax == JPEGLosslessSV1
    np.testing.assert_array_equal(img.pixels, reference(tmp_path, pixels=pix, bits_stored=12))


def test_jpeg_baseline_decode(tmp_path: Path) -> None:
    import cv2

    pix = np.clip(gradient(scale=4), 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", pix, [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    ds = make_dx(pixels=pix)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    img = load_image(write(ds, tmp_path / "jpg.dcm"))
    assert img.transfer_syntax == JPEGBaseline8Bit
    ref = reference(tmp_path, pixels=pix)
    assert np.abs(img.pixels - ref).max() < 0.05  # lossy


@pytest.mark.parametrize(
    "compressed, uncompressed",
    [
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
        ("MR_small_RLE.dcm", "MR_small.dcm"),
    ],
)
def test_bundled_pydicom_files_if_present(compressed: str, uncompressed: str) -> None:
    a, b = PYDICOM_TEST_FILES / compressed, PYDICOM_TEST_FILES / uncompressed
    if not (a.is_file() and b.is_file()):
        pytest.skip("pydicom test files not bundled")
    ia = load_image(a, pixel_spacing=(1.0, 1.0))
    ib = load_image(b, pixel_spacing=(1.0, 1.0))
    np.testing.assert_allclose(ia.pixels, ib.pixels, atol=1e-6)


def test_bundled_jpeg_extended_12bit_if_present() -> None:
    path = PYDICOM_TEST_FILES / "JPGExtended.dcm"
    if not path.is_file():
        pytest.skip("pydicom test file not bundled")
    img = load_image(path, pixel_spacing=(0.5, 0.5))
    assert img.pixels.ndim == 2 and 0.0 <= img.pixels.min() < img.pixels.max() <= 1.0


def _encapsulated_with_ts(tmp_path: Path, ts: str) -> Path:
    ds = make_dx()
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([b"\x00\x11" * 64])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "odd_ts.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return path


def test_unsupported_known_transfer_syntax(tmp_path: Path) -> None:
    path = _encapsulated_with_ts(tmp_path, "1.2.840.10008.1.2.4.100")  # MPEG2 MP@ML
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "unsupported transfer syntax", "1.2.840.10008.1.2.4.100", "MPEG2")


def test_unsupported_private_transfer_syntax(tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.9999.77.1"
    path = _encapsulated_with_ts(tmp_path, uid)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "unsupported transfer syntax", uid)


def test_corrupt_compressed_data(tmp_path: Path) -> None:
    ds = make_dx()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 40])
    ds["PixelData"].VR = "OB"
    path = write(ds, tmp_path / "bad_j2k.dcm")
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "corrupt", "JPEG 2000")


# --------------------------------------------------------------------------------- PNG / TIFF


def test_png_16bit_with_spacing(tmp_path: Path) -> None:
    import cv2

    pix = gradient()
    path = tmp_path / "img.png"
    assert cv2.imwrite(str(path), pix)
    img = load_image(path, pixel_spacing=(0.2, 0.1))
    assert img.file_format == "png"
    assert img.spacing_mm == (0.2, 0.1) and img.spacing_source == "user"
    assert img.assumed_orientation is True and img.patient_right_on_image_left is True
    assert img.laterality is None and img.transfer_syntax is None
    np.testing.assert_allclose(img.pixels, reference(tmp_path), atol=1e-6)


def test_png_8bit_and_grey_rgb(tmp_path: Path) -> None:
    import cv2

    pix = (gradient() % 256).astype(np.uint8)
    p8, prgb = tmp_path / "g8.png", tmp_path / "rgb.png"
    cv2.imwrite(str(p8), pix)
    cv2.imwrite(str(prgb), np.dstack([pix, pix, pix]))
    a = load_image(p8, pixel_spacing=(0.1, 0.1))
    b = load_image(prgb, pixel_spacing=(0.1, 0.1))
    np.testing.assert_allclose(a.pixels, pix / 255.0, atol=1e-6)
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_tiff_16bit_with_spacing(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "img.tif"
    assert cv2.imwrite(str(path), gradient())
    img = load_image(path, pixel_spacing=(0.15, 0.15))
    assert img.file_format == "tiff"
    np.testing.assert_allclose(img.pixels, reference(tmp_path), atol=1e-6)


def test_png_without_spacing_error(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "img.png"
    cv2.imwrite(str(path), gradient())
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "PNG/TIFF has no pixel spacing; pass --pixel-spacing ROW COL")


def test_colour_png_rejected(tmp_path: Path) -> None:
    import cv2

    pix = (gradient() % 256).astype(np.uint8)
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), np.dstack([pix, pix[::-1], pix]))
    with pytest.raises(CpakInputError) as exc:
        load_image(path, pixel_spacing=(0.1, 0.1))
    assert_one_line_error(exc, path, "colour")


def test_corrupt_png_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    with pytest.raises(CpakInputError) as exc:
        load_image(path, pixel_spacing=(0.1, 0.1))
    assert_one_line_error(exc, path, "PNG")


# --------------------------------------------------------------------------------- rejections


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.dcm"
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "not found")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CpakInputError) as exc:
        load_image(tmp_path)
    assert_one_line_error(exc, tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "empty")


def test_text_file_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_text("hello world, this is not an image\n" * 20)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "not a DICOM file")
    assert not is_probably_dicom(path)


def test_random_binary_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(0).integers(128, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "not a DICOM file")


def test_no_pixel_data(tmp_path: Path) -> None:
    ds = make_dx()
    del ds.PixelData
    path = write(ds, tmp_path / "nopix.dcm")
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "no PixelData")


def test_multi_frame(tmp_path: Path) -> None:
    frames = np.stack([gradient(), gradient()])
    path = write_dx(tmp_path, pixels=frames, frames=2)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "multi-frame", "2 frames")


def test_single_frame_with_number_of_frames_1(tmp_path: Path) -> None:
    img = load_image(write_dx(tmp_path, frames=1))
    np.testing.assert_array_equal(img.pixels, reference(tmp_path))


def test_colour_dicom(tmp_path: Path) -> None:
    rgb = np.dstack([gradient() % 256] * 3).astype(np.uint8)
    ds = make_dx(pixels=rgb[:, :, 0])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = rgb.tobytes()
    path = write(ds, tmp_path / "rgb.dcm")
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "colour", "RGB")


def test_palette_colour_dicom(tmp_path: Path) -> None:
    ds = make_dx(pixels=(gradient() % 256).astype(np.uint8))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    path = write(ds, tmp_path / "pal.dcm")
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "colour")


def test_missing_required_image_attribute(tmp_path: Path) -> None:
    ds = make_dx()
    ds["PixelData"].VR = "OW"
    del ds.BitsAllocated
    path = write(ds, tmp_path / "nobits.dcm")
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "missing BitsAllocated")


def test_missing_photometric_read_as_monochrome2(tmp_path: Path) -> None:
    ds = make_dx()
    del ds.PhotometricInterpretation
    img = load_image(write(ds, tmp_path / "nophot.dcm"))
    assert img.photometric is None
    np.testing.assert_array_equal(img.pixels, reference(tmp_path))


def test_truncated_file(tmp_path: Path) -> None:
    full = write_dx(tmp_path, "full.dcm")
    path = tmp_path / "cut.dcm"
    path.write_bytes(full.read_bytes()[:-1000])
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "pixel data truncated or corrupt")


def test_truncated_rle_file(tmp_path: Path) -> None:
    ds = make_dx()
    ds.compress(RLELossless)
    full = write(ds, tmp_path / "full.dcm")
    path = tmp_path / "cut.dcm"
    path.write_bytes(full.read_bytes()[:-500])
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "truncated or corrupt")


def test_pydicom_broken_jpeg_file_if_present() -> None:
    path = PYDICOM_TEST_FILES / "JPEG-lossy.dcm"  # known to have an invalid JPEG scan header
    if not path.is_file():
        pytest.skip("pydicom test file not bundled")
    with pytest.raises(CpakInputError) as exc:
        load_image(path, pixel_spacing=(0.5, 0.5))
    assert_one_line_error(exc, path, "pixel data truncated or corrupt", "JPEG Extended")


def test_unexpected_3d_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dx(tmp_path)
    monkeypatch.setattr(Dataset, "pixel_array", property(lambda self: np.zeros((2, 4, 4))))
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "shape")


def test_unexpected_exception_is_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dx(tmp_path)

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("something odd\nwith two lines")

    monkeypatch.setattr("pydicom.pixels.apply_modality_lut", boom)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "something odd")


def test_keyboard_interrupt_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dx(tmp_path)

    def interrupt(self: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Dataset, "pixel_array", property(interrupt))
    with pytest.raises(KeyboardInterrupt):
        load_image(path)


# --------------------------------------------------------------------------------- is_probably_dicom


def test_is_probably_dicom(tmp_path: Path) -> None:
    import cv2

    dcm = write_dx(tmp_path, "a.dcm")
    noext = tmp_path / "IM0001"
    noext.write_bytes(dcm.read_bytes())
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), gradient())
    txt = tmp_path / "readme.txt"
    txt.write_text("DICM is not at offset 128 here\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert is_probably_dicom(dcm) and is_probably_dicom(str(noext))
    assert not is_probably_dicom(png)
    assert not is_probably_dicom(txt)
    assert not is_probably_dicom(empty)
    assert not is_probably_dicom(tmp_path / "missing")
    assert not is_probably_dicom(tmp_path)


def test_fallback_spacing_only_fills_a_missing_spacing(tmp_path: Path) -> None:
    with_spacing = write_dx(tmp_path, "a.dcm", pixel_spacing=(0.2, 0.1))
    without = write_dx(tmp_path, "b.dcm", pixel_spacing=None)
    a = load_image(with_spacing, fallback_spacing=(0.15, 0.15))
    assert a.spacing_mm == (0.2, 0.1) and a.spacing_source == "PixelSpacing"
    b = load_image(without, fallback_spacing=(0.15, 0.15))
    assert b.spacing_mm == (0.15, 0.15) and b.spacing_source == "user"


# --------------------------------------------------------------------------------- spacing rules
# (issue 9 item 3: PS3.3 10.7.1.1 / 10.7.1.3; the source string names the rule that applied)


@pytest.mark.parametrize(
    "kw, calibration, spacing, source, uncorrected",
    [
        # PixelSpacing == ImagerPixelSpacing: not corrected; the factor corrects it, say so
        (dict(pixel_spacing=(0.18, 0.12), imager_spacing=(0.18, 0.12), magnification=1.2), None,
         (0.15, 0.10), "PixelSpacing=ImagerPixelSpacing/magnification", False),
        # ... without the factor: used as is, marked uncorrected (flag)
        (dict(pixel_spacing=(0.18, 0.12), imager_spacing=(0.18, 0.12)), None,
         (0.18, 0.12), "PixelSpacing=ImagerPixelSpacing (uncorrected)", True),
        # equal to 1e-4 relative (DS strings written differently)
        (dict(pixel_spacing=("0.18", "0.12"), imager_spacing=("0.180000", "0.1200004")), None,
         (0.18, 0.12), "PixelSpacing=ImagerPixelSpacing (uncorrected)", True),
        # a calibration type says PixelSpacing was calibrated: used as is, never divided again
        (dict(pixel_spacing=(0.18, 0.12), imager_spacing=(0.18, 0.12), magnification=1.2), "GEOMETRY",
         (0.18, 0.12), "PixelSpacing (calibrated GEOMETRY)", False),
        (dict(pixel_spacing=(0.14, 0.14), imager_spacing=(0.15, 0.15)), "FIDUCIAL",
         (0.14, 0.14), "PixelSpacing (calibrated FIDUCIAL)", False),
        (dict(pixel_spacing=(0.14, 0.14)), "FIDUCIAL ", (0.14, 0.14), "PixelSpacing (calibrated FIDUCIAL)", False),
        # an unknown calibration type is ignored
        (dict(pixel_spacing=(0.18, 0.12), imager_spacing=(0.18, 0.12)), "GUESS",
         (0.18, 0.12), "PixelSpacing=ImagerPixelSpacing (uncorrected)", True),
        # different from ImagerPixelSpacing: already corrected, the factor is not applied again
        (dict(pixel_spacing=(0.14, 0.14), imager_spacing=(0.15, 0.15), magnification=1.07), None,
         (0.14, 0.14), "PixelSpacing (corrected: differs from ImagerPixelSpacing)", False),
        (dict(pixel_spacing=(0.14, 0.14)), None, (0.14, 0.14), "PixelSpacing", False),
        (dict(pixel_spacing=None, imager_spacing=(0.18, 0.12), magnification=1.2), None,
         (0.15, 0.10), "ImagerPixelSpacing/magnification", False),
        (dict(pixel_spacing=None, imager_spacing=(0.18, 0.12)), None, (0.18, 0.12), "ImagerPixelSpacing", True),
    ],
)
def test_spacing_rules_and_source(
    tmp_path: Path, kw: dict, calibration: str | None, spacing: tuple[float, float], source: str,
    uncorrected: bool,
) -> None:
    from cpak_cli.core.measurement import FLAG_SPACING_UNCORRECTED
    from cpak_cli.input.loader import SPACING_SOURCES, UNCORRECTED_SPACING_SOURCES
    from cpak_cli.pipeline.result import scan_flags

    ds = make_dx(**kw)
    if calibration is not None:
        ds.PixelSpacingCalibrationType = calibration
    img = load_image(write(ds, tmp_path / "s.dcm"))
    assert img.spacing_mm == pytest.approx(spacing, rel=1e-9)
    assert img.spacing_source == source and source in SPACING_SOURCES
    assert (source in UNCORRECTED_SPACING_SOURCES) is uncorrected
    flags, notes = scan_flags(img)
    assert (FLAG_SPACING_UNCORRECTED in flags) is uncorrected
    if uncorrected:
        assert any(source in n and "magnification" in n for n in notes)


# --------------------------------------------------------------------------------- orientation turns
# (issue 9 item 5: both values of PatientOrientation; head up, the patient's right known)

_OPPOSITE = {"L": "R", "R": "L", "H": "F", "F": "H", "A": "P", "P": "A"}


@pytest.mark.parametrize(
    "row_dir, col_dir, applied",
    [
        ("L", "F", "none"), ("R", "F", "none"),
        ("L", "H", "flip_vertical"), ("R", "H", "flip_vertical"),
        ("F", "L", "transpose"), ("F", "R", "transpose"),
        ("H", "L", "transpose+flip_vertical"), ("H", "R", "transpose+flip_vertical"),
    ],
)
def test_orientation_turns_head_up(tmp_path: Path, row_dir: str, col_dir: str, applied: str) -> None:
    pix = gradient()
    pix[0, COLS - 1] = 60000  # the marked corner: top right as stored
    kw: dict[str, Any] = dict(pixels=pix, pixel_spacing=(0.2, 0.1))
    stored = load_image(write_dx(tmp_path, "stored.dcm", **kw)).pixels
    img = load_image(write_dx(tmp_path, patient_orientation=[row_dir, col_dir], **kw))
    assert img.orientation_applied == applied and img.patient_orientation == f"{row_dir}\\{col_dir}"
    assert img.assumed_orientation is False
    across = row_dir if row_dir in "LR" else col_dir
    assert img.patient_right_on_image_left is (across == "L")
    # where the marked corner must end up, from the tag's meaning alone: stored (0, COLS-1) is at
    # the +row_dir end of the rows and at the -col_dir end of the columns; head up, the rows run
    # H -> F and the columns run (opposite of across) -> across
    marker_ends = {row_dir, _OPPOSITE[col_dir]}
    transposed = "transpose" in applied
    rows, cols = (COLS, ROWS) if transposed else (ROWS, COLS)
    assert img.pixels.shape == (rows, cols) == (img.rows, img.cols)
    expected = (rows - 1 if "F" in marker_ends else 0, cols - 1 if across in marker_ends else 0)
    assert np.unravel_index(int(np.argmax(img.pixels)), img.pixels.shape) == expected
    assert img.pixels[expected] == 1.0
    # the whole image is the stored one turned, and the spacing follows rows and columns
    turned = stored.T if transposed else stored
    turned = turned[::-1] if "flip_vertical" in applied else turned
    np.testing.assert_array_equal(img.pixels, turned)
    assert img.pixels.flags["C_CONTIGUOUS"]
    assert img.spacing_mm == ((0.1, 0.2) if transposed else (0.2, 0.1))


@pytest.mark.parametrize(
    "orientation, applied, right_on_left, assumed",
    [
        (["LA", "FP"], "none", True, False),  # compound values: the first letter decides
        (["FR", "L"], "transpose", True, False),
        (["A", "H"], "flip_vertical", True, True),  # lateral: the side is unknown, AP assumed
        (["F", "P"], "transpose", True, True),
        ("", "none", True, True),  # empty (type 2): as absent
    ],
)
def test_orientation_compound_lateral_and_empty(
    tmp_path: Path, orientation: Any, applied: str, right_on_left: bool, assumed: bool
) -> None:
    img = load_image(write_dx(tmp_path, patient_orientation=orientation))
    assert img.orientation_applied == applied
    assert img.patient_right_on_image_left is right_on_left and img.assumed_orientation is assumed


@pytest.mark.parametrize(
    "orientation",
    [["L"], ["F", "H"], ["L", "R"], ["A", "L"], ["X", "F"], ["LR", "F"], ["L", "FF"], ["L", "F", "A"]],
)
def test_invalid_orientation_pair_refused(tmp_path: Path, orientation: list[str]) -> None:
    path = write_dx(tmp_path, patient_orientation=orientation)
    raw = "\\".join(orientation)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, f"invalid PatientOrientation '{raw}'", "one H or F", "(e.g. L\\F)")


def test_orientation_refused_even_with_user_spacing(tmp_path: Path) -> None:
    path = write_dx(tmp_path, patient_orientation=["F", "H"])
    with pytest.raises(CpakInputError):
        load_image(path, pixel_spacing=(0.5, 0.5))


# --------------------------------------------------------------------------------- Presentation LUT Shape
# (issue 9 item 7)


def _bone_film() -> np.ndarray:
    """Stored values as an 'inverted' vendor writes them: bone (a bar) LOW, background high."""
    pix = np.full((ROWS, COLS), 3000, np.uint16)
    pix[:, 20:28] = 500  # the bone
    pix[0, 0] = 2900  # a little variety
    return pix


@pytest.mark.parametrize(
    "photometric, shape, inversion, bone_bright",
    [
        ("MONOCHROME2", None, "none", False),
        ("MONOCHROME2", "IDENTITY", "none", False),
        ("MONOCHROME2", "INVERSE", "PresentationLUTShape INVERSE", True),
        ("MONOCHROME2", "INVERSE ", "PresentationLUTShape INVERSE", True),
        ("MONOCHROME1", None, "MONOCHROME1", True),
        ("MONOCHROME1", "IDENTITY", "MONOCHROME1", True),
        # the pairing PS3.3 requires for MONOCHROME1: one inversion, not a cancelled one
        ("MONOCHROME1", "INVERSE", "MONOCHROME1+INVERSE", True),
    ],
)
def test_presentation_lut_shape(
    tmp_path: Path, photometric: str, shape: str | None, inversion: str, bone_bright: bool
) -> None:
    plain = load_image(write_dx(tmp_path, "plain.dcm", pixels=_bone_film())).pixels
    ds = make_dx(pixels=_bone_film(), photometric=photometric)
    if shape is not None:
        ds.PresentationLUTShape = shape
    img = load_image(write(ds, tmp_path / "p.dcm"))
    assert img.inversion == inversion
    bone, background = float(img.pixels[5, 24]), float(img.pixels[5, 5])
    assert (bone > background) is bone_bright
    np.testing.assert_allclose(img.pixels, (1.0 - plain) if bone_bright else plain, atol=1e-6)


# --------------------------------------------------------------------------------- implausible spacing
# (issue 12 item 4: a file's spacing outside 0.05-2.0 mm, or a head-up film height outside
# 0.3-2.5 m, counts as missing; images under 512 rows are not checked)


def _film(rows: int, cols: int = 32) -> np.ndarray:
    return gradient(rows, cols, scale=max(1, 60000 // (rows + cols)))


@pytest.mark.parametrize(
    "rows, kw, words",
    [
        (512, dict(pixel_spacing=(10.0, 10.0)),
         ["implausible pixel spacing 10 x 10 mm (PixelSpacing)", "outside 0.05-2.0 mm per pixel"]),
        (2048, dict(pixel_spacing=(0.01, 0.01)),
         ["implausible pixel spacing 0.01 x 0.01 mm (PixelSpacing)", "outside 0.05-2.0 mm per pixel"]),
        (600, dict(pixel_spacing=(0.15, 3.0)), ["0.15 x 3 mm", "per pixel"]),
        # a downsampled export whose tag was not updated: 1024 rows x 0.15 mm = 0.154 m
        (1024, dict(pixel_spacing=(0.15, 0.15)),
         ["implausible pixel spacing 0.15 x 0.15 mm (PixelSpacing)",
          "film height 0.154 m (1024 rows) outside 0.3-2.5 m"]),
        (2000, dict(pixel_spacing=(1.5, 1.5)), ["film height 3 m (2000 rows) outside 0.3-2.5 m"]),
        # the rule is judged on the spacing actually used (here after the magnification)
        (600, dict(pixel_spacing=None, imager_spacing=(2.4, 2.4), magnification=1.1),
         ["2.18182 x 2.18182 mm (ImagerPixelSpacing/magnification)", "per pixel"]),
    ],
)
def test_implausible_file_spacing_refused(tmp_path: Path, rows: int, kw: dict, words: list[str]) -> None:
    path = write_dx(tmp_path, pixels=_film(rows), **kw)
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, *words, "--pixel-spacing")
    # counts as missing: the user's spacing (or the batch fallback) is used instead
    img = load_image(path, pixel_spacing=(0.5, 0.5))
    assert img.spacing_mm == (0.5, 0.5) and img.spacing_source == "user"
    img = load_image(path, fallback_spacing=(0.6, 0.6))
    assert img.spacing_mm == (0.6, 0.6) and img.spacing_source == "user"


@pytest.mark.parametrize(
    "rows, spacing",
    [(512, (0.6, 0.6)), (1024, (0.5, 0.5)), (2048, (0.15, 0.15)), (7000, (0.18, 0.18)), (1000, (2.0, 0.05))],
)
def test_plausible_file_spacing_accepted(tmp_path: Path, rows: int, spacing: tuple[float, float]) -> None:
    img = load_image(write_dx(tmp_path, pixels=_film(rows, cols=8), pixel_spacing=spacing))
    assert img.spacing_mm == spacing and img.spacing_source == "PixelSpacing"


def test_film_height_judged_head_up(tmp_path: Path) -> None:
    """A film stored sideways (F\\L): its height is its stored width x the column spacing."""
    pix = _film(48, cols=1024).copy()
    ok = load_image(write_dx(tmp_path, "flat.dcm", pixels=pix, pixel_spacing=(0.5, 0.15)))
    assert ok.spacing_mm == (0.5, 0.15)  # stored as is: 48 rows, not checked
    path = write_dx(tmp_path, pixels=pix, pixel_spacing=(0.5, 0.15), patient_orientation=["F", "L"])
    with pytest.raises(CpakInputError) as exc:
        load_image(path)
    assert_one_line_error(exc, path, "0.15 x 0.5 mm", "film height 0.154 m (1024 rows)")
    img = load_image(write_dx(tmp_path, "ok.dcm", pixels=pix, pixel_spacing=(0.5, 1.0),
                              patient_orientation=["F", "L"]))
    assert img.pixels.shape == (1024, 48) and img.spacing_mm == (1.0, 0.5)


def test_small_images_are_not_checked(tmp_path: Path) -> None:
    """Under 512 rows (thumbnails, the suite's 64x48 films, tiny phantom renders) the file's
    spacing is used as it is: no in-range spacing could make such a film a full-leg film."""
    img = load_image(write_dx(tmp_path, pixel_spacing=(10.0, 10.0)))
    assert img.spacing_mm == (10.0, 10.0) and img.spacing_source == "PixelSpacing"
    img = load_image(write_dx(tmp_path, "b.dcm", pixels=_film(511), pixel_spacing=(0.15, 0.15)))
    assert img.spacing_source == "PixelSpacing"


@pytest.mark.parametrize("bad", [(10.0, 10.0), (0.04, 0.5), (0.5, 2.5)])
def test_user_spacing_range_checked(tmp_path: Path, bad: tuple[float, float]) -> None:
    path = write_dx(tmp_path)
    with pytest.raises(CpakInputError) as exc:
        load_image(path, pixel_spacing=bad)
    assert_one_line_error(exc, path, f"implausible --pixel-spacing {bad[0]:g} {bad[1]:g}", "0.05-2.0 mm")
    with pytest.raises(CpakInputError):
        load_image(write_dx(tmp_path, "n.dcm", pixel_spacing=None), fallback_spacing=bad)


def test_user_spacing_not_checked_against_height(tmp_path: Path) -> None:
    """8-bit PNG exports (512x1024 at 0.5-1.15 mm) and tiny test films with --pixel-spacing."""
    import cv2

    path = tmp_path / "export.png"
    cv2.imwrite(str(path), (_film(1024, cols=512) % 256).astype(np.uint8))
    for sp in ((0.5, 0.5), (1.15, 1.15)):
        assert load_image(path, pixel_spacing=sp).spacing_mm == sp
    # 1024 rows x 0.1 mm = 0.1 m: the user's value is still used
    assert load_image(path, pixel_spacing=(0.1, 0.1)).spacing_source == "user"
    assert load_image(write_dx(tmp_path, pixels=_film(1024)), pixel_spacing=(0.1, 0.1)).spacing_mm == (0.1, 0.1)


def test_one_value_pixel_spacing_is_refused_not_guessed(tmp_path):
    """PixelSpacing has two values (row, column); a single value does not say which it is."""
    p = write_dx(tmp_path, pixel_spacing=[0.15])
    with pytest.raises(CpakInputError, match="(?i)spacing"):
        load_image(p)


def test_user_spacing_overrides_imager_pixel_spacing_and_says_so(tmp_path):
    p = write_dx(tmp_path, pixel_spacing=None, imager_spacing=(0.2, 0.2), magnification=1.1)
    img = load_image(p, pixel_spacing=(0.14, 0.16))
    assert img.spacing_mm == (0.14, 0.16) and img.spacing_source == "user"
    auto = load_image(p)
    assert auto.spacing_mm == pytest.approx((0.2 / 1.1, 0.2 / 1.1)) and auto.spacing_source == "ImagerPixelSpacing/magnification"


def test_jpeg2000_with_missing_tiles_is_refused_not_read_as_black(tmp_path: Path) -> None:
    """OpenJPEG decodes a codestream that lacks tiles without an error, the missing tiles black;
    the loader counts the tiles and refuses the film (both decoding paths)."""
    from cpak_cli.input.loader import open_film
    from tests.factories import ramp_film, tiled_j2k_dx

    pixels = ramp_film(256, 256)
    whole = write(tiled_j2k_dx(pixels, pixel_spacing=(0.5, 0.5)), tmp_path / "whole.dcm")
    assert np.array_equal(load_image(whole).pixels, load_image(whole).pixels)  # a whole tiled film loads
    assert load_image(whole).pixels.shape == (256, 256)
    damaged = write(tiled_j2k_dx(pixels, drop_after_first_tile=True, pixel_spacing=(0.5, 0.5)), tmp_path / "cut.dcm")
    for loader_fn in (load_image, open_film):
        with pytest.raises(CpakInputError) as exc:
            loader_fn(damaged)  # refused when opened, before any pixel is used
        assert_one_line_error(exc, damaged, "damaged", "3 of 4 tiles missing")
