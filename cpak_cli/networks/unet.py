"""The shipped U-Net (encoder ``tu-resnet10t``) in plain torch, for inference without
segmentation-models-pytorch.

Importing segmentation-models-pytorch imports timm and torchvision's model zoo (seconds on a
small CPU). :class:`ResNet10tUnet` is the same network as ``smp.Unet(encoder_name="tu-resnet10t",
encoder_weights=None, encoder_depth=D, decoder_channels=C, in_channels=I, classes=K)`` of
segmentation-models-pytorch 0.4-0.6 with timm's ``resnet10t``: the same modules under the same
state-dict names (weights saved from one load strictly into the other) and the same forward:
timm's deep "tiered" stem (3x3 convolutions 24, 32, 64 wide, the first with stride 2), batch
norm, ReLU, 3x3 max pool, one BasicBlock per stage (64, 128, 256, 512 channels; average-pool
shortcut when downsampling), the features after the stem's ReLU and after stages 1..D-1 as the
skips; smp's decoder (nearest upsampling to the next skip's size, concatenation, two 3x3
conv-BN-ReLU per block, the last block without a skip) and a 3x3 convolution head giving logits.
tests/networks/test_unet.py checks equal outputs against smp on random weights and inputs.

For inference, :meth:`ResNet10tUnet.fold_batchnorm` folds every batch norm into the convolution
before it (eval mode: the norm is a fixed per-channel affine map), leaving one convolution with a
bias per pair: the same function (float sums in another order), fewer passes over the feature
maps.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet10tUnet", "NATIVE_ENCODERS"]

#: Encoders built here (anything else is built by segmentation-models-pytorch).
NATIVE_ENCODERS = ("tu-resnet10t",)
_STAGE_CHANNELS = (64, 128, 256, 512)
_STEM_CHANNELS = (24, 32, 64)


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _folded(conv: nn.Module, bn: nn.Module) -> nn.Conv2d:
    """``conv`` followed by ``bn`` (both in eval mode) as one convolution with a bias: ``conv``
    itself, its weight and bias replaced (the product formed in float64 and rounded once to the
    convolution's dtype). Raises TypeError when ``bn`` is not a batch norm (folded already)."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"cannot fold {type(bn).__name__} into {type(conv).__name__} (folded already?)")
    assert bn.running_mean is not None and bn.running_var is not None

    def f64(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach().double()

    dtype = conv.weight.dtype
    w, b = fuse_conv_bn_weights(conv.weight.detach().double(), f64(conv.bias), bn.running_mean.double(),
                                bn.running_var.double(), bn.eps, f64(bn.weight), f64(bn.bias))
    conv.weight = nn.Parameter(w.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(b.to(dtype), requires_grad=False)
    return conv


def _fold_sequence(seq: nn.Sequential) -> None:
    """Fold each ``Conv2d, BatchNorm2d`` pair of ``seq`` in place (the norm becomes an Identity)."""
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
            seq[i] = _folded(seq[i], seq[i + 1])
            seq[i + 1] = nn.Identity()


class _BasicBlock(nn.Module):
    """timm's BasicBlock (names conv1, bn1, act1, conv2, bn2, act2, downsample)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3(cin, cout, stride)
        self.bn1: nn.Module = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = _conv3(cout, cout)
        self.bn2: nn.Module = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            pool: nn.Module = (nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                               if stride != 1 else nn.Identity())
            self.downsample = nn.Sequential(pool, nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def fold_batchnorm(self) -> None:
        self.conv1, self.bn1 = _folded(self.conv1, self.bn1), nn.Identity()
        self.conv2, self.bn2 = _folded(self.conv2, self.bn2), nn.Identity()
        if isinstance(self.downsample, nn.Sequential):
            _fold_sequence(self.downsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += shortcut
        return self.act2(out)


class _ResNet10tFeatures(nn.Module):
    """timm ``resnet10t`` up to stage ``depth - 1`` (what smp's ``encoder.model`` holds)."""

    def __init__(self, in_channels: int, depth: int) -> None:
        super().__init__()
        a, b, c = _STEM_CHANNELS
        self.conv1 = nn.Sequential(
            _conv3(in_channels, a, 2), nn.BatchNorm2d(a), nn.ReLU(inplace=True),
            _conv3(a, b), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
            _conv3(b, c),
        )
        self.bn1: nn.Module = nn.BatchNorm2d(c)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stages = depth - 1
        cin = c
        for k in range(self.stages):
            cout = _STAGE_CHANNELS[k]
            self.add_module(f"layer{k + 1}", nn.Sequential(_BasicBlock(cin, cout, 1 if k == 0 else 2)))
            cin = cout

    def fold_batchnorm(self) -> None:
        _fold_sequence(self.conv1)
        self.conv1[-1], self.bn1 = _folded(self.conv1[-1], self.bn1), nn.Identity()
        for k in range(self.stages):
            getattr(self, f"layer{k + 1}")[0].fold_batchnorm()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv1(x)))
        feats = [x]
        x = self.maxpool(x)
        for k in range(self.stages):
            x = getattr(self, f"layer{k + 1}")(x)
            feats.append(x)
        return feats


class _Encoder(nn.Module):
    def __init__(self, in_channels: int, depth: int) -> None:
        super().__init__()
        self.model = _ResNet10tFeatures(in_channels, depth)


class _Conv2dReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv3(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _Conv2dReLU(cin + skip, cout)
        self.conv2 = _Conv2dReLU(cout, cout)

    def forward(self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, size=(int(size[0]), int(size[1])), mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class _Decoder(nn.Module):
    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        enc = list(encoder_channels)[::-1]  # deepest first
        ins = [enc[0]] + list(decoder_channels[:-1])
        skips = enc[1:] + [0]
        self.blocks = nn.ModuleList(_DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels))


class ResNet10tUnet(nn.Module):
    """smp's ``Unet`` with the ``tu-resnet10t`` encoder (see the module docstring).

    Input ``(N, in_channels, H, W)`` with H and W multiples of ``2**depth``; output logits
    ``(N, classes, H, W)``.
    """

    def __init__(self, depth: int, decoder_channels: Sequence[int], in_channels: int, classes: int) -> None:
        super().__init__()
        if not 2 <= depth <= len(_STAGE_CHANNELS) + 1 or len(decoder_channels) != depth:
            raise ValueError(f"unsupported depth {depth} / decoder_channels {tuple(decoder_channels)}")
        self.encoder = _Encoder(in_channels, depth)
        skip_channels = [_STEM_CHANNELS[-1]] + list(_STAGE_CHANNELS[: depth - 1])
        self.decoder = _Decoder(skip_channels, decoder_channels)
        self.segmentation_head = nn.Sequential(nn.Conv2d(decoder_channels[-1], classes, 3, padding=1))

    def fold_batchnorm(self) -> "ResNet10tUnet":
        """Fold every batch norm into the convolution before it, in place; returns ``self``.

        Only for inference: the model must be in eval mode (the running statistics are what is
        folded) and is meant to stay there; its state dict then holds a bias per folded
        convolution and no batch-norm tensors. Outputs equal the unfolded model's up to float
        rounding. Raises RuntimeError in training mode, TypeError when folded already.
        """
        if self.training:
            raise RuntimeError("fold_batchnorm needs a model in eval mode (inference only)")
        self.encoder.model.fold_batchnorm()
        for block in self.decoder.blocks:
            assert isinstance(block, _DecoderBlock)
            _fold_sequence(block.conv1)
            _fold_sequence(block.conv2)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder.model(x)
        sizes = [x.shape[2:]] + [f.shape[2:] for f in feats]  # full, /2, /4, ...
        y = feats[-1]
        skips = feats[:-1][::-1]
        for i, block in enumerate(self.decoder.blocks):
            size = sizes[len(feats) - 1 - i]
            y = block(y, size, skips[i] if i < len(skips) else None)
        return self.segmentation_head(y)
