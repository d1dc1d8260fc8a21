"""What a training run is given and what it returns: :class:`TrainData`, :class:`TrainOptions`,
:class:`TrainResult`, and :func:`load_samples` (the context caches of every usable leg).

Sizes in pixels (``input_size``), spacings ``(row_mm, col_mm)``, durations in seconds; the
options are JSON-able (they are stored in every checkpoint and model card).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cpak_cli.errors import CpakInputError
from cpak_cli.networks.models import ModelConfig
from cpak_cli.training.datasets import DEFAULT_CONTEXT, LegSample
from cpak_cli.training.sources import file_samples, find_training_files, phantom_samples, run_jobs
from cpak_cli.training.supervision import CONSTRAINT_WEIGHT
from cpak_cli.training.training_crops import AugmentOptions


@dataclass
class TrainData:
    """Where the training images come from, any combination of: a folder of image +
    ``.landmarks.json`` + ``.boxes.json`` files, ``phantom`` cases generated in memory (seed
    ``phantom_seed``, indices ``0..phantom-1``), a folder of films with three-point labels
    (``real_dir``, :mod:`cpak_cli.training.pointlabels`; partial supervision, its held-out part never
    used), or pre-built ``samples`` (notebooks, tests; then nothing else). ``pixel_spacing``
    (row, col mm) overrides the spacing of every file (PNG/TIFF otherwise use the landmark file's)."""

    data_dir: Path | None = None
    phantom: int = 0
    phantom_seed: int = 0
    phantom_options: dict[str, Any] = field(default_factory=dict)
    pixel_spacing: tuple[float, float] | None = None
    samples: list[LegSample] | None = None
    real_dir: Path | None = None

    def describe(self) -> dict[str, Any]:
        if self.samples is not None:
            return {"kind": "samples", "legs": len(self.samples), "images": len({s.image_id for s in self.samples})}
        kinds = []
        d: dict[str, Any] = {}
        if self.phantom:
            kinds.append("phantom")
            d.update(cases=int(self.phantom), phantom_seed=int(self.phantom_seed), options=dict(self.phantom_options))
        if self.data_dir is not None:
            kinds.append("files")
            d.update(data_dir=str(self.data_dir), pixel_spacing=self.pixel_spacing)
        if self.real_dir is not None:
            from cpak_cli.training.pointlabels import HOLDOUT_FRACTION, HOLDOUT_SEED

            kinds.append("point-labels")
            d.update(real_dir=str(self.real_dir), real_holdout={"fraction": HOLDOUT_FRACTION, "seed": HOLDOUT_SEED})
        return {"kind": "+".join(kinds) or "none", **d}


@dataclass
class TrainOptions:
    """Training options (all JSON-able). ``steps`` is the total; ``stop_at`` stops early after that
    step (saving ``last.pt`` as on Ctrl-C, e.g. for a time-boxed session); ``threads`` calls
    ``torch.set_num_threads`` (None leaves it alone); ``batch_workers`` > 1 builds the augmented
    batches ahead in that many processes (same batches as 0, faster); ``max_seconds``: a time box
    for the optimisation loop, after which training ends as if complete (the card records the
    steps done); ``init_weights``: start from an exported model (``.safetensors`` + card, same
    architecture; fine-tuning) instead of a random initialisation; ``constraint_weight``: weight of
    the partial-label constraints (:data:`cpak_cli.training.supervision.CONSTRAINT_WEIGHT`);
    ``export`` (e.g. ``weights/knee``): after a complete run write ``export.safetensors`` + ``export.json`` from ``best.pt``."""

    out_dir: str = "runs/train"
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_fraction: float = 0.01
    val_fraction: float = 0.15
    folds: int | None = None
    fold: int | None = None
    split_seed: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 2
    threads: int | None = None
    eval_every: int = 200
    checkpoint_every: int = 100
    batch_workers: int = 0
    max_seconds: float | None = None
    init_weights: str | None = None
    constraint_weight: float = CONSTRAINT_WEIGHT
    resume: bool = False
    stop_at: int | None = None
    context: float = DEFAULT_CONTEXT
    export: str | None = None
    augment: AugmentOptions = field(default_factory=AugmentOptions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d


@dataclass
class TrainResult:
    """What :func:`train` did. ``best_metric`` is the validation dict of ``best.pt`` (None without
    validation images, then ``best.pt`` is the last model); ``interrupted`` when stopped early."""

    out_dir: Path
    steps_done: int
    total_steps: int
    device: str
    best_step: int | None
    best_metric: dict[str, Any] | None
    last_checkpoint: Path
    best_checkpoint: Path
    history: list[dict[str, Any]]
    interrupted: bool
    n_train_images: int
    n_val_images: int
    n_train_legs: int
    n_val_legs: int
    samples_per_s: float
    final_loss: float | None
    exported: Path | None = None


# ----------------------------------------------------------------------------- data


def load_samples(
    cfg: ModelConfig, data: TrainData, workers: int = 2, context: float = DEFAULT_CONTEXT,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[LegSample], dict[str, Any]]:
    """Build the context caches of every usable leg; returns ``(samples, description)``."""
    desc = data.describe()
    if data.samples is not None:
        return list(data.samples), desc
    names = tuple(cfg.landmarks)
    sources: list[tuple[str, Callable[[Any], Any], list[Any]]] = []
    if data.phantom:
        sources.append(("phantom", phantom_samples, [
            (int(data.phantom_seed), i, dict(data.phantom_options), cfg.joint, names, cfg.input_size, context)
            for i in range(int(data.phantom))
        ]))
    if data.data_dir is not None:
        root = Path(data.data_dir)
        triples = find_training_files(root)
        sources.append(("files", file_samples, [
            (str(img), str(lm), str(bx), str(img.relative_to(root)), cfg.joint, names, cfg.input_size, context,
             data.pixel_spacing)
            for img, lm, bx in triples
        ]))
    if data.real_dir is not None:
        from cpak_cli.training.real import real_leg_samples, training_labels

        sources.append(("real", real_leg_samples, [
            (lab, cfg.joint, names, cfg.input_size, context) for lab in training_labels(data.real_dir)
        ]))
    if not sources:
        raise CpakInputError(None, "no training data: give --data DIR, --phantom N or --real DIR")
    total = sum(len(j) for _, _, j in sources)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if on_progress:
            on_progress(done[0], total)

    samples: list[LegSample] = []
    skipped = 0
    for kind, fn, jobs in sources:
        results = run_jobs(fn, jobs, workers, tick)
        legs = [s for found, _ in results for s in found]
        desc[f"{kind}_images"] = len(jobs)
        desc[f"{kind}_legs"] = len(legs)
        samples.extend(legs)
        skipped += int(sum(k for _, k in results))
    desc.update(images=total, legs=len(samples), skipped_legs=skipped)
    return samples, desc


__all__ = ["TrainData", "TrainOptions", "TrainResult", "load_samples"]
