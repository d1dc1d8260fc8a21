"""Shared test fixtures: hand-built legs with known angles."""

from __future__ import annotations

import pytest

from tests.factories import build_leg


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


