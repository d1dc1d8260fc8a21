"""Every bad input of the foundation issue, through the real CLI: one line, non-zero, no traceback.

`cpak measure` reads the image before it loads any model, so no weights are needed here.
"""

import numpy as np
import pytest
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, RLELossless
from typer.testing import CliRunner

from cpak_cli.cli import app
from tests.factories import gradient, make_dx, write

runner = CliRunner()


def _no_pixels(tmp_path):
    ds = make_dx()
    del ds.PixelData
    return write(ds, tmp_path / "nopix.dcm"), "no PixelData"


def _multi_frame(tmp_path):
    ds = make_dx(pixels=np.stack([gradient(), gradient()]), frames=2)
    return write(ds, tmp_path / "multi.dcm"), "multi-frame"


def _colour(tmp_path):
    rgb = np.dstack([gradient() % 256] * 3).astype(np.uint8)
    ds = make_dx(pixels=rgb[:, :, 0])
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    return write(ds, tmp_path / "rgb.dcm"), "colour"


def _truncated(tmp_path):
    p = write(make_dx(), tmp_path / "full.dcm")
    data = p.read_bytes()
    t = tmp_path / "trunc.dcm"
    t.write_bytes(data[: len(data) - 500])
    return t, "truncated"


def _no_spacing(tmp_path):
    return write(make_dx(pixel_spacing=None), tmp_path / "nospacing.dcm"), "pixel spacing"


def _not_dicom(tmp_path):
    p = tmp_path / "report.dcm"
    p.write_text("Patient report, not an image\n" * 20)
    return p, "not a DICOM"


def _unsupported_ts(tmp_path):
    ds = make_dx()
    ds.compress(RLELossless)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    return write(ds, tmp_path / "mpeg.dcm"), "MPEG2"


def _png_without_spacing(tmp_path):
    import cv2

    p = tmp_path / "export.png"
    cv2.imwrite(str(p), (gradient() % 65535).astype(np.uint16))
    return p, "--pixel-spacing"


def _implausible_spacing(tmp_path):
    # a 512-row film (plausible size) whose PixelSpacing says 10 mm per pixel (a cm/mm mix-up)
    ds = make_dx(pixels=gradient(512, 32, scale=100), pixel_spacing=(10.0, 10.0))
    return write(ds, tmp_path / "cm.dcm"), "implausible pixel spacing 10 x 10 mm (PixelSpacing)"


def _bad_orientation(tmp_path):
    return write(make_dx(patient_orientation=["F", "H"]), tmp_path / "fh.dcm"), "invalid PatientOrientation 'F\\H'"


def _missing(tmp_path):
    return tmp_path / "nowhere.dcm", "not found"


@pytest.mark.parametrize(
    "make", [_no_pixels, _multi_frame, _colour, _truncated, _no_spacing, _not_dicom, _unsupported_ts,
             _png_without_spacing, _implausible_spacing, _bad_orientation, _missing],
)
def test_measure_bad_input(tmp_path, make):
    path, words = make(tmp_path)
    before = path.read_bytes() if path.exists() else None
    res = runner.invoke(app, ["measure", str(path), "--weights-dir", str(tmp_path / "no-weights")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert str(path) in lines[0] and words.lower() in lines[0].lower() and "Traceback" not in res.output
    if before is not None:
        assert path.read_bytes() == before  # inputs are never modified


def test_compressed_inputs_load_through_cli_path(tmp_path):
    """Compressed DICOMs decode; measure then stops only at the missing weights (exit 2, one line)."""
    for ts in (RLELossless, JPEG2000Lossless):
        ds = make_dx()
        ds.compress(ts)
        p = write(ds, tmp_path / f"{ts.name.replace(' ', '_')}.dcm")
        res = runner.invoke(app, ["measure", str(p), "--weights-dir", str(tmp_path / "no-weights")])
        assert res.exit_code == 2 and "weights file not found" in res.output


def test_implausible_spacing_message_and_user_override(tmp_path):
    """The 10 mm refusal names the file, the spacing and the reason; --pixel-spacing gets past it
    (measure then stops only at the missing weights), and is itself range-checked."""
    path, _ = _implausible_spacing(tmp_path)
    res = runner.invoke(app, ["measure", str(path), "--weights-dir", str(tmp_path / "no-weights")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].endswith(
        f"{path}: implausible pixel spacing 10 x 10 mm (PixelSpacing): outside 0.05-2.0 mm per pixel; "
        "pass --pixel-spacing ROW COL"
    )
    res = runner.invoke(app, ["measure", str(path), "--pixel-spacing", "0.5", "0.5",
                              "--weights-dir", str(tmp_path / "no-weights")])
    assert res.exit_code == 2 and "weights file not found" in res.output
    res = runner.invoke(app, ["measure", str(path), "--pixel-spacing", "10", "10",
                              "--weights-dir", str(tmp_path / "no-weights")])
    assert res.exit_code == 2 and "implausible --pixel-spacing 10 10" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
