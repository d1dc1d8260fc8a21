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
