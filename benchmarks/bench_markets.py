"""Throughput of the synthetic market generator: bar-assets generated per second.

Two views of 1,000,000 bars x 10 assets: ``generate_synthetic`` end to end (validation, fresh
(T, A) output arrays whose first touch costs page faults, the kernel, the range check) and
``simulate_market_nb`` alone writing into reused, already-touched arrays. Each runs with the
default features (correlated GBM) and with everything on (AR(1), jumps, regimes).
"""

import numpy as np
import pytest

from kernels.markets import simulate_market_nb
from optrader.data.synthetic import generate_synthetic

N_BARS = 1_000_000
N_ASSETS = 10
KEYS = ("open", "high", "low", "close", "volume")
FEATURES = {
    "gbm": dict(correlation=0.3),
    "all": dict(
        correlation=0.3,
        ar1=0.05,
        jump_intensity=10.0,
        jump_mean=-0.02,
        jump_std=0.05,
        regimes=True,
    ),
}


def kernel_args(n_assets, jumps):
    ones = np.ones(n_assets)
    corr = np.full((n_assets, n_assets), 0.3) + 0.7 * np.eye(n_assets)
    return (
        0.05 / 252 * ones, 0.2 / np.sqrt(252) * ones, np.linalg.cholesky(corr),
        0.05 * ones if jumps else 0.0 * ones, 10.0 / 252 if jumps else 0.0, -0.02, 0.05,
        np.array([0.99, 0.95]) if jumps else np.ones(2),
        np.array([1.0, 2.5]) if jumps else np.ones(2),
        np.array([1.0, -1.0]) if jumps else np.ones(2),
        100.0 * ones, 1e6 * ones, 0.5,
    )


def record(benchmark):
    benchmark.extra_info["bars"] = N_BARS
    benchmark.extra_info["assets"] = N_ASSETS
    benchmark.extra_info["bars_per_s"] = N_BARS * N_ASSETS / benchmark.stats.stats.mean


@pytest.mark.parametrize("features", list(FEATURES))
def test_generate_synthetic_throughput(benchmark, features):
    kw = FEATURES[features]
    generate_synthetic(10, N_ASSETS, seed=0, **kw)  # compile (or load the cache) before timing
    out = benchmark.pedantic(
        generate_synthetic, args=(N_BARS, N_ASSETS), kwargs=dict(seed=1, **kw),
        rounds=5, iterations=1, warmup_rounds=1,
    )
    assert out["close"].shape == (N_BARS, N_ASSETS)
    assert np.all(out["low"] > 0.0)
    record(benchmark)


@pytest.mark.parametrize("features", list(FEATURES))
def test_simulate_market_nb_throughput(benchmark, features):
    args = kernel_args(N_ASSETS, features == "all")
    small = [np.empty((10, N_ASSETS)) for _ in KEYS]
    simulate_market_nb(0, *args, *small)  # compile (or load the cache) before timing
    out = [np.ones((N_BARS, N_ASSETS)) for _ in KEYS]  # touched once, outside the timing
    benchmark.pedantic(
        simulate_market_nb, args=(1, *args, *out), rounds=5, iterations=1, warmup_rounds=1
    )
    assert np.all(out[2] > 0.0)  # low
    record(benchmark)
