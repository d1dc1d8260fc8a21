"""Seeded fuzz test of :func:`cpak_cli.input.loader.load_image` (issue 12 item 6).

Small DICOMs (built with the one factory, :func:`tests.factories.make_dx`) are mutated
byte-wise (bit flips, truncations, inserted / deleted / overwritten runs) and header-wise
(Rows, Columns, BitsAllocated, BitsStored, HighBit, PixelRepresentation, SamplesPerPixel,
NumberOfFrames, PixelSpacing, PhotometricInterpretation, TransferSyntaxUID set to odd or hostile
values, or deleted; PixelData longer/shorter/odd/empty). Every case must keep the loader's
contract: a :class:`LoadedImage` (float32, 2-D, finite, in [0, 1], positive finite spacing) or a
one-line :class:`CpakInputError` naming the file. Anything else (another exception, a hang, a NaN
image) fails with the case's seed.

Replay one case: ``CPAK_FUZZ_SEED=<seed> CPAK_FUZZ_CASES=1 pytest tests/input/test_fuzz_dicom.py``
(case seeds are consecutive from ``CPAK_FUZZ_SEED``; ``CPAK_FUZZ_CASES`` sets how many).
"""

from __future__ import annotations

import copy
import io
import math
import os
import random
import signal
import struct
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.config import disable_value_validation
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import RLELossless

from cpak_cli.errors import CpakInputError
from cpak_cli.input.loader import LoadedImage, load_image
from tests.factories import encode_jpeg_lossless, gradient, make_dx

# the hostile values make pydicom warn (invalid VR values, odd lengths): expected here
pytestmark = pytest.mark.filterwarnings("ignore")

FUZZ_SEED = int(os.environ.get("CPAK_FUZZ_SEED", "1206"))
FUZZ_CASES = int(os.environ.get("CPAK_FUZZ_CASES", "400"))
CASE_TIMEOUT_S = 5.0  # one case longer than this is a hang
TOTAL_BUDGET_S = 60.0  # generous ceiling for slow CI; the suite normally takes a few seconds


# --------------------------------------------------------------------------------- base files


def _fixed_uids(ds: Dataset) -> Dataset:
    """Fixed UIDs instead of random ones, so that a seed replays the same bytes."""
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    return ds


def _bases() -> dict[str, Dataset]:
    small = gradient(24, 16, scale=7)
    out = {
        "u16_window": make_dx(pixels=small, window=(80.0, 120.0)),
        "u8_mono1_imager": make_dx(
            pixels=(small % 256).astype(np.uint8), photometric="MONOCHROME1", pixel_spacing=None,
            imager_spacing=(0.2, 0.2), magnification=1.1, patient_orientation=["R", "F"],
        ),
        "s12_rescale": make_dx(
            pixels=((small.astype(np.int32) - 100) & 0x0FFF).astype(np.uint16), bits_stored=12,
            signed=True, rescale=(2.0, -1000.0),
        ),
    }
    rle = make_dx(pixels=small)
    rle.compress(RLELossless)
    out["rle"] = rle
    jll = make_dx(pixels=(small % 4096).astype(np.uint16), bits_stored=12)
    jll.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.70"  # JPEG Lossless SV1
    jll.PixelData = encapsulate([encode_jpeg_lossless(small % 4096, precision=12)])
    jll["PixelData"].VR = "OB"
    out["jpeg_lossless"] = jll
    return {k: _fixed_uids(v) for k, v in out.items()}


def _to_bytes(ds: Dataset, raw_implicit: bool = False) -> bytes:
    """Preamble, file meta (whatever TransferSyntaxUID it declares) and the data set encoded
    explicit VR little endian as built (so a hostile UID does not change the bytes below it)."""
    with disable_value_validation():
        if raw_implicit:  # a raw data set: no preamble, no file meta
            ds = copy.deepcopy(ds)
            del ds.file_meta
            buf = io.BytesIO()
            ds.save_as(buf, implicit_vr=True, little_endian=True)
            return buf.getvalue()
        fp = DicomBytesIO()
        fp.write(b"\x00" * 128 + b"DICM")
        meta = copy.deepcopy(ds.file_meta)
        if not meta.get("TransferSyntaxUID"):  # no group length then: it cannot be written
            meta.pop("FileMetaInformationGroupLength", None)
        write_file_meta_info(fp, meta, enforce_standard=bool(meta.get("TransferSyntaxUID")))
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)
        return fp.getvalue()


