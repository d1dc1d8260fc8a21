"""Fixtures of the held-film tests: a decode cage made the process's cage, a plain film, the
replies' sizes, and logs of what the decode workers did (requests, full decodes)."""

from __future__ import annotations

import os
import time
from multiprocessing import reduction
from pathlib import Path

import pytest

from cpak_cli.input import cage as cage_mod
from cpak_cli.input import loader
from cpak_cli.input.cage import Cage, DecodeLimits
from tests.factories import write_plain_film


@pytest.fixture
def cage():
    """``cage(workers=1, hook=None, seconds=30, memory_mb=2000, start_method="fork")``: a new
    :class:`Cage` made the process's cage (closed, and the old one restored, after the test)."""
    old = cage_mod.configure(None)
    made: list[Cage] = []

    def make(workers: int = 1, hook=None, seconds: float = 30.0, memory_mb: int = 2000,
             start_method: str = "fork") -> Cage:
        made.append(Cage(DecodeLimits(seconds, memory_mb), workers=workers, start_method=start_method, hook=hook))
        cage_mod.configure(made[-1])
        return made[-1]

    yield make
    for c in made:
        c.close()
    cage_mod.configure(old)


@pytest.fixture
def film(tmp_path):
    """An uncompressed 12-bit film, 640 x 240, textured (no two crops alike)."""
    return write_plain_film(tmp_path / "plain.dcm", 640, 240, seed=3)


@pytest.fixture
def received(monkeypatch):
    """Sizes (bytes) of every message this process unpickles from a pipe (the cage's replies)."""
    sizes: list[int] = []
    loads = reduction.ForkingPickler.loads

    def recording(buf, *args, **kwargs):
        sizes.append(len(buf))
        return loads(buf, *args, **kwargs)

    monkeypatch.setattr(reduction.ForkingPickler, "loads", staticmethod(recording))
    return sizes


@pytest.fixture
def request_log(tmp_path, monkeypatch):
    """The file :func:`tests.factories.log_requests` (a cage hook) appends to."""
    log = tmp_path / "requests.log"
    monkeypatch.setenv("CPAK_TEST_REQUEST_LOG", str(log))
    return log


@pytest.fixture
def worker_loads(tmp_path, monkeypatch):
    """Full decodes in the decode workers (:func:`cpak_cli.input.loader.load_image`, patched
    before the fork: a held film opened again, the pixels of a film not held; not the opens).
    Returns a function giving ``[pid, file name]`` per decode. ``$CPAK_TEST_LOAD_DELAY`` (set
    before the workers start) adds seconds to each."""
    log = tmp_path / "loads.log"
    real = loader.load_image
    parent = os.getpid()

    def counting(path, *args, **kwargs):
        if os.getpid() != parent:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {Path(path).name}\n")
            time.sleep(float(os.environ.get("CPAK_TEST_LOAD_DELAY", "0")))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader, "load_image", counting)
    return lambda: [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []
