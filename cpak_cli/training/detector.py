"""Training of the joint detector (see :mod:`cpak_cli.networks.detector`) on whole films.

Each training image is reduced once to the detector's frame (``height x width`` at an isotropic
mm scale, patient's right on the left); every step applies a small random affine to frame and
joint centres together, draws the target discs at the moved centres, and adds the same intensity
augmentation as the landmark models. Loss, optimiser and schedule are those of
:mod:`cpak_cli.training.trainer`, the checkpoint format that of :mod:`cpak_cli.training.checkpoints`,
so ``export_checkpoint`` writes the detector's weights and card too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_text
from cpak_cli.errors import CpakInputError
from cpak_cli.networks.crops import disc_masks
from cpak_cli.networks.detector import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    DETECTOR_CHANNELS,
    TARGET_RADIUS_MM,
    DetectorFrame,
    detector_frame,
    detector_input,
    joint_centres,
)
from cpak_cli.networks.models import ModelConfig
from cpak_cli.training.batches import sample_rng
from cpak_cli.training.checkpoints import CHECKPOINT_FORMAT, init_from_weights, load_checkpoint, save_checkpoint
from cpak_cli.training.options import TrainOptions
from cpak_cli.training.sources import find_training_files, run_jobs, split_ids
from cpak_cli.training.trainer import dice_bce_loss, lr_at
from cpak_cli.training.training_crops import AugmentOptions, intensity_augment


def detector_config(height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH, encoder: str = "tu-resnet10t",
                    encoder_depth: int = 4, decoder_channels: tuple[int, ...] = (128, 64, 32, 16)) -> ModelConfig:
    """The detector's architecture: 6 output channels (patient side x joint), non-square input."""
    return ModelConfig(joint="detector", landmarks=DETECTOR_CHANNELS, encoder=encoder, encoder_depth=encoder_depth,
                       decoder_channels=decoder_channels, input_size=height, input_width=width, mask_radius=1.0)


@dataclass
class FilmSample:
    """One film reduced to the detector frame: ``frame`` (H, W) float16, ``centres`` (6, 2) in
    frame pixels (NaN = joint not on the film), ``mm_per_px`` of the frame."""

    image_id: str
    frame: np.ndarray
    centres: np.ndarray
    mm_per_px: float


def reduce_film(image_id: str, pixels: np.ndarray, spacing_mm: tuple[float, float], patient_right_on_image_left: bool,
                centres_xy: dict[str, dict[str, tuple[float, float]]], height: int, width: int) -> FilmSample:
    """A film (pixels, spacing ``(row_mm, col_mm)``) and its joint centres (image pixels,
    ``{side: {joint: (x, y)}}``) reduced to the detector frame."""
    from cpak_cli.networks.crops import image_to_crop

    fr = detector_frame((pixels.shape[0], pixels.shape[1]), spacing_mm, patient_right_on_image_left, width, height)
    centres = np.full((len(DETECTOR_CHANNELS), 2), np.nan)
    for k, ch in enumerate(DETECTOR_CHANNELS):
        side, joint = ch.split("_", 1)
        if joint in centres_xy.get(side, {}):
            centres[k] = image_to_crop(np.array([centres_xy[side][joint]]), fr.matrix)[0]
    return FilmSample(image_id, detector_input(pixels, fr).astype(np.float16), centres, fr.mm_per_px)


def film_sample(args: tuple[str, str, str, int, int]) -> FilmSample:
    """Worker: load one image + landmark file and reduce it to the detector frame."""
    from cpak_cli.core.landmarks import read_landmarks
    from cpak_cli.training.sources import load_annotated

    image, lm_path, image_id, height, width = args
    lf = read_landmarks(lm_path)
    loaded, prl = load_annotated(image, lf)
    return reduce_film(image_id, loaded.pixels, loaded.spacing_mm, prl, joint_centres(lf.legs), height, width)