BASE_BYTES = {name: _to_bytes(ds) for name, ds in _bases().items()}
# the bases as read back: their elements stay raw until touched, and a raw element put in by a
# mutation is written as its bytes (so 'abc' can be a PixelSpacing and 70000 a Rows)
BASES = {name: dcmread(io.BytesIO(data)) for name, data in BASE_BYTES.items()}
BASE_BYTES["raw_implicit"] = _to_bytes(BASES["u16_window"], raw_implicit=True)


# --------------------------------------------------------------------------------- mutations


def _byte_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "overwrite", "zero_tail"])
    n = len(b)
    if kind == "flip":
        k = rng.randint(1, 16)
        # bias towards the header (first ~400 bytes hold the file meta and image description)
        for _ in range(k):
            i = rng.randrange(min(n, 600)) if rng.random() < 0.7 else rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"flip {k} bits"
    if kind == "truncate":
        cut = rng.randrange(1, n)
        return bytes(b[:cut]), f"truncate at {cut}"
    i = rng.randrange(n)
    run = rng.choice([1, 2, 3, 4, 7, 8, 16, 64, 300])
    if kind == "insert":
        filler = rng.choice([b"\x00", b"\xff", bytes([rng.randrange(256)])])
        ins = filler * run if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(run))
        return bytes(b[:i] + ins + b[i:]), f"insert {run} bytes at {i}"
    if kind == "delete":
        return bytes(b[:i] + b[i + run:]), f"delete {run} bytes at {i}"
    if kind == "overwrite":
        end = min(n, i + run)
        b[i:end] = bytes(rng.randrange(256) for _ in range(end - i))
        return bytes(b), f"overwrite {end - i} bytes at {i}"
    start = rng.randrange(n // 2, n)
    b[start:] = bytes(n - start)
    return bytes(b), f"zero from {start}"


_US_HOSTILE = [0, 1, 2, 3, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 256, 32767, 32768, 65535]
_FIELDS: dict[str, tuple[str, Callable[[random.Random], Any]]] = {
    "Rows": ("US", lambda r: r.choice(_US_HOSTILE + [23, 25, 48])),
    "Columns": ("US", lambda r: r.choice(_US_HOSTILE + [15, 17, 32])),
    "BitsAllocated": ("US", lambda r: r.choice(_US_HOSTILE)),
    "BitsStored": ("US", lambda r: r.choice(_US_HOSTILE)),
    "HighBit": ("US", lambda r: r.choice(_US_HOSTILE)),
    "PixelRepresentation": ("US", lambda r: r.choice([0, 1, 2, 255, 65535])),
    "SamplesPerPixel": ("US", lambda r: r.choice([0, 1, 2, 3, 4, 65535])),
    "PlanarConfiguration": ("US", lambda r: r.choice([0, 1, 2, 65535])),
    "NumberOfFrames": (
        "IS", lambda r: r.choice(["0", "1", "2", "-1", "", "abc", "1e3", "2147483647", "99999999999", " 1 "]),
    ),
    "PixelSpacing": (
        "DS",
        lambda r: r.choice([
            "0", "-0.15\\0.15", "0.15", "0.15\\0.15\\0.15", "nan\\nan", "inf\\0.15", "1e308\\1e308",
            "1e-308\\1e-308", "abc\\def", "", "0.15\\", "\\", "5\\5", "0.0001\\0.0001", "-inf\\-inf",
        ]),
    ),
    "ImagerPixelSpacing": ("DS", lambda r: r.choice(["0\\0", "nan\\0.2", "0.2", "-1\\-1", "x"])),
    "EstimatedRadiographicMagnificationFactor": ("DS", lambda r: r.choice(["0", "-1", "nan", "inf", "1e-300", "x"])),
    "PhotometricInterpretation": (
        "CS",
        lambda r: r.choice([
            "", "MONOCHROME1", "MONOCHROME2", "MONOCHROME3", "RGB", "PALETTE COLOR", "YBR_FULL",
            "monochrome2", "MONOCHROME2\\MONOCHROME1", "\x00\x00", "HSV",
        ]),
    ),
    "RescaleSlope": ("DS", lambda r: r.choice(["0", "-1", "nan", "inf", "1e308", "-1e308", "x", ""])),
    "RescaleIntercept": ("DS", lambda r: r.choice(["nan", "inf", "-1e308", "1e308", "x", ""])),
    "WindowCenter": ("DS", lambda r: r.choice(["nan", "inf", "-1e308", "1e308", "0", "x", ""])),
    "WindowWidth": ("DS", lambda r: r.choice(["nan", "inf", "0", "-5", "1", "1e-300", "1e308", "x", ""])),
    "VOILUTFunction": ("CS", lambda r: r.choice(["SIGMOID", "LINEAR_EXACT", "LINEAR", "BOGUS", ""])),
    "PatientOrientation": ("CS", lambda r: r.choice(["", "R\\F", "F\\R", "A\\P", "X\\Y", "R", "R\\F\\L", "H\\L"])),
}
_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # implicit VR little endian (data still explicit)
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated (data not deflated)
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2
    "1.2.3.4.5",
    "",
    "not a uid",
]


