"""The tag and geometry review cases of the correctness issue, through `cpak measure` (the CLI, the
shipped weights) on altered copies of sample_data/case0001.dcm; prints one line per case.

    python benchmarks/review_cases.py [OUT_DIR]

Truth of case0001: right 87.33/86.68 type II, left 86.64/91.83 type VI. Each case must give the
right angles and type (within 2 degrees), or flag the leg without a type, or refuse the film.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "sample_data" / "case0001.dcm"
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/review_cases")
OUT.mkdir(parents=True, exist_ok=True)


def save(ds, name, px=None):
    if px is not None:
        ds.PixelData = np.ascontiguousarray(px.astype(np.uint16)).tobytes()
        ds.Rows, ds.Columns = px.shape
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    p = OUT / f"{name}.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p


def base():
    ds = pydicom.dcmread(SRC)
    px = ds.pixel_array.copy()
    ds.decompress()
    return ds, px


def _deg(v):
    return "-" if v is None else f"{v:.1f}"


def run(p, label):
    r = subprocess.run(
        [sys.executable, "-m", "cpak_cli", "measure", str(p), "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
    )
    if r.returncode == 2 or not r.stdout.strip().startswith("{"):
        print(f"{label}: exit {r.returncode}: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
        return
    d = json.loads(r.stdout)
    legs = []
    for side, leg in d["legs"].items():
        legs.append(
            f"{side} {_deg(leg['ldfa'])}/{_deg(leg['mpta'])} type {leg['cpak']} flags {','.join(leg['flags']) or '-'}"
            + (f" ({leg['error']})" if leg["error"] else "")
        )
    print(f"{label}: exit {r.returncode}, spacing {d.get('pixel_spacing_mm')} {d.get('spacing_source')}; " + " | ".join(legs))


run(SRC, "0 original")
for tag in ("R", "L"):
    ds, px = base()
    ds.ImageLaterality = tag
    run(save(ds, f"both_{tag}", px), f"1 both legs, ImageLaterality {tag}")
ds, px = base()
ds.ImageLaterality = "L"
run(save(ds, "lefthalf_L", px[:, : px.shape[1] // 2]), "1 image's left half (patient's right), tagged L")
ds, px = base()
run(save(ds, "lefthalf_none", px[:, : px.shape[1] // 2]), "1 image's left half, no laterality tag")
ds, px = base()
ds.ImagerPixelSpacing = ds.PixelSpacing = [0.2875, 0.2875]
ds.EstimatedRadiographicMagnificationFactor = 1.15
run(save(ds, "ps_eq_ips", px), "3 PixelSpacing = ImagerPixelSpacing 0.2875 + magnification 1.15")
ds, px = base()
ds.ImagerPixelSpacing = ds.PixelSpacing = [0.2875, 0.2875]
if "EstimatedRadiographicMagnificationFactor" in ds:
    del ds.EstimatedRadiographicMagnificationFactor
run(save(ds, "ps_eq_ips_nomag", px), "3 PixelSpacing = ImagerPixelSpacing, no magnification factor")
for f in (0.5, 0.8):
    ds, px = base()
    small = cv2.resize(px, (px.shape[1], int(px.shape[0] * f)), interpolation=cv2.INTER_AREA)
    run(save(ds, f"rows_{f}", small), f"4 rows resampled x{f}, spacing kept")
ds, px = base()
ds.PatientOrientation = ["R", "H"]
run(save(ds, "RH", px[::-1, ::-1]), "5 stored upside down, PatientOrientation R\\H")
ds, px = base()
ds.PatientOrientation = ["F", "R"]
run(save(ds, "FR", np.rot90(px, 1)), "5 stored rotated, PatientOrientation F\\R")
ds, px = base()
del ds.PatientOrientation
cut = px[: int(px.shape[0] * 0.8), ::-1]
run(save(ds, "mirrored_noorient_noankle", cut), "6 mirrored, no PatientOrientation, ankles cut off")
ds, px = base()
ds.PresentationLUTShape = "INVERSE"
mx = (1 << ds.BitsStored) - 1
run(save(ds, "inverse", mx - px), "7 MONOCHROME2 pixels inverted, PresentationLUTShape INVERSE")