def phantom_film_sample(args: tuple[int, int, dict[str, Any], int, int]) -> FilmSample:
    """Worker: one phantom case rendered straight at a coarse spacing (about half the detector
    frame's mm per pixel, so rendering takes a fraction of a second) and reduced to the frame."""
    from cpak_cli.phantom.generate import make_case, render

    seed, index, options, height, width = args
    probe = make_case(seed, index, **options)
    rows, cols = probe.shape
    sp = probe.spacing_mm
    target = max(rows * sp[0] / height, cols * sp[1] / width) / 2.0  # mm per rendered pixel
    case = make_case(seed, index, **{**options, "scale": float(min(1.0, max(sp) / target))})
    img = np.asarray(render(case), dtype=np.float32)
    return reduce_film(f"phantom-{seed}-{index:05d}", img, tuple(case.spacing_mm),  # type: ignore[arg-type]
                       bool(case.patient_right_on_image_left), joint_centres(case.landmarks), height, width)


def augmented_film(s: FilmSample, rng: np.random.Generator, aug: AugmentOptions) -> tuple[np.ndarray, np.ndarray]:
    """(input (H, W), centres (6, 2) frame pixels, NaN = absent) with a random affine (rotation
    +-5 deg, scale +-10 %, shift +-5 %) applied to the frame and the centres together, plus
    intensity augmentation (and domain randomisation when ``aug.domain`` > 0)."""
    import cv2

    h, w = s.frame.shape
    img: np.ndarray = s.frame.astype(np.float32)
    pts = s.centres.copy()
    if rng.random() < 0.7:
        ang = rng.uniform(-5, 5)
        sc = rng.uniform(0.9, 1.1)
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), ang, sc)
        m[:, 2] += (rng.uniform(-0.05, 0.05) * w, rng.uniform(-0.05, 0.05) * h)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        pts = pts @ m[:, :2].T + m[:, 2]
        # a centre moved off the frame is no longer a target
        off = (pts[:, 0] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] < 0) | (pts[:, 1] > h - 1)
        pts[off] = np.nan
    img = intensity_augment(img, rng, aug)
    return img, pts


def training_pair(s: FilmSample, rng: np.random.Generator, aug: AugmentOptions) -> tuple[np.ndarray, np.ndarray]:
    """(input (H, W), target (6, H, W)): :func:`augmented_film` with the target discs drawn."""
    img, pts = augmented_film(s, rng, aug)
    h, w = img.shape
    return img, disc_masks(pts, (w, h), TARGET_RADIUS_MM / s.mm_per_px)


@dataclass
class DetectorBatches:
    """What a batch worker needs for detector batches (picklable)."""

    samples: list[FilmSample]
    seed: int
    batch_size: int
    aug: AugmentOptions


