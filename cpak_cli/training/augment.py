"""Domain randomisation of training crops: make the phantom (and one real set) look like the
radiographs of many systems.

Real long-leg films differ from site to site in ways that carry no anatomy: pixel spacing
(0.1-1.2 mm), bit depth (8 to 16 bits), the detector response and the vendor's processing chain
(log or linear response, gamma, VOI windows that clip, unsharp masking / edge enhancement,
CLAHE-like local contrast, large-kernel "equalisation"), heel effect and soft-tissue thickness
(low-frequency intensity fields), quantum noise, blur, JPEG compression. A network trained on one
look learns that look; :func:`domain_randomize` draws a different chain for every crop so that it
has to learn the anatomy.

All functions take and return float32 images in ``[0, 1]`` (bone bright) and are pure functions
of the image and the random generator. numpy + OpenCV only (no torch): they run in data workers.
"""

from __future__ import annotations

import math

import numpy as np

#: Film pixel spacings simulated by the resolution step (mm): log-uniform in this range.
FILM_SPACING_MM = (0.1, 1.2)


def _lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(x, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT)


def simulate_resolution(x: np.ndarray, mm_per_px: float, film_mm: float) -> np.ndarray:
    """The crop as a film of pixel spacing ``film_mm`` would show it: area-averaged down to that
    spacing, then interpolated back to the crop grid (``mm_per_px`` = the crop's own scale).
    A film finer than the crop changes nothing."""
    import cv2

    f = float(film_mm) / max(float(mm_per_px), 1e-6)
    if f <= 1.05:
        return x
    h, w = x.shape
    small = cv2.resize(x, (max(2, int(round(w / f))), max(2, int(round(h / f)))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def tone_curve(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random monotone response: gamma, log/exp, or a sigmoid VOI window (may clip)."""
    kind = rng.integers(0, 4)
    if kind == 0:  # gamma
        g = math.exp(rng.uniform(math.log(0.45), math.log(2.2)))
        return np.power(np.clip(x, 0, 1), g).astype(np.float32)
    if kind == 1:  # log-like (compresses the bright end) or exp-like (expands it)
        a = math.exp(rng.uniform(math.log(0.5), math.log(30.0)))
        if rng.random() < 0.5:
            return (np.log1p(a * x) / math.log1p(a)).astype(np.float32)
        return (np.expm1(a * x / 4.0) / math.expm1(a / 4.0)).astype(np.float32)
    if kind == 2:  # sigmoid VOI window
        c = rng.uniform(0.25, 0.75)
        wdt = math.exp(rng.uniform(math.log(0.15), math.log(1.2)))
        y = 1.0 / (1.0 + np.exp(-(x - c) / (wdt / 6.0)))
        lo, hi = 1.0 / (1.0 + math.exp(c / (wdt / 6.0))), 1.0 / (1.0 + math.exp(-(1 - c) / (wdt / 6.0)))
        return ((y - lo) / max(hi - lo, 1e-6)).astype(np.float32)
    # linear window that clips
    lo = rng.uniform(0.0, 0.35)
    hi = rng.uniform(0.65, 1.0)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def unsharp(x: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Unsharp masking / large-kernel equalisation: ``x + a * (x - blur(x, sigma))``."""
    sigma = math.exp(rng.uniform(math.log(1.5), math.log(max(2.0, size / 6.0))))
    a = rng.uniform(0.3, 2.0)
    return (x + a * (x - _lowpass(x, sigma))).astype(np.float32)


def clahe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CLAHE-like local contrast (OpenCV CLAHE on an 8-bit copy)."""
    import cv2

    tiles = int(rng.integers(2, 9))
    op = cv2.createCLAHE(clipLimit=float(rng.uniform(1.0, 4.0)), tileGridSize=(tiles, tiles))
    u8 = (np.clip(x, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return op.apply(u8).astype(np.float32) / 255.0


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A random low-frequency field (heel effect, soft-tissue thickness), mean 0, +-amplitude."""
    import cv2

    h, w = shape
    g = rng.normal(0.0, 1.0, size=(3, 3)).astype(np.float32)
    field = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    m = float(np.abs(field).max())
    return (field / m * amplitude).astype(np.float32) if m > 0 else np.zeros(shape, np.float32)


def jpeg(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """8-bit JPEG round trip at a random quality (30-95)."""
    import cv2

    u8 = (np.clip(x, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [int(cv2.IMWRITE_JPEG_QUALITY), int(rng.integers(30, 96))])
    if not ok:
        return x
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if dec is None:
        return x
    return dec.astype(np.float32) / 255.0


def domain_randomize(x: np.ndarray, rng: np.random.Generator, mm_per_px: float | None, strength: float = 1.0) -> np.ndarray:
    """A random imaging chain applied to one crop (float32 ``[0, 1]`` in and out).

    ``mm_per_px``: the crop's scale in mm per pixel (None skips the resolution step);
    ``strength``: multiplies every step's probability (0 returns ``x`` unchanged). Steps, each
    drawn independently: film resolution (0.1-1.2 mm), tone curve, unsharp masking or CLAHE,
    low-frequency field, blur, noise (Gaussian + signal-dependent), 8-bit quantisation or JPEG.
    """
    if strength <= 0:
        return x
    p = lambda q: rng.random() < min(1.0, q * strength)  # noqa: E731
    size = max(x.shape)
    y: np.ndarray = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    if mm_per_px is not None and p(0.6):
        lo, hi = FILM_SPACING_MM
        y = simulate_resolution(y, mm_per_px, math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if p(0.8):
        y = tone_curve(y, rng)
    if p(0.35):
        y = unsharp(y, rng, size)
    elif p(0.25):
        y = clahe(y, rng)
    if p(0.3):
        y = y + smooth_field(y.shape, rng, rng.uniform(0.05, 0.3))
    if p(0.25):
        y = _lowpass(y, rng.uniform(0.4, 1.8))
    if p(0.5):
        s = rng.uniform(0.0, 0.05)
        y = y + rng.normal(0.0, 1.0, size=y.shape).astype(np.float32) * (s * np.sqrt(np.clip(y, 0.02, 1.0)))
    y = np.clip(y, 0.0, 1.0)
    if p(0.2):
        y = jpeg(y, rng)
    elif p(0.3):
        y = np.round(y * 255.0) / 255.0
    return y.astype(np.float32)


__all__ = ["FILM_SPACING_MM", "simulate_resolution", "tone_curve", "unsharp", "clahe", "smooth_field", "jpeg",
           "domain_randomize"]
