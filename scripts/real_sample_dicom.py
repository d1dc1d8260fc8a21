"""Wrap a real film of a three-point label folder (e.g. shared/data/real-eos) as a DICOM sample.

    python scripts/real_sample_dicom.py --data DIR --id ID --out sample_data/eos_ID.dcm

Writes a DX "For Presentation" DICOM of the 8-bit PNG with its PixelSpacing from labels.csv and
no PatientOrientation (the set does not record which side is the patient's right, so the tool
assumes the display convention and flags `orientation_assumed`), plus ``eos_ID.labels.json``
with the film's three points per leg as labelled. Pixel values are unchanged.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from cpak_cli.atomic import atomic_write_bytes, atomic_write_text
from cpak_cli.training.pointlabels import load_pixels, read_point_labels

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import cv2
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    lab = next(x for x in read_point_labels(a.data) if x.image_id == a.id)
    px = cv2.imread(str(lab.image_path), cv2.IMREAD_UNCHANGED)
    if px is None or px.ndim != 2 or px.dtype != np.uint8:
        raise SystemExit(f"{lab.image_path}: expected an 8-bit greyscale PNG")
    load_pixels(lab)  # the tool reads the PNG (checks it is a usable film)
    sop = generate_uid(entropy_srcs=["cpak-real-sample", a.id, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["cpak-cli-real-sample-impl"])
    ds = FileDataset(str(a.out), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = DX_PRESENTATION
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["cpak-real-sample", a.id, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["cpak-real-sample", a.id, "series"])
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientName = f"EOS^{a.id}"
    ds.PatientID = f"EOS-{a.id}"
    ds.StudyDescription = "LONG LEG STANDING AP (real EOS film, FNNDSC/pl-lld, MIT licence)"
    ds.ImageComments = "Real de-identified pediatric EOS film from FNNDSC/pl-lld (MIT licence); see sample_data/README.md"
    ds.BodyPartExamined = "LOWER LIMB"
    ds.ViewPosition = "AP"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(px.shape[0]), int(px.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelSpacing = [f"{lab.spacing_mm[0]:.6g}", f"{lab.spacing_mm[1]:.6g}"]
    ds.PixelData = np.ascontiguousarray(px).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    atomic_write_bytes(a.out, buf.getvalue())
    labels = {"image": a.out.name, "pixel_spacing_mm": list(lab.spacing_mm), "source": f"real-eos id {a.id}",
              "point_meaning": {"hip": "top of the femoral head",
                                "knee": "knee point as labelled (medial of the knee centre on this set)",
                                "ankle": "centre of the tibial plafond"},
              "legs_by_image_side": {("imgleft" if (s == "right") == lab.patient_right_on_image_left else "imgright"): pts
                                     for s, pts in lab.legs.items()}}
    atomic_write_text(a.out.with_suffix(".labels.json"), json.dumps(labels, indent=2) + "\n")
    print(f"wrote {a.out} ({px.shape[1]}x{px.shape[0]}, {lab.spacing_mm[0]:g} mm)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
