"""Training checkpoints and what is made from them.

``last.pt`` / ``best.pt`` (a ``torch.save`` dict of format :data:`CHECKPOINT_FORMAT`, written
atomically, loaded with ``weights_only``), the RNG states they carry, the export of a checkpoint
to a shipped model (``.safetensors`` + model card, :mod:`cpak_cli.networks.model_cards`) and the
start of a fine-tuning run from an exported model.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cpak_cli.atomic import atomic_write_bytes
from cpak_cli.errors import CpakInputError, CpakModelError
from cpak_cli.networks.models import ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch


CHECKPOINT_FORMAT = "cpak-train-1"


def init_from_weights(model: "torch.nn.Module", cfg: ModelConfig, path: str | Path) -> dict[str, Any]:
    """Load an exported model (``.safetensors`` + card, checked by :func:`cpak_cli.networks.model_cards.load_model`)
    into ``model`` for fine-tuning; returns what the new card records about it.

    Raises:
        CpakInputError: the exported model's architecture differs from ``cfg``.
        CpakModelError: the files are missing or do not match their card.
    """
    from cpak_cli.networks.model_cards import load_model

    init, card = load_model(path, device="cpu", fold_batchnorm=False)
    if card["config"].to_dict() != cfg.to_dict():
        raise CpakInputError(path, "--init: the model's architecture differs from the one being trained")
    model.load_state_dict({k: v.float() for k, v in init.state_dict().items()})
    return {"file": str(path), "sha256": card.get("sha256"), "training": card.get("training")}


# ----------------------------------------------------------------------------- checkpoints


def rng_state() -> dict[str, Any]:
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


def set_rng_state(st: dict[str, Any]) -> None:
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
    from cpak_cli.networks.model_cards import save_weights
    from cpak_cli.networks.models import build_model

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



__all__ = ["CHECKPOINT_FORMAT", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "export_checkpoint",
           "init_from_weights"]
