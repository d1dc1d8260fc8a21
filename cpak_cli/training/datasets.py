"""Training samples: one context cache per (image, leg) for one joint, and the augmentation.

Coordinates follow docs/conventions.md: image pixels ``(x, y)``, crop pixels ``(u, v)``, every
crop mapping is a 2x3 affine ``crop -> image`` built with :mod:`cpak_cli.networks.crops`.

A :class:`LegSample` keeps the joint's box enlarged by ``context`` (default 1.5) resampled once to
``round(context * S)`` pixels (the *cache*, float16 in ``[0, 1]``, never mirrored) and the
landmarks in image pixels. A training crop is ONE affine from the output crop into the cache:

    output (u, v) --A (random affine, p=0.5)--> crop of the jittered box --crop_matrix(box', S, mirror)-->
    image (x, y) --invert(cache_matrix)--> cache pixel

so the image is resampled once and the disc masks are drawn exactly at
``image_to_crop(landmarks, crop_to_image)``: image and masks move together by construction.

This module needs numpy/cv2 only (no torch), so data loading can run in spawned worker processes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cpak_cli.core.landmarks import SIDES
from cpak_cli.errors import CpakInputError
from cpak_cli.networks import crops

#: The cache covers the box enlarged by this factor (room for jitter + affine augmentation).
DEFAULT_CONTEXT = 1.5
IMAGE_SUFFIXES = (".dcm", ".dicom", ".DCM", ".png", ".PNG", ".tif", ".tiff", ".TIF", ".TIFF", "")


@dataclass
class LegSample:
    """One leg of one image for one joint.

    ``cache``: ``(Sc, Sc)`` float16 in ``[0, 1]``; ``cache_matrix``: 2x3 cache pixel -> image pixel;
    ``box``: the joint box ``(x0, y0, x1, y1)`` in image pixels; ``points``: ``(C, 2)`` landmark
    image pixels in the model's channel order; ``spacing_mm``: ``(row_mm, col_mm)``;
    ``mirror``: ``crops.needs_mirror(side, patient_right_on_image_left)``.

    Partly labelled legs (real films with three points per leg): a landmark without a label is a
    NaN row of ``points`` (no disc target, no loss on that channel's mask) and ``constraints``
    say what IS known about the unlabelled channels, e.g. "the mid-point of the two ankle
    channels is the labelled ankle centre" (see :class:`Constraint`).
    """

    image_id: str
    side: str
    mirror: bool
    cache: np.ndarray
    cache_matrix: np.ndarray
    box: tuple[float, float, float, float]
    points: np.ndarray
    spacing_mm: tuple[float, float]
    constraints: tuple["Constraint", ...] = ()

    @property
    def points_cache(self) -> np.ndarray:
        """Landmarks in cache pixels."""
        return crops.image_to_crop(self.points, self.cache_matrix)


@dataclass(frozen=True)
class Constraint:
    """A label on a combination of channels: the mean of the probability-weighted centroids of
    ``channels`` (indices into the model's landmarks) should be ``xy`` (image pixels); the error
    counts with ``weights = (w_x, w_y)`` along the crop's axes (0 ignores an axis)."""

    channels: tuple[int, ...]
    xy: tuple[float, float]
    weights: tuple[float, float] = (1.0, 1.0)


#: Most constraints one leg sample may carry (the batch arrays are padded to this).
MAX_CONSTRAINTS = 3


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


# ----------------------------------------------------------------------------- cache building


def _enlarged(box: Sequence[float], factor: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def array_reader(pixels: np.ndarray) -> Callable[[int, int, int, int], np.ndarray]:
    """A window reader over a 2-D array: ``(x0, y0, x1, y1)`` (x1, y1 exclusive) -> float32, 0 outside."""
    img = np.asarray(pixels)

    def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        h, w = img.shape
        out = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx0 < sx1 and sy0 < sy1:
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
        return out

    return read


def make_leg_sample(
    read_window: Callable[[int, int, int, int], np.ndarray],
    image_id: str,
    side: str,
    box: Sequence[float],
    points: np.ndarray,
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool,
    input_size: int,
    context: float = DEFAULT_CONTEXT,
) -> LegSample:
    """Build the context cache of one leg.

    ``read_window(x0, y0, x1, y1)`` returns the image pixels of that integer window (x1, y1
    exclusive, zeros outside the film), so a phantom only renders this region.
    """
    size = int(round(context * input_size))
    cbox = _enlarged(box, context)
    cmat = crops.crop_matrix(cbox, size, mirror=False)
    scale = max(abs(cmat[0, 0]), abs(cmat[1, 1]))
    pad = int(math.ceil(2 * max(scale, 1.0))) + 4
    wx0, wy0 = int(math.floor(cbox[0])) - pad, int(math.floor(cbox[1])) - pad
    wx1, wy1 = int(math.ceil(cbox[2])) + pad + 1, int(math.ceil(cbox[3])) + pad + 1
    window = np.asarray(read_window(wx0, wy0, wx1, wy1), dtype=np.float32)
    shifted = cmat.copy()
    shifted[:, 2] -= (wx0, wy0)
    cache = crops.sample_crop(window, shifted, size)
    peak = float(cache.max()) if cache.size else 0.0
    if peak > 0:
        cache = cache / peak
    return LegSample(
        image_id=image_id,
        side=side,
        mirror=crops.needs_mirror(side, patient_right_on_image_left),
        cache=np.clip(cache, 0.0, 1.0).astype(np.float16),
        cache_matrix=cmat,
        box=tuple(float(v) for v in box),  # type: ignore[arg-type]
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1])),
    )


