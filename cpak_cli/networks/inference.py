"""Landmark inference: crop -> resample -> network -> Method 1-5 -> original pixels -> mm.

Pure numpy parts (:func:`make_crop`, :func:`points_from_probs`) are separate from the torch part
(:func:`cpak_cli.networks.models.predict`) so the coordinate chain can be tested without a network.
Coordinates: crop pixels ``(u, v)``, image pixels ``(x, y)`` (x = column, y = row), see
docs/conventions.md and :mod:`cpak_cli.networks.crops`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from cpak_cli.core.extraction import PointEstimate, extract_points
from cpak_cli.core.geometry import to_mm
from cpak_cli.networks.crops import crop_matrix, crop_to_image, needs_mirror, normalize_crop, sample_crop
from cpak_cli.networks.models import predict


@dataclass(frozen=True)
class CropJob:
    """One joint crop of one leg of one image."""

    image_index: int
    side: str
    joint: str
    box: tuple[float, float, float, float]
    mirror: bool
    matrix: np.ndarray  # 2x3 crop -> image


@dataclass
class LandmarkPrediction:
    """A detected landmark: image pixels ``(x, y)`` (NaN when not found), mm, and confidence."""

    name: str
    x: float
    y: float
    x_mm: float
    y_mm: float
    found: bool
    confidence: float
    peak: float
    area_px: int

    @property
    def xy(self) -> tuple[float, float] | None:
        return (self.x, self.y) if self.found else None

    def to_json(self) -> dict[str, Any]:
        return {
            "x": None if not self.found else self.x,
            "y": None if not self.found else self.y,
            "x_mm": None if not self.found else self.x_mm,
            "y_mm": None if not self.found else self.y_mm,
            "found": self.found,
            "confidence": self.confidence,
            "peak": self.peak,
            "area_px": self.area_px,
        }


@dataclass
class JointModel:
    """A landmark network and what inference needs to know about it."""

    module: Any  # torch.nn.Module producing logits (B, C, S, S)
    joint: str
    landmarks: tuple[str, ...]
    input_size: int
    name: str = ""
    card: dict[str, Any] = field(default_factory=dict)
    input_norm: str = "max"


def make_job(image_index: int, side: str, joint: str, box: Sequence[float], size: int,
             patient_right_on_image_left: bool = True) -> CropJob:
    """A crop job with its affine (left legs mirrored on a standard AP film)."""
    mirror = needs_mirror(side, patient_right_on_image_left)
    b = tuple(float(v) for v in box)
    return CropJob(image_index, side, joint, b, mirror, crop_matrix(b, size, mirror))  # type: ignore[arg-type]


def make_crop(image: Any, job: CropJob, size: int, norm: str = "max") -> np.ndarray:
    """The network input for one job: resampled crop normalised to [0, 1], shape (S, S) float32."""
    return normalize_crop(sample_crop(image, job.matrix, size), norm)


def points_from_probs(
    probs: np.ndarray,
    matrix: np.ndarray,
    names: Sequence[str],
    spacing_mm: tuple[float, float],
    method: int = 3,
) -> list[LandmarkPrediction]:
    """Probability maps ``(C, S, S)`` of one crop to landmark predictions in original pixels + mm."""
    estimates: list[PointEstimate] = extract_points(np.asarray(probs, dtype=np.float32), method=method)
    uv = np.array([[e.x, e.y] for e in estimates], dtype=np.float64)
    xy = crop_to_image(uv, matrix)
    mm = to_mm(xy, spacing_mm)
    out = []
    for name, e, p, q in zip(names, estimates, xy, mm):
        out.append(LandmarkPrediction(name, float(p[0]), float(p[1]), float(q[0]), float(q[1]),
                                      bool(e.found), float(e.confidence), float(e.peak), int(e.area_px)))
    return out


def landmark_jobs(
    boxes: Sequence[Mapping[str, Mapping[str, Sequence[float]]]],
    models: Mapping[str, JointModel],
    orientations: Sequence[bool] | None = None,
) -> dict[str, list[CropJob]]:
    """The crop jobs of several images, per joint model: ``boxes[i][side][joint]`` are pixel
    boxes of image ``i``; ``orientations[i]`` is its ``patient_right_on_image_left`` (default
    True). A joint without a model is skipped."""
    orientations = list(orientations) if orientations is not None else [True] * len(boxes)
    jobs: dict[str, list[CropJob]] = {}
    for joint, model in models.items():
        for i, per_side in enumerate(boxes):
            for side, joints in per_side.items():
                if joint in joints:
                    jobs.setdefault(joint, []).append(
                        make_job(i, side, joint, joints[joint], model.input_size, orientations[i]))
    return jobs


def make_crops(images: Sequence[Any], jobs: Mapping[str, Sequence[CropJob]],
               models: Mapping[str, JointModel]) -> dict[str, list[np.ndarray]]:
    """The network inputs of every job (:func:`make_crop`), per joint, made on a few threads:
    decoding windows of an image that decodes on demand (OpenJPEG, in the decode cage) and
    OpenCV's resampling release the GIL, so they share the cores. Safe to run in a background
    thread while the networks run on other crops (:meth:`cpak_cli.pipeline.film.Measurer.start`)."""
    flat = [(joint, job) for joint, js in jobs.items() for job in js]
    out: dict[str, list[np.ndarray]] = {joint: [] for joint in jobs}

    def one(item: tuple[str, CropJob]) -> np.ndarray:
        joint, job = item
        model = models[joint]
        return make_crop(images[job.image_index], job, model.input_size, model.input_norm)

    threads = min(len(flat), os.cpu_count() or 1, 4)
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            crops = list(pool.map(one, flat))
    else:
        crops = [one(item) for item in flat]
    for (joint, _), crop in zip(flat, crops):
        out[joint].append(crop)
    return out


def landmarks_from_crops(
    n_images: int,
    jobs: Mapping[str, Sequence[CropJob]],
    crops: Mapping[str, Sequence[np.ndarray]],
    spacings: Sequence[tuple[float, float]],
    models: Mapping[str, JointModel],
    method: int = 3,
    device: str = "cpu",
    batch_size: int = 16,
) -> list[dict[str, dict[str, LandmarkPrediction]]]:
    """Run each joint's network on its crops (:func:`make_crops` of ``jobs``; crops of all
    images that share a model share batches) and extract the points (Method ``method``):
    per image ``{side: {name: pred}}`` in image pixels and mm (``spacings[i]`` is image ``i``'s
    ``(row_mm, col_mm)``)."""
    results: list[dict[str, dict[str, LandmarkPrediction]]] = [dict() for _ in range(n_images)]
    for joint, model in models.items():
        joint_jobs = jobs.get(joint, [])
        if not joint_jobs:
            continue
        probs = predict(model.module, np.stack(crops[joint]), device=device, batch_size=batch_size)
        for job, p in zip(joint_jobs, probs):
            preds = points_from_probs(p, job.matrix, model.landmarks, spacings[job.image_index], method)
            leg = results[job.image_index].setdefault(job.side, {})
            for pred in preds:
                leg[pred.name] = pred
    return results


def detect_landmarks(
    images: Sequence[Any],
    boxes: Sequence[Mapping[str, Mapping[str, Sequence[float]]]],
    spacings: Sequence[tuple[float, float]],
    models: Mapping[str, JointModel],
    orientations: Sequence[bool] | None = None,
    method: int = 3,
    device: str = "cpu",
    batch_size: int = 16,
    crops: Mapping[str, Sequence[np.ndarray]] | None = None,
    jobs: Mapping[str, Sequence[CropJob]] | None = None,
) -> list[dict[str, dict[str, LandmarkPrediction]]]:
    """Landmarks of several images at once: :func:`landmark_jobs`, :func:`make_crops` (or the
    ``crops`` already made for those jobs), :func:`landmarks_from_crops`.

    ``images[i]`` is a 2-D array or an image that decodes windows on demand (see
    :func:`cpak_cli.networks.crops.sample_crop`). ``boxes[i][side][joint]`` are pixel boxes of
    image ``i``; ``orientations[i]`` is ``patient_right_on_image_left`` (default True). Returns
    per image ``{side: {name: pred}}`` holding every landmark of every joint that had a box and
    a model.
    """
    if jobs is None:
        jobs = landmark_jobs(boxes, models, orientations)
    if crops is None:
        crops = make_crops(images, jobs, models)
    return landmarks_from_crops(len(images), jobs, crops, spacings, models, method, device, batch_size)
