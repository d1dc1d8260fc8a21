"""Phantom options and deterministic parameter sampling.

Every random draw of a case comes from ``numpy.random.default_rng([seed, index, stream])``
so a case depends only on ``(seed, index, options)``, never on the order of generation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

# aHKA classes (varus, neutral, valgus) x JLO classes (apex distal, neutral, apex proximal)
AHKA_RANGES = ((-9.0, -2.0), (-2.0, 2.0), (2.0, 9.0))
JLO_RANGES = ((166.0, 177.0), (177.0, 183.0), (183.0, 192.0))
ANGLE_MIN, ANGLE_MAX = 80.0, 97.0
BORDER_MIN = 0.02  # borderline cases stay this far (deg) from the boundary itself

SPACINGS = (0.100, 0.125, 0.139, 0.143, 0.148, 0.150, 0.160, 0.175, 0.200)


@dataclass
class PhantomOptions:
    """Generation options (all opt-in features default to off / realistic rates).

    scale: multiplies the pixel count per mm (0.1 -> 10x coarser spacing, tiny image).
    max_size: if set, the spacing is enlarged so that ``max(rows, cols) <= max_size``.
    spacing_mm: force the effective spacing ``(row_mm, col_mm)`` (before ``scale``).
    compression: "none" | "rle" | "jpeg2000" | "mixed" (DICOM transfer syntax).
    single_leg_fraction: probability of a single-leg film (one leg in the field).
    missing_ankle_fraction: probability that the film is cropped above the ankles.
    flipped_fraction: probability of a flipped film (patient's right on image right, "R\\F").
    monochrome1_fraction: probability of MONOCHROME1 photometric interpretation.
    imager_spacing_fraction: probability of ImagerPixelSpacing + magnification tags.
    anisotropic_fraction: probability of slightly anisotropic pixels (0.5-3 %).
    tka_fraction / plate_fraction: per-leg probability of a knee arthroplasty / shaft plate.
    distractors: enable calibration ball, L/R marker, ruler, burned-in text, stitching seam.
    borderline_fraction: per-leg probability of aHKA or JLO within 0.5 deg of a CPAK boundary.
    noise: quantum noise on/off (off gives a noise-free render, useful for tests).
    bits_stored: force BitsStored (8..16); default: drawn from 12, 14, 15, 16.
    variety: widen the phantom towards real films (off: output byte-identical to before):
        paediatric anatomy with open physes (~40 % of cases), adult osteoarthritis (~30 % of
        adult legs), thin..obese soft tissue, knee flexion, wide limb rotation, extra hardware,
        gonad shields, collimation, film-level look chains (log/linear-ish response, gamma,
        unsharp masking, local contrast, clipping VOI windows, EOS look), 8..16 bits stored.
        Every extra draw comes from its own rng stream (20..24), so the base draws are shared.
    """

    scale: float = 1.0
    max_size: int | None = None
    spacing_mm: tuple[float, float] | None = None
    compression: str = "none"
    single_leg_fraction: float = 0.0
    missing_ankle_fraction: float = 0.0
    flipped_fraction: float = 0.0
    monochrome1_fraction: float = 0.2
    imager_spacing_fraction: float = 0.5
    anisotropic_fraction: float = 0.1
    tka_fraction: float = 0.06
    plate_fraction: float = 0.03
    distractors: bool = True
    borderline_fraction: float = 0.15
    noise: bool = True
    bits_stored: int | None = None
    variety: bool = False

    @classmethod
    def from_kwargs(cls, **kw: Any) -> "PhantomOptions":
        names = {f.name for f in fields(cls)}
        bad = sorted(set(kw) - names)
        if bad:
            raise TypeError(f"unknown phantom option(s): {', '.join(bad)}")
        opt = cls(**kw)
        if opt.spacing_mm is not None:
            opt.spacing_mm = (float(opt.spacing_mm[0]), float(opt.spacing_mm[1]))
        if opt.compression not in ("none", "rle", "jpeg2000", "mixed"):
            raise ValueError(f"compression must be none|rle|jpeg2000|mixed, not {opt.compression!r}")
        if opt.bits_stored is not None and not 8 <= int(opt.bits_stored) <= 16:
            raise ValueError("bits_stored must be within 8..16")
        opt.variety = bool(opt.variety)
        if not opt.scale > 0:
            raise ValueError("scale must be > 0")
        return opt

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["variety"]:
            del d["variety"]  # keep the JSON of variety-off cases exactly as before
        if d["spacing_mm"] is not None:
            d["spacing_mm"] = list(d["spacing_mm"])
        return d


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent generator for one ``(seed, index)`` case and one purpose ``stream``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(stream)])


def target_type(index: int, side: str) -> int:
    """Stratified CPAK type (0..8) of a leg: every 9 consecutive indices cover all types on
    each side; the left leg is shifted by the block number so the pairs vary."""
    if side == "right":
        return index % 9
    return (index + 4 + index // 9) % 9


def _sample_in(rng: np.random.Generator, lo: float, hi: float, cls_idx: int, border: bool,
               lo_open: bool, hi_open: bool) -> float:
    """Sample a value of one class range; ``border`` -> within 0.5 deg of an inner boundary."""
    if border:
        sides = []
        if cls_idx != 0:
            sides.append(lo)
        if cls_idx != 2:
            sides.append(hi)
        b = sides[int(rng.integers(len(sides)))]
        off = rng.uniform(BORDER_MIN, 0.5)
        return b + off if b == lo else b - off
    # interior values: at least 0.5 deg from the class boundaries (so that the borderline
    # fraction is controlled by ``borderline_fraction``)
    lo_i = lo + (0.5 if cls_idx != 0 else 0.0)
    hi_i = hi - (0.5 if cls_idx != 2 else 0.0)
    return float(rng.uniform(lo_i, hi_i))


def sample_angles(rng: np.random.Generator, type_idx: int, borderline_fraction: float
                  ) -> tuple[float, float, bool]:
    """(LDFA, MPTA, borderline) for a target CPAK type index (0..8)."""
    ai, ji = type_idx % 3, type_idx // 3
    border = bool(rng.random() < borderline_fraction)
    which = int(rng.integers(2))  # which of aHKA / JLO is borderline
    for _ in range(1000):
        ahka = _sample_in(rng, *AHKA_RANGES[ai], ai, border and which == 0, ai != 0, ai != 2)
        jlo = _sample_in(rng, *JLO_RANGES[ji], ji, border and which == 1, ji != 0, ji != 2)
        # realistic: most knees near the centre of a class; mild shrink toward population mean
        ldfa = (jlo - ahka) / 2.0
        mpta = (jlo + ahka) / 2.0
        if ANGLE_MIN <= ldfa <= ANGLE_MAX and ANGLE_MIN <= mpta <= ANGLE_MAX:
            return ldfa, mpta, border
    raise RuntimeError("could not sample angles")  # pragma: no cover


def quantize_spacing(eff: tuple[float, float], mag: float | None) -> tuple[tuple[float, float], tuple[str, str], str | None]:
    """Round spacing to DICOM DS strings and return (effective spacing as a reader computes
    it, stored strings, magnification string)."""
    if mag is None:
        sr = (f"{eff[0]:.6f}".rstrip("0"), f"{eff[1]:.6f}".rstrip("0"))
        return (float(sr[0]), float(sr[1])), sr, None
    ms = f"{mag:.4f}".rstrip("0")
    m = float(ms)
    sr = (f"{eff[0] * m:.6f}".rstrip("0"), f"{eff[1] * m:.6f}".rstrip("0"))
    return (float(sr[0]) / m, float(sr[1]) / m), sr, ms


def round_up(x: float, q: float) -> float:
    return math.ceil(x / q) * q
