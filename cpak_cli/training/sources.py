"""Where the leg samples come from, and the split of images into training and validation.

Annotated files (image + ``NAME.landmarks.json`` + ``NAME.boxes.json``; landmark and box
coordinates in image pixels ``(x, y)``, spacing ``(row_mm, col_mm)``), phantom cases rendered
window by window, a worker pool for both, and the deterministic splits by image (k folds or a
validation fraction, ranked by sha1). Numpy only (no torch): the workers are spawned processes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cpak_cli.errors import CpakInputError
from cpak_cli.training.datasets import LegSample, array_reader, leg_samples

IMAGE_SUFFIXES = (".dcm", ".dicom", ".DCM", ".png", ".PNG", ".tif", ".tiff", ".TIF", ".TIFF", "")

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


__all__ = ["find_training_files", "load_annotated", "file_samples", "phantom_samples", "run_jobs", "fold_of", "split_ids"]
