"""Training one landmark U-Net per joint (paper Sections II.A-F), on CPU or CUDA.

Recipe: crops of the joint box (always jittered like a detector's boxes, plus the paper's random
affine with p = 0.5, one resampling, masks drawn at the transformed landmarks; see
:mod:`cpak_cli.training.datasets`), intensity augmentation, Dice + BCE loss (uniform weights, per-channel
soft Dice on the sigmoid), Adam with warm-up + cosine decay, fixed seeds and a deterministic sample
order (a pure function of seed and step, so ``resume`` repeats an uninterrupted run).

Validation (by image, never by leg): the un-augmented crop of each validation leg's box, the real
inference chain (sigmoid -> ``extraction.extract_points`` Method 3 -> crop affine -> image pixels
-> mm with the anisotropic spacing); the checkpoint with the lowest median error in mm is
``best.pt``. ``last.pt`` (model, optimizer, schedule, step, RNG states, config, options, data
description, split, history) is written atomically every ``checkpoint_every`` steps, at the end
and on Ctrl-C.
"""

from __future__ import annotations

import io
import json
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_bytes, atomic_write_text
from cpak_cli.errors import CpakInputError, CpakModelError
from cpak_cli.networks.models import ModelConfig
from cpak_cli.training.datasets import (
    DEFAULT_CONTEXT,
    AugmentOptions,
    LegSample,
    file_samples,
    find_training_files,
    phantom_samples,
    run_jobs,
    split_ids,
    validation_crop,
)
from cpak_cli.training.supervision import (
    CONSTRAINT_WEIGHT,
    BatchSource,
    LandmarkBatches,
    batch_tensors,
    landmark_batch,
    partial_loss,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

CHECKPOINT_FORMAT = "cpak-train-1"


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


# ----------------------------------------------------------------------------- loss / schedule


def dice_bce_loss(logits: "torch.Tensor", target: "torch.Tensor", eps: float = 1.0) -> "torch.Tensor":
    """Uniform Dice + BCE: mean per-(sample, channel) soft Dice loss on the sigmoid + mean BCE."""
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(2, 3))
    denom = p.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    dice = 1.0 - (2.0 * inter + eps) / (denom + eps)
    return dice.mean() + bce


def lr_at(step: int, opts: TrainOptions) -> float:
    """Linear warm-up over ``min(warmup_steps, steps // 10)`` steps, then cosine to ``min_lr_fraction * lr``."""
    total = max(1, opts.steps)
    warm = min(opts.warmup_steps, total // 10)
    f = 1.0 if warm <= 0 else min(1.0, (step + 1) / warm)
    prog = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
    cos = opts.min_lr_fraction + (1.0 - opts.min_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * prog))
    return opts.lr * f * cos


# ----------------------------------------------------------------------------- validation


