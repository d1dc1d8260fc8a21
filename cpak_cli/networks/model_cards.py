"""Weights files and model cards: where they live, writing, reading, loading with checks, recording accuracy.

Weights live in ``<dir>/<name>.safetensors`` (tensors stored as float16, loaded as float32;
integer buffers stay integer) next to the model card ``<dir>/<name>.json`` (see
:func:`save_weights`). :func:`load_model` checks the file's sha256 against the card and the tensor
shapes against the architecture and raises :class:`cpak_cli.errors.CpakModelError` (one line) on
any mismatch. Sizes are in bytes. Heavy imports (torch, safetensors) are local, and so is
:mod:`cpak_cli.networks.models` (which re-exports :func:`load_model` and :func:`weights_dir`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_bytes, atomic_write_text
from cpak_cli.errors import CpakModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cpak_cli.networks.models import ModelConfig

#: Per-file and total size budgets of the shipped weights (bytes).
MAX_FILE_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 48 * 2**20
CARD_FORMAT = 1
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"


def weights_dir(explicit: str | Path | None = None) -> Path:
    """Where weights live: ``explicit`` > env ``CPAK_WEIGHTS_DIR`` > the package's own ``weights/``.

    The shipped weights are package data (``cpak_cli/weights/``), found through
    :mod:`importlib.resources`, so a wheel or ``pipx`` install has them as well as a checkout. The
    package is installed unzipped, so the resource is a real folder and is returned as a ``Path``.
    """
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("CPAK_WEIGHTS_DIR")
    if env:
        return Path(env)
    from importlib.resources import files

    shipped = files("cpak_cli").joinpath("weights")
    if isinstance(shipped, Path):
        return shipped.resolve()
    raise CpakModelError(  # e.g. a zipped install: no real files to memory-map
        f"the shipped weights are not a folder on disk ({shipped!r}); set CPAK_WEIGHTS_DIR or pass --weights-dir"
    )




def _stem_path(path: str | Path) -> Path:
    """``x/knee``, ``x/knee.safetensors`` or ``x/knee.json`` -> ``x/knee``."""
    p = Path(path)
    if p.name.endswith(WEIGHTS_SUFFIX):
        return p.with_name(p.name[: -len(WEIGHTS_SUFFIX)])
    if p.name.endswith(CARD_SUFFIX):
        return p.with_name(p.name[: -len(CARD_SUFFIX)])
    return p


def model_paths(name_or_path: str | Path, weights_dir_: str | Path | None = None) -> tuple[Path, Path]:
    """``(weights.safetensors, card.json)`` for a model name (looked up in :func:`weights_dir`) or a path.

    A value containing a path separator or ending in ``.safetensors``/``.json`` is a path;
    a bare name (``"knee"``) is looked up in the weights directory.
    """
    s = str(name_or_path)
    is_path = os.sep in s or "/" in s or s.endswith(WEIGHTS_SUFFIX) or s.endswith(CARD_SUFFIX)
    stem = _stem_path(s) if is_path else weights_dir(weights_dir_) / s
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + CARD_SUFFIX)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_dict_fp16(model: "torch.nn.Module") -> dict[str, "torch.Tensor"]:
    """The model's state dict as contiguous CPU tensors, floating ones cast to float16.

    Raises CpakModelError when a value does not fit float16 (overflow to inf).
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        t = v.detach().cpu()
        if t.is_floating_point():
            t16 = t.to(torch.float16)
            if not torch.isfinite(t16).all() and torch.isfinite(t).all():
                raise CpakModelError(f"tensor {k} overflows float16 (max |v| = {t.abs().max().item():.3g})")
            t = t16
        out[k] = t.contiguous()
    return out


