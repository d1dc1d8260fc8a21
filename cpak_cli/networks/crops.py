"""Joint crops: one affine per crop, used both to resample the image and to map points back.

A crop of size ``S x S`` has pixel ``(u, v)`` (u = column, v = row, origin at the centre of the
crop's top-left pixel). The crop covers the box ``[x0, y0, x1, y1]`` of the original image
(pixel coordinates, see docs/conventions.md). Crop pixel ``(u, v)`` has its centre at image point

    x = x0 + (u + 0.5) * (x1 - x0) / S        (x = x1 - (u + 0.5) * (x1 - x0) / S when mirrored)
    y = y0 + (v + 0.5) * (y1 - y0) / S

Left legs are mirrored so that each model channel means the same anatomical landmark on both
sides. ``matrix`` is the 2x3 affine crop -> image; every mapping in the project goes through it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PAPER_INPUT_SIZE = 512
PAPER_MASK_RADIUS = 15.0


def mask_radius(size: int) -> float:
    """Disc radius in crop pixels: the paper's 15 px at 512, scaled with the input size."""
    return PAPER_MASK_RADIUS * size / PAPER_INPUT_SIZE


def crop_matrix(box: Sequence[float], size: int, mirror: bool = False) -> np.ndarray:
    """2x3 affine mapping crop pixel ``(u, v, 1)`` of a ``size x size`` crop to image pixel ``(x, y)``."""
    return frame_matrix(box, size, size, mirror)


