"""Phantom DX films carry what a real DX For Presentation object has (a PACS accepts them), and
their spacing tags read back as the phantom's effective spacing with the documented source."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cpak_cli.input.loader import UNCORRECTED_SPACING_SOURCES, load_image
from cpak_cli.phantom import make_case, render, write_case
from tests.factories import dciodvfy_errors

TINY = dict(max_size=400)


@pytest.mark.parametrize("mono1", [False, True])
def test_dx_type1_type2_attributes(tmp_path: Path, mono1: bool) -> None:
    case = make_case(4, 1, monochrome1_fraction=float(mono1), imager_spacing_fraction=0.0, **TINY)
    ds = pydicom.dcmread(write_case(case, tmp_path)["dicom"])
    assert ds.PresentationLUTShape == ("INVERSE" if mono1 else "IDENTITY")  # PS3.3 C.8.11.3
    assert ds.BurnedInAnnotation == "NO"
    assert ds.AnatomicRegionSequence[0].CodeValue == "61685007"
    assert ds.ViewCodeSequence[0].CodeValue == "399348003"
    for kw in ("DetectorType", "PositionerType", "AcquisitionContextSequence"):  # Type 2: present, empty
        assert kw in ds and not ds[kw].value
    # the loader's pixels are the same as before PresentationLUTShape was written: one inversion
    im = load_image(tmp_path / f"case{case.index:04d}.dcm")
    assert im.inversion == ("MONOCHROME1+INVERSE" if mono1 else "none")
    ref = render(case).astype(np.float64)
    corr = np.corrcoef(im.pixels.ravel(), ref.ravel())[0, 1]
    assert corr > 0.99  # bone bright either way


def test_pixel_spacing_films_are_calibrated_at_unit_magnification(tmp_path: Path) -> None:
    case = make_case(4, 2, imager_spacing_fraction=0.0, spacing_mm=(0.15, 0.16), **TINY)
    path = write_case(case, tmp_path)["dicom"]
    ds = pydicom.dcmread(path)
    assert list(ds.ImagerPixelSpacing) == list(ds.PixelSpacing) and case.magnification == 1.0
    assert ds.PixelSpacingCalibrationType == "GEOMETRY"
    im = load_image(path)
    assert im.spacing_source == "PixelSpacing (calibrated GEOMETRY)"
    assert im.spacing_source not in UNCORRECTED_SPACING_SOURCES
    assert im.spacing_mm == pytest.approx(case.spacing_mm, abs=1e-12)


def test_imager_spacing_films_unchanged(tmp_path: Path) -> None:
    case = make_case(4, 3, imager_spacing_fraction=1.0, **TINY)
    path = write_case(case, tmp_path)["dicom"]
    ds = pydicom.dcmread(path)
    assert "PixelSpacing" not in ds and "PixelSpacingCalibrationType" not in ds
    im = load_image(path)
    assert im.spacing_source == "ImagerPixelSpacing/magnification"
    assert im.spacing_mm == pytest.approx(case.spacing_mm, rel=1e-12)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("kw", [
    dict(imager_spacing_fraction=0.0, monochrome1_fraction=0.0, compression="none"),
    dict(imager_spacing_fraction=1.0, monochrome1_fraction=1.0, compression="rle", single_leg_fraction=1.0),
    dict(imager_spacing_fraction=0.0, monochrome1_fraction=1.0, compression="jpeg2000", flipped_fraction=1.0),
])
def test_dciodvfy_accepts_phantom_dx(tmp_path: Path, kw: dict) -> None:
    path = write_case(make_case(6, 0, **kw, **TINY), tmp_path)["dicom"]
    errors, _ = dciodvfy_errors(path)
    assert errors == []
