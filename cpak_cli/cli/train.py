"""`cpak train`: train one joint's landmark U-Net on annotated images or on phantom cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from cpak_cli.cli.common import guarded


def register(app: typer.Typer) -> None:
    @app.command("train")
    @guarded
    def train_cmd(
        joint: str = typer.Option(..., "--joint", help="hip, knee, ankle, or detector (the joint detector, needs --data)."),
        data: Optional[Path] = typer.Option(
            None, "--data", help="Folder of images with NAME.landmarks.json + NAME.boxes.json (searched recursively)."
        ),
        phantom: int = typer.Option(0, "--phantom", metavar="N", help="Train on N phantom cases generated in memory."),
        phantom_seed: int = typer.Option(0, "--phantom-seed", help="Seed of the phantom cases."),
        phantom_variety: bool = typer.Option(
            False, "--phantom-variety", help="Phantom cases with the wide anatomy/look range (pediatric, OA, shields, "
                                             "processing)."
        ),
        real: Optional[Path] = typer.Option(
            None, "--real", help="Folder of real films with three-point labels (labels.csv + images/): partial supervision; "
                                 "its held-out part is never used."
        ),
        domain: float = typer.Option(
            0.0, "--domain", min=0.0, help="Strength of the domain randomisation (resolution, tone, processing, noise, "
                                           "JPEG); 0 = off, 1 = default."
        ),
        batch_workers: int = typer.Option(
            0, "--batch-workers", min=0, help="Processes that build augmented batches ahead (0 = in the training process)."
        ),
        jitter: float = typer.Option(
            0.1, "--jitter", min=0.0, help="Box jitter: centre shift up to +-JITTER x side, size x (1 +- JITTER)."
        ),
        max_minutes: Optional[float] = typer.Option(
            None, "--max-minutes", help="Time box for the optimisation loop; then training ends as if complete."
        ),
        init: Optional[Path] = typer.Option(
            None, "--init", help="Start from an exported model (e.g. cpak_cli/weights/knee): fine-tuning."
        ),
        warmup: int = typer.Option(50, "--warmup", min=0, help="Warm-up steps of the learning rate."),
        constraint_weight: float = typer.Option(
            0.05, "--constraint-weight", min=0.0, help="Weight of the partial-label constraints (real films) against Dice + BCE."
        ),
        out: Path = typer.Option(..., "--out", help="Run folder (last.pt, best.pt, history.jsonl, config.json)."),
        steps: int = typer.Option(2000, "--steps", min=1, help="Total optimisation steps."),
        batch_size: int = typer.Option(8, "--batch-size", min=1),
        lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate (warm-up + cosine decay)."),
        input_size: int = typer.Option(256, "--input-size", help="Crop side in pixels (the paper: 512)."),
        input_norm: str = typer.Option(
            "max", "--input-norm", help="Crop intensities: max (the paper) or minmax (robust stretch)."
        ),
        encoder: str = typer.Option("tu-resnet10t", "--encoder", help="smp encoder (e.g. tu-resnet10t, vgg16)."),
        encoder_depth: int = typer.Option(4, "--encoder-depth", min=1, max=5),
        decoder_channels: Optional[str] = typer.Option(
            None, "--decoder-channels", metavar="C1,C2,..", help="Decoder widths, one per encoder stage (default 128,64,32,16)."
        ),
        val_fraction: float = typer.Option(0.15, "--val-fraction", help="Share of images held out for validation."),
        folds: Optional[int] = typer.Option(None, "--folds", help="k-fold cross-validation: number of folds."),
        fold: Optional[int] = typer.Option(None, "--fold", help="Which fold (0-based) is the validation fold."),
        seed: int = typer.Option(0, "--seed", help="Training seed (init, sample order, augmentation)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        workers: int = typer.Option(2, "--workers", min=1, help="Processes for loading/rendering the training data."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)."),
        eval_every: int = typer.Option(200, "--eval-every", min=1, help="Validate every N steps."),
        checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1, help="Write last.pt every N steps."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
        pixel_spacing: Optional[tuple[float, float]] = typer.Option(
            None, "--pixel-spacing", metavar="ROW COL", help="Pixel spacing in mm for every image (PNG/TIFF)."
        ),
        export: Optional[Path] = typer.Option(
            None, "--export", help="After training, write EXPORT.safetensors + EXPORT.json from best.pt (e.g. "
                                   "cpak_cli/weights/knee)."
        ),
        no_amp: bool = typer.Option(False, "--no-amp", help="No mixed precision on CUDA."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress display."),
    ) -> None:
        """Train a landmark segmentation U-Net for one joint (Dice + BCE, Adam, paper augmentation)."""
        from cpak_cli.core.landmarks import JOINTS
        from cpak_cli.errors import CpakInputError

        if joint not in JOINTS and joint != "detector":
            raise CpakInputError(None, f"--joint must be one of {', '.join(JOINTS)}, detector; got {joint!r}")
        if data is None and not phantom and real is None:
            raise CpakInputError(None, "give training data: --data DIR, --phantom N and/or --real DIR")
        if (folds is None) != (fold is None):
            raise CpakInputError(None, "--folds and --fold go together")
        dec = (128, 64, 32, 16)[:encoder_depth] if encoder_depth <= 4 else (256, 128, 64, 32, 16)
        if decoder_channels:
            try:
                dec = tuple(int(c) for c in decoder_channels.split(","))
            except ValueError:
                raise CpakInputError(
                    None, f"--decoder-channels must be integers like 128,64,32,16, got {decoder_channels!r}"
                ) from None

        from cpak_cli.networks.models import ModelConfig
        from cpak_cli.training.options import TrainData, TrainOptions
        from cpak_cli.training.trainer import train
        from cpak_cli.training.training_crops import AugmentOptions

        augment = AugmentOptions(domain=domain, jitter=jitter)
        max_seconds = None if max_minutes is None else 60.0 * max_minutes
        phantom_options = {"variety": True} if phantom_variety else {}

        if joint == "detector":
            from cpak_cli.training.detector import detector_config, train_detector

            dopts = TrainOptions(out_dir=str(out), steps=steps, batch_size=batch_size, lr=lr, val_fraction=val_fraction,
                                 folds=folds, fold=fold, seed=seed, device=device, workers=workers, threads=threads,
                                 eval_every=eval_every, checkpoint_every=checkpoint_every, resume=resume,
                                 export=None if export is None else str(export), augment=augment,
                                 batch_workers=batch_workers, amp=not no_amp, max_seconds=max_seconds,
                                 init_weights=None if init is None else str(init), warmup_steps=warmup)

            def on_eval(step: int, loss: float, val: dict[str, Any]) -> None:
                typer.echo(f"step {step}: loss {loss:.4f}, val {val}")

            r = train_detector(data, dopts, detector_config(encoder=encoder, encoder_depth=encoder_depth,
                                                            decoder_channels=dec), on_eval=on_eval if progress else None,
                               phantom=phantom, phantom_seed=phantom_seed, phantom_options=phantom_options,
                               real_dir=real)
            typer.echo(f"done: {r['steps']} steps, {r['n_train']} train / {r['n_val']} val films, best {r['best']}"
                       + (f"; exported {r['exported']}" if r["exported"] else ""))
            return

        cfg = ModelConfig(joint=joint, encoder=encoder, encoder_depth=encoder_depth, decoder_channels=dec,
                          input_size=input_size, input_norm=input_norm)
        tdata = TrainData(data_dir=data, phantom=phantom, phantom_seed=phantom_seed, phantom_options=phantom_options,
                          real_dir=real,
                          pixel_spacing=None if pixel_spacing is None else (float(pixel_spacing[0]), float(pixel_spacing[1])))
        opts = TrainOptions(
            out_dir=str(out), steps=steps, batch_size=batch_size, lr=lr, val_fraction=val_fraction, folds=folds,
            fold=fold, seed=seed, device=device, amp=not no_amp, workers=workers, threads=threads,
            eval_every=eval_every, checkpoint_every=checkpoint_every, resume=resume,
            export=None if export is None else str(export), augment=augment, batch_workers=batch_workers,
            max_seconds=max_seconds, init_weights=None if init is None else str(init), warmup_steps=warmup,
            constraint_weight=constraint_weight,
        )
        result = train(cfg, tdata, opts, progress=progress)
        m = result.best_metric or {}
        med = m.get("median_mm")
        typer.echo(
            f"{'stopped' if result.interrupted else 'done'}: {result.steps_done}/{result.total_steps} steps on "
            f"{result.device}, {result.n_train_images} train / {result.n_val_images} val images, "
            f"final loss {result.final_loss if result.final_loss is None else round(result.final_loss, 4)}, "
            f"best val median {'-' if med is None else f'{med:.2f} mm'} (step {result.best_step}); "
            f"checkpoints in {result.out_dir}"
        )
        if result.interrupted:
            typer.echo(f"resume with: cpak train ... --out {out} --resume", err=True)
            raise typer.Exit(130)
        if result.exported is not None:
            path = result.exported
            typer.echo(f"exported {path} (+ model card {path.with_suffix('.json')})")