def leg_samples(
    read_window: Callable[[int, int, int, int], np.ndarray],
    image_id: str,
    landmarks: dict[str, dict[str, Any]],
    boxes: dict[str, dict[str, Any]],
    joint: str,
    names: Sequence[str],
    spacing_mm: tuple[float, float],
    patient_right_on_image_left: bool,
    input_size: int,
    context: float = DEFAULT_CONTEXT,
) -> tuple[list[LegSample], int]:
    """Samples of every leg that has this joint's box and all ``names`` landmarks.

    Returns ``(samples, skipped_legs)``.
    """
    out: list[LegSample] = []
    skipped = 0
    for side in SIDES:
        leg = (landmarks or {}).get(side)
        box = ((boxes or {}).get(side) or {}).get(joint)
        if leg is None and box is None:
            continue
        pts = [None if leg is None else leg.get(n) for n in names]
        if box is None or any(p is None for p in pts):
            skipped += 1
            continue
        points = np.array([[float(p[0]), float(p[1])] for p in pts], dtype=np.float64)  # type: ignore[index]
        if not np.all(np.isfinite(points)):
            skipped += 1
            continue
        out.append(
            make_leg_sample(read_window, image_id, side, box, points, spacing_mm, patient_right_on_image_left,
                            input_size, context)
        )
    return out, skipped


# ----------------------------------------------------------------------------- file data sets


def find_training_files(data_dir: str | Path) -> list[tuple[Path, Path, Path]]:
    """``(image, landmarks.json, boxes.json)`` triples under ``data_dir`` (recursive, sorted).

    Each ``NAME.landmarks.json`` pairs with ``NAME.boxes.json`` in the same folder and the image
    named by its ``"image"`` key (relative to the folder) or ``NAME`` + .dcm/.png/.tif(f)/none.
    """
    from cpak_cli.core.landmarks import read_landmarks

    root = Path(data_dir)
    if not root.is_dir():
        raise CpakInputError(root, "data directory not found")
    triples = []
    for lm in sorted(root.rglob("*.landmarks.json")):
        stem = lm.name[: -len(".landmarks.json")]
        bx = lm.with_name(stem + ".boxes.json")
        if not bx.is_file():
            raise CpakInputError(bx, f"missing boxes file for {lm.name}")
        image: Path | None = None
        named = read_landmarks(lm).image
        if named and (lm.parent / named).is_file():
            image = lm.parent / named
        else:
            for suf in IMAGE_SUFFIXES:
                cand = lm.with_name(stem + suf)
                if cand.is_file():
                    image = cand
                    break
        if image is None:
            raise CpakInputError(lm, f"no image file found for {stem} (tried {named or stem + '.dcm/.png/.tif'})")
        triples.append((image, lm, bx))
    if not triples:
        raise CpakInputError(root, "no *.landmarks.json files found")
    return triples


def load_annotated(image: str | Path, lf: Any, spacing: tuple[float, float] | None = None) -> tuple[Any, bool]:
    """Load an annotated training image: ``(LoadedImage, patient_right_on_image_left)``.

    A DICOM's own spacing is used unless ``spacing`` overrides it; a PNG/TIFF takes the
    landmark file's spacing. When the image does not state its orientation, the landmark file's
    ``patient_right_on_image_left`` decides. Both training loaders (landmarks, detector) use this.
    """
    from cpak_cli.input.loader import is_probably_dicom, load_image

    if spacing is None and not is_probably_dicom(image):
        spacing = lf.spacing_mm
    loaded = load_image(image, pixel_spacing=spacing)
    prl = loaded.patient_right_on_image_left
    if loaded.assumed_orientation and lf.extra.get("patient_right_on_image_left") is not None:
        prl = lf.patient_right_on_image_left
    return loaded, prl


