"""Training and validation crops cut from a :class:`~cpak_cli.training.datasets.LegSample` cache.

A training crop is ONE affine from the output crop into the cache:

    output (u, v) --A (random affine, p=0.5)--> crop of the jittered box --crop_matrix(box', S, mirror)-->
    image (x, y) --invert(cache_matrix)--> cache pixel

so the image is resampled once and the disc masks are drawn exactly at
``image_to_crop(landmarks, crop_to_image)``: image and masks move together by construction.
Holds :class:`AugmentOptions` (box jitter as a share of the box side, the paper's affine:
rotation in degrees, scale, translation as a share of ``S``; intensity augmentation), the crops
themselves and :func:`crop_mm_per_px`. Coordinates follow docs/conventions.md. No torch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from cpak_cli.networks import crops
from cpak_cli.training.datasets import LegSample


@dataclass
class AugmentOptions:
    """Training augmentation. ``jitter``: box centre shift up to ``+-jitter * side`` and size
    ``x (1 +- jitter)`` (always on; 0 disables); ``affine_p``: probability of the paper's affine
    (rotation ``+-rotation_deg``, scale ``+-scale``, translation ``+-translate * S``);
    ``intensity``: gamma / contrast / brightness / noise / blur (each with its own probability);
    ``domain``: strength of :func:`cpak_cli.training.augment.domain_randomize` (film resolution, tone curve,
    processing, noise, JPEG; 0 = off, 1 = its default probabilities).
    """

    jitter: float = 0.1
    affine_p: float = 0.5
    rotation_deg: float = 10.0
    scale: float = 0.1
    translate: float = 0.1
    intensity: bool = True
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: float = 0.2
    brightness: float = 0.1
    noise_max: float = 0.03
    blur_max: float = 1.0
    domain: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gamma"] = list(self.gamma)
        return d


NO_AUGMENT = AugmentOptions(jitter=0.0, affine_p=0.0, intensity=False)


# ----------------------------------------------------------------------------- augmentation


def random_affine(rng: np.random.Generator, size: int, aug: AugmentOptions) -> np.ndarray:
    """The paper's affine (rotation, scale, translation) about the crop centre, output -> crop pixel."""
    theta = math.radians(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
    s = rng.uniform(1.0 - aug.scale, 1.0 + aug.scale)
    tx, ty = rng.uniform(-aug.translate, aug.translate, size=2) * size
    c = (size - 1) / 2.0
    ca, sa = math.cos(theta) * s, math.sin(theta) * s
    lin = np.array([[ca, -sa], [sa, ca]])
    t = np.array([c, c]) + np.array([tx, ty]) - lin @ np.array([c, c])
    return np.hstack([lin, t[:, None]])


def jittered_box(box: Sequence[float], rng: np.random.Generator, jitter: float) -> tuple[float, float, float, float]:
    """Box with centre shifted up to ``+-jitter * side`` and size scaled by ``1 +- jitter``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if jitter <= 0:
        return (x0, y0, x1, y1)
    w, h = x1 - x0, y1 - y0
    dx, dy = rng.uniform(-jitter, jitter, size=2)
    f = rng.uniform(1.0 - jitter, 1.0 + jitter)
    cx, cy = (x0 + x1) / 2 + dx * w, (y0 + y1) / 2 + dy * h
    return (cx - f * w / 2, cy - f * h / 2, cx + f * w / 2, cy + f * h / 2)


def intensity_augment(img: np.ndarray, rng: np.random.Generator, aug: AugmentOptions, norm: str = "max",
                      mm_per_px: float | None = None) -> np.ndarray:
    """Domain randomisation (``aug.domain``; ``mm_per_px`` = the crop's scale), then gamma,
    contrast/brightness, slight blur, Gaussian noise on a ``[0, 1]`` crop (float32 out)."""
    import cv2

    x = crops.normalize_crop(img, norm)
    if aug.domain > 0:
        from cpak_cli.training.augment import domain_randomize

        x = crops.normalize_crop(domain_randomize(x, rng, mm_per_px, aug.domain), norm)
    if rng.random() < 0.5:
        lo, hi = aug.gamma
        x = np.power(x, float(math.exp(rng.uniform(math.log(lo), math.log(hi))))).astype(np.float32)
    if rng.random() < 0.5:
        c = rng.uniform(1.0 - aug.contrast, 1.0 + aug.contrast)
        b = rng.uniform(-aug.brightness, aug.brightness)
        m = float(x.mean())
        x = ((x - m) * c + m + b).astype(np.float32)
    if aug.blur_max > 0 and rng.random() < 0.25:
        sigma = rng.uniform(0.3, aug.blur_max)
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    if aug.noise_max > 0 and rng.random() < 0.5:
        x = x + rng.normal(0.0, rng.uniform(0.0, aug.noise_max), size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


@dataclass
class TrainingCrop:
    """One augmented crop: ``image`` (S, S) normalised, ``masks`` (C, S, S) (None when not asked
    for: the partial-label batches draw them on the device), ``points_uv`` (C, 2) landmark crop
    pixels, ``matrix`` crop -> image affine (2x3)."""

    image: np.ndarray
    masks: np.ndarray | None
    points_uv: np.ndarray
    matrix: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def training_crop(
    sample: LegSample, size: int, radius: float | None, aug: AugmentOptions, rng: np.random.Generator, norm: str = "max"
) -> TrainingCrop:
    """Jitter + (p) affine as ONE crop -> cache affine; masks drawn at the transformed landmarks
    (none when ``radius`` is None)."""
    box = jittered_box(sample.box, rng, aug.jitter)
    m_img = crops.crop_matrix(box, size, mirror=sample.mirror)  # crop -> image
    if aug.affine_p > 0 and rng.random() < aug.affine_p:
        m_img = crops.compose(m_img, random_affine(rng, size, aug))
    m_cache = crops.compose(crops.invert(sample.cache_matrix), m_img)  # crop -> cache
    img = crops.sample_crop(sample.cache, m_cache, size)
    to_crop = crops.invert(m_img)  # image -> crop, inverted once for the points and the constraints
    pts_uv = crops.apply(to_crop, sample.points)
    masks = None if radius is None else crops.disc_masks(pts_uv, size, radius)
    mm_per_px = crop_mm_per_px(m_img, sample.spacing_mm)
    img = intensity_augment(img, rng, aug, norm, mm_per_px) if aug.intensity else img
    origin = to_crop[:, 2]  # where the image origin lands: a relative target is a displacement
    cons = [(c, crops.apply(to_crop, np.array([c.xy], dtype=np.float64))[0] - (origin if c.relative else 0.0),
             c.tolerance_mm / mm_per_px) for c in sample.constraints]
    return TrainingCrop(image=crops.normalize_crop(img, norm), masks=masks, points_uv=pts_uv, matrix=m_img,
                        extra={"constraints": cons})


def _crop_linear_mm(matrix: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """The linear part of a crop -> image affine in mm: crop pixels -> mm along columns, rows."""
    return np.asarray(matrix, dtype=np.float64)[:, :2] * np.array([[spacing_mm[1]], [spacing_mm[0]]])


def crop_mm_per_px(matrix: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    """Millimetres per crop pixel of a crop -> image affine (the mean of its two axes)."""
    lin = _crop_linear_mm(matrix, spacing_mm)
    return float(np.mean(np.hypot(lin[0], lin[1])))


def crop_axes_in_image(matrix: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """``(2, 2)`` float32: the linear part of a crop -> image affine in mm, scaled to determinant
    +-1 (a rotation, or a reflection when mirrored): crop-pixel displacement -> the same length
    along the image's columns (x) and rows (y)."""
    lin = _crop_linear_mm(matrix, spacing_mm)
    return (lin / np.sqrt(abs(np.linalg.det(lin)))).astype(np.float32)


#: Validation boxes of partly labelled samples (boxes centred on the label) are moved by up to this
#: share of their side, a fixed amount per leg, so that "predict the crop centre" scores badly.
VALIDATION_SHIFT = 0.12


def validation_crop(sample: LegSample, size: int, norm: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """The un-augmented crop of the box (as inference would see it) and its crop -> image affine.

    A partly labelled sample (``constraints``; its box is centred on its label) is cropped from its
    box shifted by a fixed pseudo-random amount (``VALIDATION_SHIFT``, seeded by image and side)."""
    box = sample.box
    if sample.constraints:
        seed = int(hashlib.sha1(f"{sample.image_id}:{sample.side}".encode("utf-8")).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        x0, y0, x1, y1 = box
        dx, dy = rng.uniform(-VALIDATION_SHIFT, VALIDATION_SHIFT, size=2) * np.array([x1 - x0, y1 - y0])
        box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    m_img = crops.crop_matrix(box, size, mirror=sample.mirror)
    m_cache = crops.compose(crops.invert(sample.cache_matrix), m_img)
    return crops.normalize_crop(crops.sample_crop(sample.cache, m_cache, size), norm), m_img


__all__ = ["AugmentOptions", "NO_AUGMENT", "random_affine", "jittered_box", "intensity_augment", "TrainingCrop",
           "training_crop", "crop_mm_per_px", "crop_axes_in_image", "VALIDATION_SHIFT", "validation_crop"]