def frame_matrix(box: Sequence[float], width: int, height: int, mirror: bool = False) -> np.ndarray:
    """2x3 affine mapping pixel ``(u, v, 1)`` of a ``width x height`` resampled frame of ``box``
    to image pixel ``(x, y)`` (the general, non-square form of :func:`crop_matrix`)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    sx = (x1 - x0) / width
    sy = (y1 - y0) / height
    if mirror:
        return np.array([[-sx, 0.0, x1 - 0.5 * sx], [0.0, sy, y0 + 0.5 * sy]])
    return np.array([[sx, 0.0, x0 + 0.5 * sx], [0.0, sy, y0 + 0.5 * sy]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Affine ``outer o inner`` (apply ``inner`` first), both 2x3."""
    a = np.vstack([outer, [0.0, 0.0, 1.0]])
    b = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (a @ b)[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to ``(N, 2)`` points; NaN points stay NaN."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def crop_to_image(points_uv: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop pixel points ``(u, v)`` to original-image pixel points ``(x, y)``."""
    return apply(matrix, points_uv)


def image_to_crop(points_xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Original-image pixel points ``(x, y)`` to crop pixel points ``(u, v)``."""
    return apply(invert(matrix), points_xy)


#: A crop that down-samples an image that decodes on demand by at least twice this reads a view
#: of it reduced by a power of two that still has this many view pixels per crop pixel (the
#: Gaussian low-pass below then still does most of the anti-aliasing).
WINDOW_OVERSAMPLING = 1.25


def frame_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of a crop given as its side (square) or as ``(width, height)``."""
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def steady_scale(scale: float) -> float:
    """``scale`` (film pixels per crop pixel) rounded to 9 significant digits, for the branch
    decisions of :func:`sample_crop` (blur or not, which reduced level): a box whose size lands
    exactly on a threshold (a round size in mm on a round pixel spacing) then takes the same
    branch whatever the last bits of the arithmetic upstream (detector, device, threads); a
    decision flipped by 1e-16 moved landmarks by up to 0.3 mm."""
    return float(f"{scale:.9g}")


def sample_crop(image: Any, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample ``image`` through the crop affine into a ``size x size`` float32 crop (``size``
    may be ``(width, height)`` for a non-square frame).

    An image with a ``sample(matrix, size)`` method makes the crop itself and its answer is
    returned (:class:`cpak_cli.input.held.HeldFilm`: this function run in the decode worker
    that holds the film). Otherwise ``image`` is a 2-D float array, or an image that decodes its
    pixels on demand: anything with
    a ``window(xa, ya, xb, yb)`` method returning pixels ``[ya:yb, xa:xb]`` as float32 with 0
    outside the image (:class:`cpak_cli.input.film_source.FilmSource`); only the window the crop
    needs is read. When such an image also offers ``reduced(max_factor)`` views and the crop
    down-samples by ``2 * WINDOW_OVERSAMPLING`` or more, the window is read from a view
    ``2**k`` times smaller (the wavelet's low-pass band) holding at least ``WINDOW_OVERSAMPLING``
    view pixels per crop pixel; otherwise the crop is the same as from the whole array.

    Out-of-image area reads as 0. When the crop is smaller than the box (down-sampling), the
    source window is low-pass filtered first (Gaussian, sigma = 0.4 x scale) against aliasing.
    """
    import cv2

    if hasattr(image, "sample"):
        return np.asarray(image.sample(matrix, size), dtype=np.float32)
    m = np.asarray(matrix, dtype=np.float64)
    width, height = frame_size(size)
    corners = apply(m, np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]]))
    scale = max(abs(m[0, 0]) + abs(m[0, 1]), abs(m[1, 0]) + abs(m[1, 1]))
    steady = steady_scale(scale)
    if hasattr(image, "reduced") and steady >= 2 * WINDOW_OVERSAMPLING:
        from cpak_cli.input.film_source import ViewLost

        view = image.reduced(steady / WINDOW_OVERSAMPLING)
        if view is not None:
            try:
                return sample_crop(view, compose(invert(view.to_image), m), size)
            except ViewLost:  # the source fell back to its full decode meanwhile
                pass
    pad = int(np.ceil(2 * max(scale, 1.0))) + 2
    xa = int(np.floor(corners[:, 0].min())) - pad
    ya = int(np.floor(corners[:, 1].min())) - pad
    xb = int(np.ceil(corners[:, 0].max())) + pad + 1
    yb = int(np.ceil(corners[:, 1].max())) + pad + 1
    window = read_window(image, xa, ya, xb, yb)
    if steady > 1.25:
        sigma = 0.4 * scale
        window = cv2.GaussianBlur(window, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    shifted = m.copy()
    shifted[:, 2] -= (xa, ya)
    out = cv2.warpAffine(
        window,
        shifted.astype(np.float64),
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return out.astype(np.float32, copy=False)


def read_window(image: Any, xa: int, ya: int, xb: int, yb: int) -> np.ndarray:
    """Pixels ``[ya:yb, xa:xb]`` of ``image`` as a new float32 array, 0 outside the image;
    ``image`` is a 2-D array or has a ``window`` method (see :func:`sample_crop`)."""
    if hasattr(image, "window"):
        out = np.asarray(image.window(xa, ya, xb, yb), dtype=np.float32)
        if out.shape != (yb - ya, xb - xa):
            raise ValueError(f"window of {out.shape} pixels, expected {(yb - ya, xb - xa)}")
        return out
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    window: np.ndarray = np.zeros((yb - ya, xb - xa), dtype=np.float32)
    sx0, sy0, sx1, sy1 = max(xa, 0), max(ya, 0), min(xb, w), min(yb, h)
    if sx0 < sx1 and sy0 < sy1:
        window[sy0 - ya : sy1 - ya, sx0 - xa : sx1 - xa] = img[sy0:sy1, sx0:sx1]
    return window


NORM_MODES = ("max", "minmax")


def normalize_crop(crop: np.ndarray, mode: str = "max") -> np.ndarray:
    """Intensities to [0, 1].

    ``"max"``: divide by the crop's maximum (the paper). ``"minmax"``: stretch the crop's 0.5th to
    99.5th percentile to [0, 1] and clip, which restores contrast in crops that a narrow VOI window
    has pushed to one end of the range (a thick hip, a bright pelvis). A flat crop becomes zeros.
    """
    crop = np.clip(np.asarray(crop, dtype=np.float32), 0.0, None)
    if not crop.size:
        return crop
    if mode == "minmax":
        lo, hi = np.percentile(crop, [0.5, 99.5])
        if hi - lo <= 1e-6:
            return np.zeros_like(crop)
        return np.clip((crop - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if mode != "max":
        raise ValueError(f"unknown normalisation {mode!r}; use one of {NORM_MODES}")
    peak = float(crop.max())
    return crop / peak if peak > 0 else crop


def disc_masks(points_uv: np.ndarray, size: int | tuple[int, int], radius: float) -> np.ndarray:
    """One binary disc per point, shape ``(C, height, width)`` float32 (``size`` is the side of a
    square crop or ``(width, height)``); NaN points give empty masks.

    A crop pixel is foreground when its centre lies within ``radius`` of the point.
    """
    pts = np.asarray(points_uv, dtype=np.float64).reshape(-1, 2)
    width, height = frame_size(size)
    gx = np.arange(width, dtype=np.float64)
    gy = np.arange(height, dtype=np.float64)
    out = np.zeros((len(pts), height, width), dtype=np.float32)
    for i, (u, v) in enumerate(pts):
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        d2 = (gx[None, :] - u) ** 2 + (gy[:, None] - v) ** 2
        out[i] = d2 <= radius * radius
    return out


def needs_mirror(side: str, patient_right_on_image_left: bool = True) -> bool:
    """Whether a crop of this leg is mirrored so that lateral points to crop-left (small u).

    The patient's right leg on a standard AP film (patient's right on the image left) has its
    lateral side towards small x and is not mirrored; the left leg is. A film displayed the
    other way round swaps that.
    """
    return (side == "left") == bool(patient_right_on_image_left)
