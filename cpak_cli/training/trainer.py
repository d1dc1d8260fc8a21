"""Training one landmark U-Net per joint (paper Sections II.A-F), on CPU or CUDA.

Recipe: crops of the joint box (always jittered like a detector's boxes, plus the paper's random
affine with p = 0.5, one resampling, masks drawn at the transformed landmarks; see
:mod:`cpak_cli.training.training_crops`), intensity augmentation, Dice + BCE loss (uniform weights, per-channel
soft Dice on the sigmoid), Adam with warm-up + cosine decay, fixed seeds and a deterministic sample
order (a pure function of seed and step, so ``resume`` repeats an uninterrupted run).

Validation (by image, never by leg): the un-augmented crop of each validation leg's box, the real
inference chain (sigmoid -> ``extraction.extract_points`` Method 3 -> crop affine -> image pixels
-> mm with the anisotropic spacing); the checkpoint with the lowest median error in mm is
``best.pt``. ``last.pt`` (model, optimizer, schedule, step, RNG states, config, options, data
description, split, history) is written atomically every ``checkpoint_every`` steps, at the end
and on Ctrl-C.

The options and data (:class:`TrainData`, :class:`TrainOptions`) are in
:mod:`cpak_cli.training.options`, the validation in :mod:`cpak_cli.training.validation`, the
checkpoints and the export in :mod:`cpak_cli.training.checkpoints`; this module holds the loss,
the learning-rate schedule and the loop.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_text
from cpak_cli.errors import CpakInputError, CpakModelError
from cpak_cli.networks.models import ModelConfig
from cpak_cli.training.checkpoints import (
    CHECKPOINT_FORMAT,
    export_checkpoint,
    init_from_weights,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cpak_cli.training.options import TrainData, TrainOptions, TrainResult, load_samples
from cpak_cli.training.sources import split_ids
from cpak_cli.training.supervision import BatchSource, LandmarkBatches, batch_tensors, landmark_batch, partial_loss
from cpak_cli.training.training_crops import validation_crop
from cpak_cli.training.validation import evaluate_samples, metric_key

if TYPE_CHECKING:  # pragma: no cover
    import torch


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
        set_rng_state(ck["rng"])

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
                     rng=rng_state(), best_metric=best_metric, best_step=best_step, history=history)
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
                                    constraint_weight=opts.constraint_weight, cons_tol=bt["cons_tol"],
                                    cons_axes=bt["cons_axes"])
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
                        if best_metric is None or metric_key(m) < metric_key(best_metric):
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
                if best_metric is None or metric_key(m) < metric_key(best_metric):
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


__all__ = ["dice_bce_loss", "lr_at", "train"]