def file_samples(
    args: tuple[str, str, str, str, str, tuple[str, ...], int, float, tuple[float, float] | None],
) -> tuple[list[LegSample], int]:
    """Worker: the samples of one image file (``args`` = image, landmarks, boxes, image_id, joint,
    names, input_size, context, pixel_spacing override)."""
    from cpak_cli.core.landmarks import read_landmarks
    from cpak_cli.input.boxes import read_boxes

    image, lm_path, bx_path, image_id, joint, names, input_size, context, spacing = args
    lf = read_landmarks(lm_path)
    bf = read_boxes(bx_path)
    loaded, prl = load_annotated(image, lf, spacing)
    return leg_samples(
        array_reader(loaded.pixels), image_id, lf.legs, bf.boxes, joint, names, loaded.spacing_mm, prl,
        input_size, context,
    )


def phantom_samples(args: tuple[int, int, dict[str, Any], str, tuple[str, ...], int, float]) -> tuple[list[LegSample], int]:
    """Worker: the samples of one phantom case, rendering only the joint windows (never the film)."""
    # From the generator module itself: once the submodule ``cpak_cli.phantom.render`` has been
    # imported, the package attribute ``render`` names that module, not the function.
    from cpak_cli.phantom.generate import make_case, render

    seed, index, options, joint, names, input_size, context = args
    case = make_case(seed, index, **options)
    rows, cols = int(case.shape[0]), int(case.shape[1])

    def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        out = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, cols), min(y1, rows)
        if sx0 < sx1 and sy0 < sy1:
            roi = np.asarray(render(case, roi=(sx0, sy0, sx1, sy1)), dtype=np.float32)
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = roi
        return out

    return leg_samples(
        read, f"phantom-{seed}-{index:05d}", case.landmarks, case.boxes, joint, names,
        tuple(case.spacing_mm), bool(case.patient_right_on_image_left), input_size, context,  # type: ignore[arg-type]
    )


def run_jobs(fn: Callable[[Any], Any], jobs: list[Any], workers: int, on_done: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(j) for j in jobs]`` in order, over a spawn Pool of ``workers`` processes when > 1."""
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for j in jobs:
            out.append(fn(j))
            if on_done:
                on_done()
        return out
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = []
    with ctx.Pool(processes=min(workers, len(jobs))) as pool:
        for r in pool.imap(fn, jobs, chunksize=1):
            out.append(r)
            if on_done:
                on_done()
    return out


# ----------------------------------------------------------------------------- splits


def _rank_key(image_id: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{image_id}".encode("utf-8")).hexdigest()


def fold_of(image_ids: Sequence[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Deterministic k-fold assignment by image: ids ranked by sha1(seed:id), fold = rank % folds.

    Depends only on the set of ids and the seed (not on their order), so every joint's network
    sees the same partitions of the same images.
    """
    if folds < 2:
        raise CpakInputError(None, f"--folds must be >= 2, got {folds}")
    ordered = sorted(set(image_ids), key=lambda i: (_rank_key(i, seed), i))
    return {iid: r % folds for r, iid in enumerate(ordered)}