def save_weights(
    model: "torch.nn.Module",
    cfg: ModelConfig,
    path: str | Path,
    training: dict[str, Any] | None = None,
    accuracy: dict[str, Any] | None = None,
    *,
    name: str | None = None,
) -> Path:
    """Write ``<path>.safetensors`` (float16) and the model card ``<path>.json``, both atomically.

    ``path`` may be given with or without the ``.safetensors`` suffix; the model's name is the
    file stem unless ``name`` is given. Returns the safetensors path. The card holds: name, joint,
    landmarks, architecture (all ModelConfig fields), input_size, mask_radius_px, file, sha256,
    size_bytes, num_tensors, num_parameters, dtype, training, tool_version, created, accuracy.
    Raises CpakModelError when the file exceeds the per-file size budget (16 MiB).
    """
    from safetensors.torch import save as st_save

    stem = _stem_path(path)
    name = name or stem.name
    tensors = state_dict_fp16(model)
    meta = {"name": name, "joint": cfg.joint, "format": "cpak-cli", "architecture": json.dumps(cfg.to_dict())}
    data = st_save(tensors, metadata=meta)
    if len(data) > MAX_FILE_BYTES:
        raise CpakModelError(
            f"{name}: weights file would be {len(data) / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB budget"
        )
    n_params = int(sum(p.numel() for p in model.parameters()))
    card = {
        "card_format": CARD_FORMAT,
        "name": name,
        "joint": cfg.joint,
        "landmarks": list(cfg.landmarks),
        "architecture": cfg.to_dict(),
        "input_size": cfg.input_size,
        "mask_radius_px": cfg.mask_radius,
        "file": stem.name + WEIGHTS_SUFFIX,
        "sha256": _sha256(data),
        "size_bytes": len(data),
        "num_tensors": len(tensors),
        "num_parameters": n_params,
        "dtype": "float16",
        "training": dict(training or {}),
        "tool_version": __version__,
        "created": _dt.date.today().isoformat(),
        "accuracy": dict(accuracy or {}),
    }
    wpath = stem.with_name(stem.name + WEIGHTS_SUFFIX)
    atomic_write_bytes(wpath, data)
    atomic_write_text(stem.with_name(stem.name + CARD_SUFFIX), json.dumps(card, indent=2, default=_json_default) + "\n")
    return wpath


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_card(card_path: str | Path) -> dict[str, Any]:
    """Read and minimally validate a model card (raises CpakModelError)."""
    card_path = Path(card_path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CpakModelError(f"{card_path}: model card not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CpakModelError(f"{card_path}: cannot read model card ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise CpakModelError(f"{card_path}: model card is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(card, dict):
        raise CpakModelError(f"{card_path}: model card must be a JSON object")
    for key in ("name", "architecture", "sha256"):
        if key not in card:
            raise CpakModelError(f"{card_path}: model card has no {key!r}")
    if not isinstance(card["architecture"], dict):
        raise CpakModelError(f"{card_path}: model card 'architecture' must be an object")
    return card


def card_config(card: dict[str, Any], where: str | Path = "<card>") -> ModelConfig:
    """The :class:`ModelConfig` a card describes (raises CpakModelError)."""
    from cpak_cli.networks.models import ModelConfig

    try:
        return ModelConfig.from_dict(card["architecture"])
    except CpakModelError as exc:
        raise CpakModelError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CpakModelError(f"{where}: bad architecture in model card ({' '.join(str(exc).split())[:160]})") from None


def load_model(
    name_or_path: str | Path, weights_dir: str | Path | None = None, device: str = "cpu", *,
    fold_batchnorm: bool = True,
) -> tuple["torch.nn.Module", dict[str, Any]]:
    """Load a model by name (``"knee"`` in the weights dir) or path; returns ``(model.eval(), card)``.

    Checks: both files exist, the file's sha256 equals the card's, the tensor names and shapes
    equal the card architecture's (strict load of the file's state dict). Any failure ->
    CpakModelError with one line. The card gets ``card["config"] = ModelConfig`` and
    ``card["path"]`` added.

    The model is for inference: with ``fold_batchnorm`` (default) the batch norms of a native
    U-Net (:meth:`cpak_cli.networks.unet.ResNet10tUnet.fold_batchnorm`) are folded into their
    convolutions after the checked load (same outputs up to float rounding, less CPU time; its
    state dict then differs from the file's). Pass ``fold_batchnorm=False`` for the file's own
    network (fine-tuning, comparing state dicts).
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    from cpak_cli.networks.models import build_inference_model, resolve_device
    from cpak_cli.networks.unet import ResNet10tUnet

    wpath, cpath = model_paths(name_or_path, weights_dir)
    if not wpath.is_file():
        hint = "" if cpath.is_file() else f" (looked in {wpath.parent}; set CPAK_WEIGHTS_DIR or pass --weights-dir)"
        raise CpakModelError(f"{wpath}: weights file not found{hint}")
    card = read_card(cpath)
    try:
        data = wpath.read_bytes()
    except OSError as exc:
        raise CpakModelError(f"{wpath}: cannot read weights ({exc.__class__.__name__})") from None
    sha = _sha256(data)
    if sha != card["sha256"]:
        raise CpakModelError(f"{wpath}: sha256 {sha[:12]}... does not match the model card ({str(card['sha256'])[:12]}...)")
    cfg = card_config(card, cpath)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CpakModelError(f"{wpath}: not a valid safetensors file ({' '.join(str(exc).split())[:160]})") from None
    model = build_inference_model(cfg, empty=True)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CpakModelError(
            f"{wpath}: tensors do not match architecture {cfg.encoder}/depth {cfg.encoder_depth} ({what}"
            f"{', ...' if len(missing or extra) > 3 else ''})"
        )
    for k, ref in expected.items():
        if tuple(tensors[k].shape) != tuple(ref.shape):
            raise CpakModelError(
                f"{wpath}: tensor {k} has shape {tuple(tensors[k].shape)}, architecture expects {tuple(ref.shape)}"
            )
    state = {k: (t.to(expected[k].dtype) if t.is_floating_point() else t.to(expected[k].dtype)) for k, t in tensors.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CpakModelError(f"{wpath}: cannot load weights ({' '.join(str(exc).split())[:160]})") from None
    if "num_tensors" in card and int(card["num_tensors"]) != len(tensors):
        raise CpakModelError(f"{wpath}: card says {card['num_tensors']} tensors, file has {len(tensors)}")
    model.eval()
    if fold_batchnorm and isinstance(model, ResNet10tUnet):
        model.fold_batchnorm()
    # channels-last (NHWC) convolutions: about a third less CPU time with oneDNN than NCHW for
    # these small U-Nets (logits equal to 1e-5); predict() feeds inputs in the same layout
    model.to(torch.device(resolve_device(device)))
    model.to(memory_format=torch.channels_last)
    card = dict(card)
    card["config"] = cfg
    card["path"] = str(wpath)
    return model, card


def model_size_fp16(cfg: ModelConfig) -> int:
    """Bytes of the safetensors file :func:`save_weights` would write for a fresh ``cfg`` model."""
    from safetensors.torch import save as st_save

    from cpak_cli.networks.models import build_model

    return len(st_save(state_dict_fp16(build_model(cfg))))


def record_accuracy(name_or_path: str | Path, accuracy: dict[str, Any], weights_dir_: str | Path | None = None) -> Path:
    """Write measured accuracy into a model card (the weights file and its hash are untouched)."""
    wpath, cpath = model_paths(name_or_path, weights_dir_)
    card = read_card(cpath)
    if not wpath.is_file() or _sha256(wpath.read_bytes()) != card["sha256"]:
        raise CpakModelError(f"{wpath}: weights missing or not the file the card describes")
    card["accuracy"] = dict(accuracy)
    atomic_write_text(cpath, json.dumps(card, indent=2, default=_json_default) + "\n")
    return cpath


__all__: Sequence[str] = (
    "weights_dir", "model_paths", "state_dict_fp16", "save_weights", "read_card", "card_config", "load_model",
    "model_size_fp16", "record_accuracy", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "CARD_FORMAT", "WEIGHTS_SUFFIX",
    "CARD_SUFFIX",
)