def evaluate_samples(
    model: "torch.nn.Module", samples: list[LegSample], cfg: ModelConfig, device: str = "cpu",
    batch_size: int = 8, prepared: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Landmark errors on un-augmented crops through the real chain (Method 3, crop affine, spacing).

    Returns median/mean/p95 error in mm and median in crop pixels over all labelled landmarks (a
    landmark not found counts as infinitely wrong for the median), ``found_rate``, ``n_points`` and
    ``per_landmark_median_mm``. Partly labelled samples (real films) add the errors of their
    constraints (:func:`cpak_cli.training.supervision.constraint_errors_mm`) as ``real_median_mm``; with
    both kinds, ``select_mm`` = fully labelled median + ``real_median_mm`` chooses ``best.pt``.
    Infinite values are reported as None.
    """
    from cpak_cli.core.extraction import extract_points
    from cpak_cli.networks import crops
    from cpak_cli.networks.models import predict
    from cpak_cli.training.supervision import constraint_errors_mm

    if not samples:
        return {}
    prepared = prepared or [validation_crop(s, cfg.input_size, cfg.input_norm) for s in samples]
    probs = predict(model, np.stack([c for c, _ in prepared]), device=device, batch_size=batch_size)
    err_mm, err_px, real_err = [], [], []
    for s, (_, m_img), pr in zip(samples, prepared, probs):
        est = extract_points(pr, method=3)
        uv = np.array([[e.x, e.y] for e in est], dtype=np.float64)
        xy = crops.crop_to_image(uv, m_img)
        if s.constraints:
            real_err.extend(constraint_errors_mm(xy, s))
        d = xy - s.points
        mm = np.hypot(d[:, 0] * s.spacing_mm[1], d[:, 1] * s.spacing_mm[0])
        px = np.hypot(*(uv - crops.image_to_crop(s.points, m_img)).T)
        labelled = np.isfinite(s.points).all(axis=1)
        err_mm.append(np.where(labelled, np.where(np.isfinite(mm), mm, np.inf), np.nan))
        err_px.append(np.where(labelled, np.where(np.isfinite(px), px, np.inf), np.nan))
    e_mm, e_px = np.stack(err_mm), np.stack(err_px)
    lab = ~np.isnan(e_mm)
    found = np.isfinite(e_mm)

    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    def med(a: np.ndarray) -> float | None:
        a = a[~np.isnan(a)]
        return num(float(np.median(a))) if a.size else None

    out: dict[str, Any] = {
        "median_mm": med(e_mm),
        "median_px": med(e_px),
        "mean_mm": num(float(e_mm[found].mean())) if found.any() else None,
        "p95_mm": num(float(np.percentile(e_mm[lab], 95))) if lab.any() else None,
        "found_rate": float(found.sum() / max(1, lab.sum())),
        "n_points": int(lab.sum()),
        "n_legs": len(samples),
        "per_landmark_median_mm": {n: med(e_mm[:, i]) for i, n in enumerate(cfg.landmarks)},
    }
    if real_err:
        r = np.asarray(real_err, dtype=np.float64)
        out.update(real_median_mm=num(float(np.median(r))), real_p90_mm=num(float(np.percentile(r, 90))),
                   real_found_rate=float(np.isfinite(r).mean()), real_n=int(r.size))
        parts = [v for v in (out["median_mm"], out["real_median_mm"]) if v is not None] if lab.any() else [out["real_median_mm"]]
        known = [v for v in parts if v is not None]
        out["select_mm"] = None if len(known) < len(parts) else float(sum(known))
    return out


def init_from_weights(model: "torch.nn.Module", cfg: ModelConfig, path: str | Path) -> dict[str, Any]:
    """Load an exported model (``.safetensors`` + card, checked by :func:`cpak_cli.networks.models.load_model`)
    into ``model`` for fine-tuning; returns what the new card records about it.

    Raises:
        CpakInputError: the exported model's architecture differs from ``cfg``.
        CpakModelError: the files are missing or do not match their card.
    """
    from cpak_cli.networks.models import load_model

    init, card = load_model(path, device="cpu")
    if card["config"].to_dict() != cfg.to_dict():
        raise CpakInputError(path, "--init: the model's architecture differs from the one being trained")
    model.load_state_dict({k: v.float() for k, v in init.state_dict().items()})
    return {"file": str(path), "sha256": card.get("sha256"), "training": card.get("training")}


def _metric_key(metric: dict[str, Any] | None) -> float:
    if not metric:
        return math.inf
    key = metric.get("select_mm", metric.get("median_mm"))
    return math.inf if key is None else float(key)


# ----------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    import torch

    np_state = np.random.get_state()  # the legacy tuple (MT19937), as restored below
    assert isinstance(np_state, tuple)
    st = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except RuntimeError:
            pass


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to memory, then an atomic write."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` (``weights_only`` safe load; CpakModelError if bad)."""
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise CpakModelError(f"{p}: checkpoint not found")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CpakModelError(f"{p}: cannot read checkpoint ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "model" not in ck or "config" not in ck:
        raise CpakModelError(f"{p}: not a cpak training checkpoint")
    return ck


def export_checkpoint(
    checkpoint: str | Path, dest: str | Path, accuracy: dict[str, Any] | None = None, name: str | None = None
) -> Path:
    """Write ``dest.safetensors`` + ``dest.json`` (model card) from a ``best.pt``/``last.pt``.

    The card's ``accuracy`` defaults to the checkpoint's validation metrics (``val_*`` keys).
    """
    from cpak_cli.networks.models import build_model, save_weights

    ck = load_checkpoint(checkpoint)
    cfg = ModelConfig.from_dict(ck["config"])
    model = build_model(cfg)
    model.load_state_dict(ck["model"], strict=True)
    if accuracy is None:
        m = ck.get("metric") or {}
        accuracy = {f"val_{k}": v for k, v in m.items() if k != "per_landmark_median_mm"}
        if m.get("per_landmark_median_mm"):
            accuracy["val_per_landmark_median_mm"] = m["per_landmark_median_mm"]
        if m:
            accuracy["val_step"] = ck.get("step")
    training = dict(ck.get("training") or {})
    training.setdefault("checkpoint_step", ck.get("step"))
    return save_weights(model, cfg, dest, training=training, accuracy=accuracy, name=name)


def _training_card(cfg: ModelConfig, opts: TrainOptions, desc: dict[str, Any], device: str, n: dict[str, int]) -> dict[str, Any]:
    phantom_seeds = [desc["phantom_seed"]] if desc.get("kind") == "phantom" else []
    return {
        "seed": opts.seed, "steps": opts.steps, "batch_size": opts.batch_size, "lr": opts.lr,
        "schedule": f"warmup {min(opts.warmup_steps, opts.steps // 10)} + cosine to {opts.min_lr_fraction} x lr",
        "optimizer": "Adam", "loss": "dice+bce", "weight_decay": opts.weight_decay, "data": desc,
        "phantom_seeds": phantom_seeds, "val_fraction": opts.val_fraction, "folds": opts.folds, "fold": opts.fold,
        "split_seed": opts.split_seed, "augment": opts.augment.to_dict(), "context": opts.context, "device": device,
        "encoder_weights": None, **n,
    }


# ----------------------------------------------------------------------------- display


class _Display:
    """Rich progress bar (step, loss, lr, val error, samples/s) or nothing."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled = enabled
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), transient=False,
            )
            self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> "_Display":
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress:
            self.progress.__exit__(*exc)

    def update(self, step: int, info: str) -> None:
        if self.progress:
            self.progress.update(self.task, completed=step, info=info)

    def log(self, text: str) -> None:
        if self.progress:
            self.progress.console.print(text)


# ----------------------------------------------------------------------------- train


def _fmt(v: float | None, nd: int) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_resume(ck: dict[str, Any], cfg: ModelConfig, opts: TrainOptions, desc: dict[str, Any], path: Path) -> None:
    if ck["config"] != cfg.to_dict():
        diff = sorted(k for k in cfg.to_dict() if ck["config"].get(k) != cfg.to_dict()[k])
        raise CpakInputError(path, f"--resume: checkpoint has a different model configuration ({', '.join(diff)})")
    old = ck.get("options") or {}
    keys = ("batch_size", "lr", "seed", "split_seed", "val_fraction", "folds", "fold", "weight_decay", "context")
    diff = [k for k in keys if old.get(k) != getattr(opts, k)]
    if diff:
        raise CpakInputError(path, f"--resume: options differ from the checkpoint's ({', '.join(diff)})")
    old_desc = {k: v for k, v in (ck.get("data") or {}).items() if k in ("kind", "data_dir", "cases", "phantom_seed")}
    new_desc = {k: v for k, v in desc.items() if k in old_desc}
    if old_desc != new_desc:
        raise CpakInputError(path, f"--resume: training data differ from the checkpoint's ({old_desc} vs {new_desc})")


def train(cfg: ModelConfig, data: TrainData, opts: TrainOptions, progress: bool = True) -> TrainResult:
    """Train one landmark model; see the module docstring. Writes ``opts.out_dir``/{last,best}.pt,
    ``history.jsonl`` and ``config.json``. Returns a :class:`TrainResult`."""
    import torch

    from cpak_cli.networks.models import build_model, resolve_device

    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    device = resolve_device(opts.device)
    dev = torch.device(device)
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    if opts.steps < 1 or opts.batch_size < 1:
        raise CpakInputError(None, "--steps and --batch-size must be >= 1")
    if device == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True

    # ---- data
    if progress and data.samples is None:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"loading {cfg.joint} crops", total=None)
            samples, desc = load_samples(
                cfg, data, workers=opts.workers, context=opts.context,
                on_progress=lambda d, n: bar.update(task, completed=d, total=n),
            )
    else:
        samples, desc = load_samples(cfg, data, workers=opts.workers, context=opts.context)
    if not samples:
        raise CpakInputError(str(data.data_dir or "phantom"), f"no leg has a {cfg.joint} box and all its landmarks")
    train_ids, val_ids = split_ids(
        [s.image_id for s in samples], opts.val_fraction, opts.folds, opts.fold, opts.split_seed
    )
    tid, vid = set(train_ids), set(val_ids)
    key = lambda s: (s.image_id, s.side)  # noqa: E731
    train_s = sorted((s for s in samples if s.image_id in tid), key=key)
    val_s = sorted((s for s in samples if s.image_id in vid), key=key)
    if not train_s:
        raise CpakInputError(None, "no training images left after the validation split")
    counts = {"n_train_images": len(train_ids), "n_val_images": len(val_ids), "n_train_legs": len(train_s),
              "n_val_legs": len(val_s)}
    training_card = _training_card(cfg, opts, desc, device, counts)
    atomic_write_text(out / "config.json", json.dumps(
        {"config": cfg.to_dict(), "options": opts.to_dict(), "data": desc, "split": {"train": train_ids, "val": val_ids},
         "tool_version": __version__}, indent=2, default=str) + "\n")

    # ---- model / optimizer
    _seed_everything(opts.seed)
    model = build_model(cfg)
    if opts.init_weights and not opts.resume:
        training_card["init_weights"] = init_from_weights(model, cfg, opts.init_weights)
    model = model.to(dev)
    optim = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    use_amp = bool(opts.amp) and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step = 0
    best_metric: dict[str, Any] | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = []
    if opts.resume:
        ck = load_checkpoint(last_path)
        _check_resume(ck, cfg, opts, desc, last_path)
        model.load_state_dict(ck["model"], strict=True)
        optim.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        step = int(ck["step"])
        best_metric, best_step = ck.get("best_metric"), ck.get("best_step")
        history = list(ck.get("history") or [])
        atomic_write_text(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        _set_rng_state(ck["rng"])

    val_prepared = [validation_crop(s, cfg.input_size, cfg.input_norm) for s in val_s]

    def payload(kind: str, metric: dict[str, Any] | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT, "kind": kind, "model": model.state_dict(), "config": cfg.to_dict(),
            "step": step, "options": opts.to_dict(), "data": desc, "training": training_card,
            "split": {"train": train_ids, "val": val_ids}, "tool_version": __version__,
        }
        if kind == "last":
            p.update(optimizer=optim.state_dict(), scaler=scaler.state_dict() if scaler.is_enabled() else None,
                     scheduler={"name": "warmup_cosine", "steps": opts.steps, "lr": opts.lr,
                                "warmup": min(opts.warmup_steps, opts.steps // 10),
                                "min_lr_fraction": opts.min_lr_fraction, "last_lr": lr_at(max(step - 1, 0), opts)},
                     rng=_rng_state(), best_metric=best_metric, best_step=best_step, history=history)
        else:
            p["metric"] = metric
        return p

    # ---- Ctrl-C: finish the current step, save last.pt, stop (a second Ctrl-C aborts)
    stop = {"flag": False}
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def _handler(signum: int, frame: Any) -> None:
            if stop["flag"]:
                raise KeyboardInterrupt
            stop["flag"] = True

        old_handler = signal.signal(signal.SIGINT, _handler)

    end = opts.steps if opts.stop_at is None else min(opts.steps, max(opts.stop_at, 0))
    interrupted = False
    loss_ema: float | None = None
    seen, t_train = 0, 0.0
    model.train()
    source = BatchSource(landmark_batch, LandmarkBatches(train_s, cfg.input_size, opts.augment, opts.seed,
                                                         cfg.input_norm, opts.batch_size), opts.batch_workers)
    try:
        with _Display(progress, opts.steps, step) as disp, source:
            batches = source.batches(step, end)
            t_start = time.perf_counter()
            time_boxed = False
            while step < end:
                if opts.max_seconds is not None and time.perf_counter() - t_start > opts.max_seconds:
                    training_card["stopped_by_time_at_step"] = step
                    history.append({"step": step, "stopped_by_time": True})
                    time_boxed = True
                    end = step
                    break
                if stop["flag"]:
                    interrupted = True
                    break
                t0 = time.perf_counter()
                lr = lr_at(step, opts)
                for g in optim.param_groups:
                    g["lr"] = lr
                bt = batch_tensors(next(batches), dev)
                x = bt["x"]
                optim.zero_grad(set_to_none=True)
                with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
                    logits = model(x)
                loss = partial_loss(logits, bt["points_uv"], cfg.mask_radius, bt["cons_mix"], bt["cons_uv"], bt["cons_w"],
                                    constraint_weight=opts.constraint_weight)
                scaler.scale(loss).backward()
                scaler.step(optim)
                scaler.update()
                lv = float(loss.detach())
                step += 1
                t_train += time.perf_counter() - t0
                seen += int(x.shape[0])
                loss_ema = lv if loss_ema is None else 0.9 * loss_ema + 0.1 * lv
                sps = seen / t_train if t_train > 0 else 0.0
                val_txt = "" if best_metric is None or best_metric.get("median_mm") is None else \
                    f" best {best_metric['median_mm']:.2f} mm"
                disp.update(step, f"loss {loss_ema:.4f} lr {lr:.2e} {sps:.1f} samples/s{val_txt}")
                if not math.isfinite(lv):
                    raise CpakModelError(f"training diverged at step {step} (loss {lv}); lower --lr")
                if step % max(1, opts.eval_every) == 0 or step == opts.steps:
                    rec: dict[str, Any] = {"step": step, "loss": lv, "loss_ema": loss_ema, "lr": lr,
                                           "samples_per_s": sps}
                    if val_s:
                        m = evaluate_samples(model, val_s, cfg, device, opts.batch_size, val_prepared)
                        model.train()
                        rec["val"] = m
                        if best_metric is None or _metric_key(m) < _metric_key(best_metric):
                            best_metric, best_step = m, step
                            save_checkpoint(best_path, payload("best", m))
                        disp.log(f"step {step}: loss {loss_ema:.4f}, val median {_fmt(m.get('median_mm'), 2)} mm"
                                 f" / {_fmt(m.get('median_px'), 1)} px, found {100 * m['found_rate']:.0f}%")
                    history.append(rec)
                    with open(out / "history.jsonl", "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(rec) + "\n")
                if step % max(1, opts.checkpoint_every) == 0 or step == opts.steps:
                    save_checkpoint(last_path, payload("last"))
            if step < opts.steps and not time_boxed:
                interrupted = True
            if time_boxed and val_s and (best_step is None or best_step < step):
                m = evaluate_samples(model, val_s, cfg, device, opts.batch_size, val_prepared)
                history.append({"step": step, "val": m, "final_after_time_box": True})
                if best_metric is None or _metric_key(m) < _metric_key(best_metric):
                    best_metric, best_step = m, step
                    save_checkpoint(best_path, payload("best", m))
            if interrupted or step % max(1, opts.checkpoint_every) != 0:
                save_checkpoint(last_path, payload("last"))
            if not val_s and (step == end or not best_path.exists()):
                save_checkpoint(best_path, payload("best", None))  # no validation: best = last model
                best_step = step
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)

    exported = None
    if opts.export and not interrupted:
        exported = export_checkpoint(best_path, opts.export)
    return TrainResult(
        exported=exported, out_dir=out, steps_done=step, total_steps=opts.steps, device=device, best_step=best_step,
        best_metric=best_metric, last_checkpoint=last_path, best_checkpoint=best_path, history=history,
        interrupted=interrupted, samples_per_s=(seen / t_train if t_train > 0 else 0.0), final_loss=loss_ema,
        **counts,
    )


__all__ = [
    "TrainData", "TrainOptions", "TrainResult", "load_samples", "init_from_weights", "dice_bce_loss", "lr_at", "evaluate_samples",
    "save_checkpoint", "load_checkpoint", "export_checkpoint", "train",
]
