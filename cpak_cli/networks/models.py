"""Landmark segmentation models: configuration, construction, weights files and model cards.

One U-Net per joint (paper Section II.B) outputs one logit channel per landmark, in the order of
``cpak_cli.core.landmarks.JOINTS[joint]``; a sigmoid turns them into the probability maps that
``cpak_cli.core.extraction`` reduces to points. Input: ``(N, 3, S, S)`` float32, the crop normalised to
``[0, 1]`` (``crops.normalize_crop``) replicated over 3 channels.

Weights live in ``<dir>/<name>.safetensors`` (tensors stored as float16, loaded as float32;
integer buffers stay integer) next to the model card ``<dir>/<name>.json`` (see
:func:`save_weights`). :func:`load_model` checks the file's sha256 against the card and the tensor
shapes against the architecture and raises :class:`cpak_cli.errors.CpakModelError` (one line) on
any mismatch. Heavy imports (torch, segmentation_models_pytorch, safetensors) are local.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_bytes, atomic_write_text
from cpak_cli.core.landmarks import JOINTS
from cpak_cli.errors import CpakModelError
from cpak_cli.networks.crops import mask_radius as _mask_radius

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

# OpenMP threads that wait by sleeping, not spinning: on a small shared CPU (2 cores, other
# processes busy) torch's spinning worker threads made a cold `cpak measure` up to twice as slow.
# Read when torch is first imported (all imports of torch here are local); a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Per-file and total size budgets of the shipped weights (bytes).
MAX_FILE_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 48 * 2**20
CARD_FORMAT = 1
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"


@dataclass
class ModelConfig:
    """Architecture of one landmark model.

    ``landmarks`` is the output channel order (defaults to ``JOINTS[joint]``); ``mask_radius`` is
    the training disc radius in crop pixels (defaults to ``crops.mask_radius(input_size)``, the
    paper's 15 px at 512). ``input_size`` is the crop side ``S`` in pixels.
    """

    joint: str
    landmarks: tuple[str, ...] = ()
    arch: str = "Unet"
    encoder: str = "tu-resnet10t"
    encoder_depth: int = 4
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    in_channels: int = 3
    input_size: int = 256
    mask_radius: float = 0.0
    input_width: int = 0  # 0: square input_size x input_size; else input_size rows x input_width columns (detector)
    input_norm: str = "max"  # crop intensity normalisation, crops.normalize_crop mode ("max" = the paper)

    def __post_init__(self) -> None:
        if not self.landmarks:
            if self.joint not in JOINTS:
                raise CpakModelError(f"unknown joint {self.joint!r} and no landmarks given; use hip/knee/ankle")
            self.landmarks = tuple(JOINTS[self.joint])
        self.landmarks = tuple(str(n) for n in self.landmarks)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.encoder_depth = int(self.encoder_depth)
        self.in_channels = int(self.in_channels)
        self.input_size = int(self.input_size)
        if not self.mask_radius or self.mask_radius <= 0:
            self.mask_radius = float(_mask_radius(self.input_size))
        self.mask_radius = float(self.mask_radius)
        if self.arch != "Unet":
            raise CpakModelError(f"unsupported architecture {self.arch!r} (only 'Unet')")
        if len(self.decoder_channels) != self.encoder_depth:
            raise CpakModelError(
                f"decoder_channels has {len(self.decoder_channels)} entries but encoder_depth is {self.encoder_depth}"
            )
        if self.input_norm not in ("max", "minmax"):
            raise CpakModelError(f"unknown input_norm {self.input_norm!r}; use max or minmax")
        stride = 2**self.encoder_depth
        self.input_width = int(self.input_width or 0)
        for what, v in (("input_size", self.input_size), ("input_width", self.input_width or self.input_size)):
            if v < stride or v % stride:
                raise CpakModelError(f"{what} {v} must be a multiple of {stride} (2**encoder_depth)")

    @property
    def classes(self) -> int:
        return len(self.landmarks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["landmarks"] = list(self.landmarks)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CpakModelError(f"unknown architecture field(s) {unknown}")
        if "joint" not in data:
            raise CpakModelError("architecture has no 'joint'")
        kw = dict(data)
        if "landmarks" in kw:
            kw["landmarks"] = tuple(kw["landmarks"])
        if "decoder_channels" in kw:
            kw["decoder_channels"] = tuple(kw["decoder_channels"])
        return cls(**kw)


def build_model(cfg: ModelConfig) -> "torch.nn.Module":
    """A randomly initialised ``smp.Unet`` for ``cfg`` (logits out, ``cfg.classes`` channels)."""
    import segmentation_models_pytorch as smp

    try:
        return smp.Unet(
            encoder_name=cfg.encoder,
            encoder_weights=None,
            encoder_depth=cfg.encoder_depth,
            decoder_channels=tuple(cfg.decoder_channels),
            in_channels=cfg.in_channels,
            classes=cfg.classes,
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CpakModelError(f"cannot build encoder {cfg.encoder!r}: {' '.join(str(exc).split())[:200]}") from None


def build_inference_model(cfg: ModelConfig, *, empty: bool = False) -> "torch.nn.Module":
    """The network for ``cfg`` as inference builds it: the plain-torch
    :class:`cpak_cli.networks.unet.ResNet10tUnet` (same state-dict names, same outputs as
    :func:`build_model`; no segmentation-models-pytorch import) for the encoders it covers
    (:data:`cpak_cli.networks.unet.NATIVE_ENCODERS`), else :func:`build_model`. ``empty``
    allocates no initialised weights (``meta`` tensors) for a model whose every tensor is about
    to be loaded with ``load_state_dict(..., assign=True)``."""
    from cpak_cli.networks.unet import NATIVE_ENCODERS, ResNet10tUnet

    if cfg.encoder not in NATIVE_ENCODERS:
        return build_model(cfg)
    import torch

    with torch.device("meta") if empty else torch.device("cpu"):
        return ResNet10tUnet(cfg.encoder_depth, cfg.decoder_channels, cfg.in_channels, cfg.classes)


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; otherwise checked and returned."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CpakModelError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise CpakModelError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def to_input(crops: "np.ndarray") -> "np.ndarray":
    """``(N, S, S)`` or ``(S, S)`` normalised crops -> ``(N, 3, S, S)`` float32 (3-channel replicate)."""
    import numpy as np

    a = np.asarray(crops, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    return np.ascontiguousarray(np.repeat(a[:, None], 3, axis=1))


def predict(model: "torch.nn.Module", crops: "np.ndarray", device: str = "cpu", batch_size: int = 8) -> "np.ndarray":
    """Probability maps ``(N, C, S, S)`` float32 for normalised crops ``(N, S, S)`` (model in eval mode).

    Uses autocast (bf16 if supported, else fp16) on CUDA; float32 on CPU. Inputs go in the
    channels-last layout when the model's weights are in it (:func:`load_model`).
    """
    import numpy as np
    import torch

    x_all = to_input(crops)
    outs = []
    was_training = model.training
    model.eval()
    dev = torch.device(device)
    use_amp = dev.type == "cuda"
    first = next(iter(model.parameters()), None)
    channels_last = first is not None and first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last) \
        and not first.is_contiguous()
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    with torch.inference_mode():
        for i in range(0, len(x_all), max(1, batch_size)):
            x = torch.from_numpy(x_all[i : i + batch_size]).to(dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(x)
            outs.append(torch.sigmoid(logits.float()).cpu().numpy())
    if was_training:
        model.train()
    return np.concatenate(outs, axis=0) if outs else np.zeros((0, 0, 0, 0), np.float32)


# --------------------------------------------------------------------------- weights files


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


_weights_dir = weights_dir


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
    try:
        return ModelConfig.from_dict(card["architecture"])
    except CpakModelError as exc:
        raise CpakModelError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CpakModelError(f"{where}: bad architecture in model card ({' '.join(str(exc).split())[:160]})") from None


def load_model(
    name_or_path: str | Path, weights_dir: str | Path | None = None, device: str = "cpu"
) -> tuple["torch.nn.Module", dict[str, Any]]:
    """Load a model by name (``"knee"`` in the weights dir) or path; returns ``(model.eval(), card)``.

    Checks: both files exist, the file's sha256 equals the card's, the tensor names and shapes
    equal the card architecture's (strict load). Any failure -> CpakModelError with one line.
    The card gets ``card["config"] = ModelConfig`` and ``card["path"]`` added.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

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
    # channels-last (NHWC) convolutions: about a third less CPU time with oneDNN than NCHW for
    # these small U-Nets (logits equal to 1e-5); predict() feeds inputs in the same layout
    model.to(torch.device(resolve_device(device)))
    model.to(memory_format=torch.channels_last)
    model.eval()
    card = dict(card)
    card["config"] = cfg
    card["path"] = str(wpath)
    return model, card


def accuracy_summary(acc: dict[str, Any] | None) -> str:
    """A short text for an accuracy dict (median error in mm if present)."""
    if not acc:
        return "-"
    parts = []
    for key, fmt in (("median_mm", "median {:.2f} mm"), ("val_median_mm", "val median {:.2f} mm"), ("p95_mm", "p95 {:.2f} mm")):
        v = acc.get(key)
        if isinstance(v, (int, float)):
            parts.append(fmt.format(v))
    if isinstance(acc.get("found_rate"), (int, float)):
        parts.append(f"found {100 * acc['found_rate']:.0f}%")
    ph = acc.get("phantom_heldout_true_boxes") or {}
    joint = next((v for k, v in ph.items() if k.startswith("joint:") and isinstance(v, dict)), None)
    if joint and isinstance(joint.get("median"), (int, float)):
        parts.append(f"phantom {joint['median']:.2f} mm")
    real = acc.get("real_heldout") or {}
    for key, label in (("head_dx_vs_top_label", "real head x"), ("ankle_centre_vs_label", "real ankle"),
                       ("knee_centre_vs_label", "real knee")):
        r = real.get(key)
        if isinstance(r, dict) and isinstance(r.get("median_found"), (int, float)):
            parts.append(f"{label} {r['median_found']:.1f} mm, found {r.get('found_pct', 0):.0f}%")
    det = real.get("detector")
    if isinstance(det, dict) and det:
        pcts = [v.get("found_pct") for v in det.values() if isinstance(v, dict)]
        found = [float(f) for f in pcts if isinstance(f, (int, float))]
        if found and len(found) == len(pcts):
            parts.append(f"real joints found {min(found):.0f}-{max(found):.0f}%")
    if isinstance(real.get("legs_with_all_angles_pct"), (int, float)):
        parts.append(f"real legs with all angles {real['legs_with_all_angles_pct']:.0f}%")
    if not parts:
        parts = [f"{k}={v}" for k, v in list(acc.items())[:2] if isinstance(v, (int, float, str))]
    return ", ".join(parts) or "-"


def list_models(weights_dir: str | Path | None = None, *, check_shapes: bool = False) -> list[dict[str, Any]]:
    """Summaries of the models in a weights directory (cards and weights files), sorted by name.

    Each entry: name, joint, encoder, input_size, size_bytes, size_mb, sha_ok (bool | None),
    valid (bool), error (one line or None), accuracy (dict), accuracy_summary (str), created,
    card (path), weights (path). ``check_shapes=True`` also builds the model and loads it strictly.
    """
    d = _weights_dir(weights_dir)
    if not d.is_dir():
        return []
    stems = sorted(
        {p.name[: -len(WEIGHTS_SUFFIX)] for p in d.glob("*" + WEIGHTS_SUFFIX)}
        | {p.name[: -len(CARD_SUFFIX)] for p in d.glob("*" + CARD_SUFFIX)}
    )
    out: list[dict[str, Any]] = []
    for stem in stems:
        wpath, cpath = d / (stem + WEIGHTS_SUFFIX), d / (stem + CARD_SUFFIX)
        entry: dict[str, Any] = {
            "name": stem, "joint": None, "encoder": None, "input_size": None, "size_bytes": None, "size_mb": None,
            "sha_ok": None, "valid": False, "error": None, "accuracy": {}, "accuracy_summary": "-",
            "created": None, "card": str(cpath), "weights": str(wpath),
        }
        if cpath.is_file():
            try:
                raw = json.loads(cpath.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raw = None
            if isinstance(raw, dict) and "architecture" not in raw and "sha256" not in raw:
                continue  # some other JSON file, not a model card
        try:
            if not wpath.is_file():
                raise CpakModelError(f"{wpath.name}: weights file missing")
            entry["size_bytes"] = wpath.stat().st_size
            entry["size_mb"] = round(entry["size_bytes"] / 2**20, 2)
            card = read_card(cpath)
            arch = card.get("architecture", {})
            entry.update(
                name=card.get("name", stem), joint=card.get("joint", arch.get("joint")), encoder=arch.get("encoder"),
                input_size=card.get("input_size", arch.get("input_size")), created=card.get("created"),
            )
            acc = card.get("accuracy") or {}
            entry["accuracy"] = acc if isinstance(acc, dict) else {}
            entry["accuracy_summary"] = accuracy_summary(entry["accuracy"])
            entry["sha_ok"] = _sha256(wpath.read_bytes()) == card["sha256"]
            if not entry["sha_ok"]:
                raise CpakModelError(f"{wpath.name}: sha256 does not match the model card")
            card_config(card, cpath)
            if entry["size_bytes"] > MAX_FILE_BYTES:
                raise CpakModelError(f"{wpath.name}: {entry['size_mb']} MiB is over the 16 MiB budget")
            if check_shapes:
                load_model(wpath, device="cpu")
            entry["valid"] = True
        except CpakModelError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def model_size_fp16(cfg: ModelConfig) -> int:
    """Bytes of the safetensors file :func:`save_weights` would write for a fresh ``cfg`` model."""
    from safetensors.torch import save as st_save

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
    "ModelConfig", "build_model", "build_inference_model", "resolve_device", "to_input", "predict", "weights_dir", "model_paths",
    "state_dict_fp16", "save_weights", "read_card", "card_config", "load_model", "list_models",
    "accuracy_summary", "model_size_fp16", "record_accuracy", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES",
)
