"""The plain-torch U-Net (cpak_cli.networks.unet) is smp's Unet with the tu-resnet10t encoder:
same state-dict names and shapes, same outputs; inference loads it without importing smp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from cpak_cli.networks.model_cards import load_model  # noqa: E402
from cpak_cli.networks.models import ModelConfig, build_inference_model, build_model  # noqa: E402
from cpak_cli.networks.unet import ResNet10tUnet  # noqa: E402


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights and batch-norm statistics (smp's init leaves running stats at 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.rand(t.shape, generator=g) * 0.5 + 0.75 if name.endswith("running_var") else \
                    torch.randn(t.shape, generator=g) * 0.1
                t.copy_(noise)


@pytest.mark.parametrize("depth, decoder, size", [
    (4, (128, 64, 32, 16), (64, 48)),  # the shipped configuration, non-square input
    (5, (64, 32, 16, 16, 8), (64, 64)),
    (3, (32, 16, 8), (40, 24)),
])
def test_same_names_and_outputs_as_smp(depth, decoder, size):
    cfg = ModelConfig("knee", encoder_depth=depth, decoder_channels=decoder, input_size=size[0])
    ref = build_model(cfg).eval()
    _randomise(ref, depth)
    net = ResNet10tUnet(depth, decoder, cfg.in_channels, cfg.classes).eval()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        out, want = net(x), ref(x)
    assert out.shape == (3, cfg.classes, *size)
    assert torch.allclose(out, want, rtol=0, atol=1e-5), float((out - want).abs().max())


@pytest.mark.parametrize("joint", ["detector", "knee"])
def test_shipped_weights_give_smps_outputs(joint):
    native, card = load_model(joint, fold_batchnorm=False)
    assert isinstance(native, ResNet10tUnet) and not native.training
    ref = build_model(card["config"]).eval()
    ref.load_state_dict(native.state_dict(), strict=True)
    cfg = card["config"]
    x = torch.rand(2, 3, cfg.input_size, cfg.input_width or cfg.input_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = ref(x)
        # as loaded (channels-last): the same network, float sums in another order
        fast = native(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(torch.sigmoid(fast), torch.sigmoid(want), rtol=0, atol=1e-5)
        native.to(memory_format=torch.contiguous_format)
        assert torch.equal(native(x), want)


@pytest.mark.parametrize("joint", ["hip", "knee", "ankle", "detector"])
def test_folded_batchnorm_gives_the_unfolded_outputs(joint):
    """load_model folds the batch norms into the convolutions (inference): same probabilities
    within 1e-5 as the network the file holds, both as loaded (channels-last), on random inputs."""
    folded, card = load_model(joint)
    plain, _ = load_model(joint, fold_batchnorm=False)
    names = set(folded.state_dict())
    assert not any("running_" in k for k in names) and len(names) < len(plain.state_dict())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    cfg = card["config"]
    x = torch.rand(3, 3, cfg.input_size, cfg.input_width or cfg.input_size, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        a, b = torch.sigmoid(folded(x)), torch.sigmoid(plain(x))
    assert torch.allclose(a, b, rtol=0, atol=1e-5), float((a - b).abs().max())


def test_folding_is_for_inference_only():
    net = ResNet10tUnet(4, (128, 64, 32, 16), 3, 5)
    _randomise(net, 1)
    with pytest.raises(RuntimeError, match="eval"):
        net.fold_batchnorm()  # training mode: the batch statistics are not fixed yet
    x = torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        want = net.eval()(x)
        got = net.fold_batchnorm()(x)
    assert torch.allclose(got, want, rtol=0, atol=1e-5), float((got - want).abs().max())
    with pytest.raises(TypeError, match="folded already"):
        net.fold_batchnorm()


def test_other_encoders_still_built_by_smp():
    cfg = ModelConfig("knee", encoder="tu-resnet14t", input_size=64)
    model = build_inference_model(cfg)
    assert not isinstance(model, ResNet10tUnet)
    assert set(model.state_dict()) == set(build_model(cfg).state_dict())


def test_loading_the_shipped_models_does_not_import_smp():
    code = ("import sys\nfrom cpak_cli.networks.model_cards import load_model\n"
            "for j in ('hip', 'knee', 'ankle', 'detector'): load_model(j)\n"
            "bad = [m for m in ('segmentation_models_pytorch', 'timm', 'torchvision') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[2])