def _set(rng: random.Random, ds: Dataset, keyword: str, vr: str, value: Any) -> None:
    """Put ``value`` in as a raw element (bytes as written: no conversion, no validation)."""
    tag = Tag(tag_for_keyword(keyword))
    if vr == "US":
        raw = struct.pack("<H", value)
    else:
        raw = value.encode("latin-1")
        if len(raw) % 2 and rng.random() < 0.8:  # odd lengths now and then
            raw += b" "
    ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)


def _header_mutation(rng: random.Random, ds: Dataset) -> str:
    what = rng.random()
    if what < 0.15:  # pixel data length mismatch
        data = ds.PixelData or b""
        choice = rng.choice(["short1", "half", "empty", "long", "odd", "double"])
        new = {
            "short1": data[:-1], "half": data[: len(data) // 2], "empty": b"", "long": data + b"\x00" * 64,
            "odd": data + b"\x01", "double": data * 2,
        }[choice]
        tag = Tag(0x7FE0, 0x0010)  # raw, defined length: also for encapsulated bases
        ds[tag] = RawDataElement(tag, ds["PixelData"].VR, len(new), new, 0, False, True)
        return f"PixelData {choice} ({len(new)} bytes)"
    if what < 0.27:
        ts = rng.choice(_TRANSFER_SYNTAXES)
        ds.file_meta.TransferSyntaxUID = ts
        return f"TransferSyntaxUID={ts!r}"
    keyword = rng.choice(list(_FIELDS))
    if rng.random() < 0.1:
        if keyword in ds:
            del ds[keyword]
        return f"del {keyword}"
    vr, gen = _FIELDS[keyword]
    value = gen(rng)
    _set(rng, ds, keyword, vr, value)
    return f"{keyword}={value!r}"


def _make_case(seed: int) -> tuple[bytes, str]:
    """The file bytes of case ``seed`` and a description of its mutations (deterministic)."""
    rng = random.Random(seed)
    name = rng.choice(sorted(BASE_BYTES))
    steps: list[str] = [name]
    mode = rng.random()
    if name != "raw_implicit" and mode < 0.6:  # header mutations (sometimes plus bytes)
        ds = copy.deepcopy(BASES[name])
        for _ in range(rng.choice([1, 1, 2, 3])):
            steps.append(_header_mutation(rng, ds))
        data = _to_bytes(ds)
        if rng.random() < 0.2:
            data, step = _byte_mutation(rng, data)
            steps.append(step)
    else:
        data = BASE_BYTES[name]
        for _ in range(rng.choice([1, 1, 1, 2, 4])):
            data, step = _byte_mutation(rng, data)
            steps.append(step)
    return data, "; ".join(steps)


# --------------------------------------------------------------------------------- contract


class _Hang(BaseException):
    """Raised by the alarm: a BaseException so that no ``except Exception`` swallows it."""


def _check_contract(path: Path, seed: int, what: str) -> str:
    """Load ``path``; return "ok"/"error", or raise AssertionError naming the seed."""
    tag = f"fuzz case seed={seed} ({what})"
    try:
        img = load_image(path)
    except CpakInputError as exc:
        msg = str(exc)
        assert "\n" not in msg and "\r" not in msg, f"{tag}: multi-line error {msg!r}"
        assert str(path) in msg, f"{tag}: error does not name the file: {msg!r}"
        return "error"
    except _Hang:
        raise
    except BaseException as exc:  # noqa: BLE001 - anything else breaks the contract
        raise AssertionError(f"{tag}: {type(exc).__name__} escaped load_image: {exc}") from exc
    assert isinstance(img, LoadedImage), f"{tag}: returned {type(img)}"
    px = img.pixels
    assert isinstance(px, np.ndarray) and px.dtype == np.float32, f"{tag}: pixels {type(px)} {getattr(px, 'dtype', '')}"
    assert px.ndim == 2 and px.shape[0] >= 2 and px.shape[1] >= 2, f"{tag}: shape {px.shape}"
    assert np.isfinite(px).all(), f"{tag}: non-finite pixels"
    assert px.min() >= 0.0 and px.max() <= 1.0, f"{tag}: pixels outside [0, 1]: {px.min()}..{px.max()}"
    sp = img.spacing_mm
    assert len(sp) == 2 and all(math.isfinite(v) and v > 0 for v in sp), f"{tag}: spacing {sp}"
    assert (img.rows, img.cols) == px.shape, f"{tag}: rows/cols {img.rows}x{img.cols} vs {px.shape}"
    return "ok"


def _run_case(seed: int, tmp_path: Path) -> str:
    data, what = _make_case(seed)
    path = tmp_path / f"fuzz_{seed}.dcm"
    path.write_bytes(data)
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        def _on_alarm(signum: int, frame: Any) -> None:
            raise _Hang()

        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    t0 = time.perf_counter()
    try:
        outcome = _check_contract(path, seed, what)
    except _Hang:
        raise AssertionError(f"fuzz case seed={seed} ({what}): load_image hung > {CASE_TIMEOUT_S} s") from None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    took = time.perf_counter() - t0
    assert took < CASE_TIMEOUT_S, f"fuzz case seed={seed} ({what}): took {took:.1f} s"
    path.unlink()
    return outcome


# Seeds of cases that once broke the contract (replayed whatever CPAK_FUZZ_SEED says).
REGRESSION_SEEDS = (
    1359,  # s12_rescale; RescaleSlope='1e308': min-max span overflowed to inf -> NaN pixels
)


@pytest.mark.parametrize("seed", REGRESSION_SEEDS)
def test_fuzz_regression_seeds(seed: int, tmp_path: Path) -> None:
    _run_case(seed, tmp_path)


@pytest.mark.parametrize("slope", [1e308, -1e308])
def test_huge_rescale_slope_gives_finite_pixels(slope: float, tmp_path: Path) -> None:
    """Regression (found by the fuzzer): modality values spanning more than the float range
    (slope 1e308 on signed 12-bit values) gave NaN pixels from the min-max scaling."""
    pix = ((gradient(24, 16, scale=7).astype(np.int32) - 100) & 0x0FFF).astype(np.uint16)
    path = tmp_path / "huge_slope.dcm"
    make_dx(pixels=pix, bits_stored=12, signed=True, rescale=(slope, 0.0)).save_as(path, enforce_file_format=True)
    img = load_image(path)
    assert np.isfinite(img.pixels).all() and img.pixels.min() == 0.0 and img.pixels.max() == 1.0


def test_bases_load(tmp_path: Path) -> None:
    """The unmutated base files load (so the mutations start from valid films)."""
    for name, data in BASE_BYTES.items():
        p = tmp_path / f"{name}.dcm"
        p.write_bytes(data)
        img = load_image(p)
        assert img.pixels.shape in ((24, 16), (16, 24)), name


def test_fuzz_load_image_contract(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    outcomes = {"ok": 0, "error": 0}
    for seed in range(FUZZ_SEED, FUZZ_SEED + FUZZ_CASES):
        outcomes[_run_case(seed, tmp_path)] += 1
        elapsed = time.perf_counter() - t0
        assert elapsed < TOTAL_BUDGET_S, f"fuzzing took over {TOTAL_BUDGET_S} s (at seed={seed})"
    # both outcomes occur: the mutations are neither all harmless nor all fatal
    if FUZZ_CASES >= 100:
        assert outcomes["ok"] > 0 and outcomes["error"] > 0, outcomes
