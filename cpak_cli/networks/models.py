"""Landmark segmentation models: configuration, construction, device choice and prediction.

One U-Net per joint (paper Section II.B) outputs one logit channel per landmark, in the order of
``cpak_cli.core.landmarks.JOINTS[joint]``; a sigmoid turns them into the probability maps that
``cpak_cli.core.extraction`` reduces to points. Input: ``(N, 3, S, S)`` float32, the crop normalised to
``[0, 1]`` (``crops.normalize_crop``) replicated over 3 channels.

Weights files and model cards (save, load with sha256 and shape checks, record accuracy) are in
:mod:`cpak_cli.networks.model_cards`; listing a weights folder in :mod:`cpak_cli.networks.model_list`.
Heavy imports (torch, segmentation_models_pytorch) are local.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Sequence

from cpak_cli.core.landmarks import JOINTS
from cpak_cli.errors import CpakModelError
from cpak_cli.networks.crops import mask_radius as _mask_radius

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch


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


__all__: Sequence[str] = (
    "ModelConfig", "build_model", "build_inference_model", "resolve_device", "to_input", "predict",
)