def split_ids(
    image_ids: Sequence[str], val_fraction: float = 0.15, folds: int | None = None, fold: int | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """``(train_ids, val_ids)``, disjoint, split by image, deterministic.

    With ``folds``: validation is fold ``fold`` of :func:`fold_of`. Otherwise the first
    ``round(n * val_fraction)`` ids in sha1 rank (at least 1 when the fraction is > 0 and n >= 2).
    """
    ids = sorted(set(image_ids))
    if folds:
        if fold is None or not (0 <= fold < folds):
            raise CpakInputError(None, f"--fold must be in 0..{folds - 1} with --folds {folds}")
        if len(ids) < folds:
            raise CpakInputError(None, f"{len(ids)} images cannot be split into {folds} folds")
        assign = fold_of(ids, folds, seed)
        val = [i for i in ids if assign[i] == fold]
    else:
        if not (0.0 <= val_fraction < 1.0):
            raise CpakInputError(None, f"--val-fraction must be in [0, 1), got {val_fraction}")
        n_val = int(round(len(ids) * val_fraction))
        if val_fraction > 0 and len(ids) >= 2:
            n_val = min(max(n_val, 1), len(ids) - 1)
        ranked = sorted(ids, key=lambda i: (_rank_key(i, seed), i))
        val = sorted(ranked[:n_val])
    vs = set(val)
    return [i for i in ids if i not in vs], val


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
    pts_uv = crops.image_to_crop(sample.points, m_img)
    masks = None if radius is None else crops.disc_masks(pts_uv, size, radius)
    img = intensity_augment(img, rng, aug, norm, crop_mm_per_px(m_img, sample.spacing_mm)) if aug.intensity else img
    cons = [(c, crops.image_to_crop(np.array([c.xy], dtype=np.float64), m_img)[0]) for c in sample.constraints]
    return TrainingCrop(image=crops.normalize_crop(img, norm), masks=masks, points_uv=pts_uv, matrix=m_img,
                        extra={"constraints": cons})


def crop_mm_per_px(matrix: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    """Millimetres per crop pixel of a crop -> image affine (the mean of its two axes)."""
    lin = np.asarray(matrix, dtype=np.float64)[:, :2] * np.array([[spacing_mm[1]], [spacing_mm[0]]])
    return float(np.mean(np.hypot(lin[0], lin[1])))


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


def sample_rng(seed: int, step: int, k: int) -> np.random.Generator:
    """The RNG of the ``k``-th sample of step ``step``: a pure function of (seed, step, k)."""
    return np.random.default_rng([int(seed), int(step), int(k), 0xC9A4])


class BatchOrder:
    """Deterministic sample order: epochs of seeded permutations; batch ``step`` takes positions
    ``step*B .. step*B+B-1`` of that endless sequence (a pure function of seed and step)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([int(self.seed), int(epoch), 0x5EED]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        start = step * self.batch_size
        return [int(self._perm(p // self.n)[p % self.n]) for p in range(start, start + self.batch_size)]


def make_batch(
    samples: Sequence[LegSample], indices: Sequence[int], size: int, radius: float, aug: AugmentOptions,
    seed: int, step: int, norm: str = "max",
) -> tuple[np.ndarray, np.ndarray]:
    """``(x (B, 3, S, S), y (B, C, S, S))`` float32 for one step."""
    xs, ys = [], []
    for k, i in enumerate(indices):
        tc = training_crop(samples[i], size, radius, aug, sample_rng(seed, step, k), norm)
        assert tc.masks is not None
        xs.append(tc.image)
        ys.append(tc.masks)
    x = np.repeat(np.stack(xs)[:, None], 3, axis=1)
    return np.ascontiguousarray(x, dtype=np.float32), np.stack(ys).astype(np.float32)


@dataclass
class PartialBatch:
    """One step's batch for (partly) labelled samples; the disc masks are drawn on the device.

    ``x`` (B, S, S) float16 crops; ``points_uv`` (B, C, 2) landmark crop pixels, NaN where not
    labelled; ``cons_mix`` (B, K, C) channel weights of each constraint (rows sum to 1, zero rows
    unused), ``cons_uv`` (B, K, 2) its target in crop pixels, ``cons_w`` (B, K, 2) axis weights."""

    x: np.ndarray
    points_uv: np.ndarray
    cons_mix: np.ndarray
    cons_uv: np.ndarray
    cons_w: np.ndarray


def make_partial_batch(
    samples: Sequence[LegSample], indices: Sequence[int], size: int, aug: AugmentOptions, seed: int, step: int,
    norm: str = "max",
) -> PartialBatch:
    """The step's crops exactly as :func:`make_batch` draws them (same RNG per sample), with
    labels as points and constraints instead of masks (works for fully labelled samples too)."""
    xs, pts, mix, cuv, cw = [], [], [], [], []
    for k, i in enumerate(indices):
        s = samples[i]
        tc = training_crop(s, size, None, aug, sample_rng(seed, step, k), norm)  # masks are drawn on the device
        c = len(s.points)
        m = np.zeros((MAX_CONSTRAINTS, c), np.float32)
        uv = np.zeros((MAX_CONSTRAINTS, 2), np.float32)
        w = np.zeros((MAX_CONSTRAINTS, 2), np.float32)
        for j, (con, target_uv) in enumerate(tc.extra["constraints"][:MAX_CONSTRAINTS]):
            m[j, list(con.channels)] = 1.0 / len(con.channels)
            uv[j] = target_uv
            w[j] = con.weights
        xs.append(tc.image.astype(np.float16))
        pts.append(tc.points_uv.astype(np.float32))
        mix.append(m)
        cuv.append(uv)
        cw.append(w)
    return PartialBatch(np.stack(xs), np.stack(pts), np.stack(mix), np.stack(cuv), np.stack(cw))


__all__ = [
    "DEFAULT_CONTEXT", "LegSample", "Constraint", "MAX_CONSTRAINTS", "PartialBatch", "make_partial_batch", "crop_mm_per_px",
    "AugmentOptions", "NO_AUGMENT", "array_reader", "make_leg_sample", "leg_samples",
    "find_training_files", "load_annotated", "file_samples", "phantom_samples", "run_jobs", "fold_of", "split_ids",
    "random_affine",
    "jittered_box", "intensity_augment", "TrainingCrop", "training_crop", "validation_crop", "sample_rng",
    "BatchOrder", "make_batch",
]