def detector_batch(state: DetectorBatches, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step ``step``'s batch: ``x`` (B, H, W) float16, ``centres`` (B, 6, 2) frame pixels (NaN =
    absent), ``radius`` (B,) target disc radius in frame pixels. A pure function of seed and step."""
    rng = np.random.default_rng([state.seed, step])
    idx = rng.choice(len(state.samples), size=min(state.batch_size, len(state.samples)), replace=False)
    xs, cs, rs = [], [], []
    for k, i in enumerate(idx):
        s = state.samples[int(i)]
        img, pts = augmented_film(s, sample_rng(state.seed, step, k), state.aug)
        xs.append(img.astype(np.float16))
        cs.append(pts.astype(np.float32))
        rs.append(TARGET_RADIUS_MM / s.mm_per_px)
    return np.stack(xs), np.stack(cs), np.asarray(rs, dtype=np.float32)


def evaluate_detector(model: Any, samples: list[FilmSample], cfg: ModelConfig, device: str) -> dict[str, Any]:
    """Centre error (mm) of found joints, joints missed, and false joints (found but absent),
    decoded exactly as at inference (:func:`cpak_cli.networks.detector.decode_detections`)."""
    from cpak_cli.networks.detector import decode_detections
    from cpak_cli.networks.models import predict

    if not samples:
        return {}
    probs = predict(model, np.stack([s.frame.astype(np.float32) for s in samples]), device=device, batch_size=8)
    errs, missed, false = [], 0, 0
    for s, p in zip(samples, probs):
        # decode in frame pixels: identity frame, isotropic "spacing" of one frame pixel
        frame = DetectorFrame(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), cfg.input_width, cfg.input_size, s.mm_per_px)
        dets = decode_detections(p, frame, (s.mm_per_px, s.mm_per_px))
        for k, ch in enumerate(DETECTOR_CHANNELS):
            side, joint = ch.split("_", 1)
            present = bool(np.isfinite(s.centres[k]).all())
            d = dets.get(side, {}).get(joint)
            if present and d is not None:
                errs.append(float(np.hypot(d.center[0] - s.centres[k, 0], d.center[1] - s.centres[k, 1]) * s.mm_per_px))
            elif present:
                missed += 1
            elif d is not None:
                false += 1
    med = float(np.median(errs)) if errs else float("inf")
    return {"median_mm": med, "p95_mm": float(np.percentile(errs, 95)) if errs else None,
            "max_mm": float(np.max(errs)) if errs else None, "missed": missed, "false": false,
            "found_rate": len(errs) / max(1, len(errs) + missed)}


def load_film_samples(data_dir: Path | None, cfg: ModelConfig, workers: int, phantom: int = 0, phantom_seed: int = 0,
                      phantom_options: dict[str, Any] | None = None,
                      real_dir: Path | None = None) -> tuple[list[FilmSample], dict[str, Any]]:
    """Films reduced to the detector frame from any combination of a folder of annotated files,
    ``phantom`` in-memory cases and a folder with three-point labels (held-out part excluded)."""
    samples: list[FilmSample] = []
    desc: dict[str, Any] = {}
    kinds = []
    if data_dir is not None:
        triples = find_training_files(data_dir)
        jobs = [(str(img), str(lm), lm.name[: -len(".landmarks.json")], cfg.input_size, cfg.input_width)
                for img, lm, _ in triples]
        samples += run_jobs(film_sample, jobs, workers)
        kinds.append("files")
        desc.update(data_dir=str(data_dir), files=len(jobs))
    if phantom:
        opts = dict(phantom_options or {})
        samples += run_jobs(phantom_film_sample, [(phantom_seed, i, opts, cfg.input_size, cfg.input_width)
                                                  for i in range(phantom)], workers)
        kinds.append("phantom")
        desc.update(cases=phantom, phantom_seed=phantom_seed, options=opts)
    if real_dir is not None:
        from cpak_cli.training.real import real_film_sample, training_labels

        labels = training_labels(real_dir)
        samples += run_jobs(real_film_sample, [(lab, cfg.input_size, cfg.input_width) for lab in labels], workers)
        kinds.append("point-labels")
        desc.update(real_dir=str(real_dir), real_films=len(labels))
    desc["kind"] = "+".join(kinds) or "none"
    desc["films"] = len(samples)
    return samples, desc


def train_detector(data_dir: Path | None, opts: TrainOptions, cfg: ModelConfig | None = None,
                   on_eval: Callable[[int, float, dict[str, Any]], None] | None = None,
                   phantom: int = 0, phantom_seed: int = 0, phantom_options: dict[str, Any] | None = None,
                   real_dir: Path | None = None) -> dict[str, Any]:
    """Train the joint detector on whole films (see :func:`load_film_samples` for the sources);
    writes ``last.pt``/``best.pt`` in ``opts.out_dir`` (same format as landmark training) and
    exports when ``opts.export``. Augmentation: ``opts.augment`` (its ``domain`` strength too).
    ``on_eval(step, loss, val_metrics)`` is called after each validation (the CLI prints it)."""
    import torch

    from cpak_cli.networks.models import build_model, resolve_device
    from cpak_cli.training.checkpoints import export_checkpoint
    from cpak_cli.training.supervision import BatchSource, disc_targets

    cfg = cfg or detector_config()
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(opts.device)
    dev = torch.device(device)
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    samples, desc = load_film_samples(data_dir, cfg, opts.workers, phantom, phantom_seed, phantom_options, real_dir)
    if not samples:
        raise CpakInputError(data_dir, "no training films")
    train_ids, val_ids = split_ids([s.image_id for s in samples], opts.val_fraction, opts.folds, opts.fold,
                                   opts.split_seed)
    tid = set(train_ids)
    train_s = [s for s in samples if s.image_id in tid]
    val_s = [s for s in samples if s.image_id not in tid]
    training_card = {"seed": opts.seed, "steps": opts.steps, "batch_size": opts.batch_size, "lr": opts.lr,
                     "optimizer": "Adam", "loss": "dice+bce", "data": desc, "n_train_images": len(train_s),
                     "n_val_images": len(val_s), "target_radius_mm": TARGET_RADIUS_MM, "device": device,
                     "encoder_weights": None, "augment": opts.augment.to_dict(), "val_fraction": opts.val_fraction,
                     "split_seed": opts.split_seed}
    torch.manual_seed(opts.seed)
    model = build_model(cfg)
    if opts.init_weights and not opts.resume:
        training_card["init_weights"] = init_from_weights(model, cfg, opts.init_weights)
    model = model.to(dev)
    optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
    step, best, history = 0, None, []
    last_path, best_path = out / "last.pt", out / "best.pt"
    if opts.resume and last_path.exists():
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optimizer"])
        step, best, history = int(ck["step"]), ck.get("best_metric"), list(ck.get("history") or [])

    def payload(kind: str, metric: dict[str, Any] | None = None) -> dict[str, Any]:
        p = {"format": CHECKPOINT_FORMAT, "kind": kind, "model": model.state_dict(), "config": cfg.to_dict(),
             "step": step, "training": training_card, "tool_version": __version__, "metric": metric}
        if kind == "last":
            p.update(optimizer=optim.state_dict(), best_metric=best, history=history)
        return p

    t0 = time.perf_counter()
    model.train()
    use_amp = bool(opts.amp) and dev.type == "cuda"
    source = BatchSource(detector_batch, DetectorBatches(train_s, opts.seed, opts.batch_size, opts.augment),
                         opts.batch_workers)
    with source:
        batches = source.batches(step, opts.steps)
        t_start = time.perf_counter()
        while step < opts.steps:
            if opts.max_seconds is not None and time.perf_counter() - t_start > opts.max_seconds:
                training_card["stopped_by_time_at_step"] = step
                break
            for g in optim.param_groups:
                g["lr"] = lr_at(step, opts)
            xb, cb, rb = next(batches)
            x = torch.from_numpy(xb).to(dev).float().unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
            y = disc_targets(torch.from_numpy(cb).to(dev), x.shape[2], x.shape[3], torch.from_numpy(rb).to(dev))
            optim.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x)
            loss = dice_bce_loss(logits, y)
            loss.backward()
            optim.step()
            step += 1
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise CpakInputError(None, f"detector training diverged at step {step}; lower --lr")
            if step % opts.eval_every == 0 or step == opts.steps:
                m = evaluate_detector(model, val_s, cfg, device)
                model.train()
                rec = {"step": step, "loss": lv, "val": m, "elapsed_s": time.perf_counter() - t0}
                history.append(rec)
                with open(out / "history.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
                key = (m.get("missed", 0) + m.get("false", 0), m.get("median_mm", float("inf")))
                if best is None or key < (best.get("missed", 0) + best.get("false", 0), best.get("median_mm", float("inf"))):
                    best = m
                    save_checkpoint(best_path, payload("best", m))
                if on_eval is not None:
                    on_eval(step, lv, m)
            if step % opts.checkpoint_every == 0 or step == opts.steps:
                save_checkpoint(last_path, payload("last"))
    atomic_write_text(out / "config.json", json.dumps({"config": cfg.to_dict(), "options": opts.to_dict(),
                                                      "data": desc}, indent=2, default=str) + "\n")
    exported = str(export_checkpoint(best_path, opts.export, name="detector")) if opts.export else None
    return {"steps": step, "best": best, "exported": exported, "n_train": len(train_s), "n_val": len(val_s)}
