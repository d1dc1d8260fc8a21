"""Shared test fixtures: hand-built legs with known angles, tiny random model weights."""

from __future__ import annotations

import pytest

from tests.factories import build_leg, write_tiny_weights


@pytest.fixture
def leg_factory():
    return build_leg


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread (small models; other work shares the 2 cores)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)




@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights folder of tiny random models (:func:`tests.factories.write_tiny_weights`)."""
    pytest.importorskip("torch")
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install a fake ``nvidia.nvimgcodec`` (:func:`tests.factories.fake_nvimgcodec`) and a CUDA
    device that nvImageCodec sees (``torch.cuda.device`` records the devices entered in
    ``module.devices``, ``torch.cuda.synchronize`` its calls in ``module.syncs``; GPU decoding
    on again): ``fake_gpu(frame=None)`` returns the fake module."""
    import contextlib
    import sys
    import types

    import torch

    from cpak_cli.input import nvimgcodec
    from tests.factories import fake_nvimgcodec

    def install(frame=None):
        mod = fake_nvimgcodec(frame)
        if "nvidia" not in sys.modules:
            try:
                import nvidia  # noqa: F401
            except ImportError:
                monkeypatch.setitem(sys.modules, "nvidia", types.ModuleType("nvidia"))
        monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", mod)
        monkeypatch.setattr(sys.modules["nvidia"], "nvimgcodec", mod, raising=False)
        monkeypatch.setattr(nvimgcodec, "available", lambda: True)
        monkeypatch.setattr(nvimgcodec, "_decoders", {})
        monkeypatch.setattr(nvimgcodec, "_failure", None)
        mod.devices, mod.syncs = [], []
        monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext(mod.devices.append(i)))
        monkeypatch.setattr(torch.cuda, "synchronize", lambda i=None: mod.syncs.append(i))
        monkeypatch.delenv("CPAK_GPU_DECODE", raising=False)
        return mod

    return install
