"""Domain randomisation of training crops."""

from __future__ import annotations

import numpy as np
import pytest

from cpak_cli.training.augment import domain_randomize, simulate_resolution, tone_curve


def _crop(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = 0.2 + 0.6 * ((x // 8 + y // 8) % 2) + 0.05 * rng.normal(size=(size, size))
    return np.clip(img, 0, 1).astype(np.float32)


def test_strength_zero_is_identity_and_output_in_range():
    x = _crop()
    assert domain_randomize(x, np.random.default_rng(1), 0.5, strength=0.0) is x
    for s in range(20):
        y = domain_randomize(x, np.random.default_rng(s), 0.5, strength=1.0)
        assert y.shape == x.shape and y.dtype == np.float32
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_same_rng_same_result_different_rng_differs():
    x = _crop()
    a = domain_randomize(x, np.random.default_rng(7), 0.5)
    b = domain_randomize(x, np.random.default_rng(7), 0.5)
    c = domain_randomize(x, np.random.default_rng(8), 0.5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_resolution_step_removes_detail_only_for_coarser_films():
    x = _crop()
    assert simulate_resolution(x, mm_per_px=0.5, film_mm=0.4) is x  # finer film: unchanged
    coarse = simulate_resolution(x, mm_per_px=0.2, film_mm=1.2)  # 6x coarser film
    hf = lambda im: float(np.abs(np.diff(im, axis=1)).mean())  # noqa: E731
    assert coarse.shape == x.shape and hf(coarse) < 0.5 * hf(x)
    assert abs(float(coarse.mean()) - float(x.mean())) < 0.02  # area averaging keeps the mean


@pytest.mark.parametrize("seed", range(12))
def test_tone_curves_are_monotone(seed):
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :]
    y = tone_curve(ramp, np.random.default_rng(seed))[0]
    assert np.all(np.diff(y) >= -1e-6) and y[-1] > y[0]
