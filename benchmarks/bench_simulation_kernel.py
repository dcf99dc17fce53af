"""Throughput of simulation mode: every env generates its own next bar (1 asset) per call.

``sim_step_all_nb`` advances every env by one bar (prange over envs), as a fused step would.
Parametrized by the number of envs (4096, 65536), the thread count (1, for the per-thread
figure, and all) and the features: plain GBM, or GARCH + AR(1) + jumps + regimes with a vol
spike and a drought active. Reports env-bars (= asset-bars) per second in ``extra_info``.
"""

import math

import numba
import numpy as np
import pytest
from numba import njit

from kernels.simulation import sim_reset_env_nb, sim_step_all_nb

CALLS_PER_ROUND = 20


@njit  # not cached: it would not see edits to the inlined kernel
def _reset_all_nb(rng, init_price, vol, ar1, chol, close, dev, h, regime, bar_index):
    for i in range(rng.shape[0]):
        sim_reset_env_nb(i, rng, init_price, vol, ar1, chol, close, dev, h, regime, bar_index)


def make_args(n, features):
    """sim_step_all_nb's arguments for n envs x 1 asset, state reset."""
    full = features == "all"
    one = np.ones(1)
    params = (
        2e-4 * one, 0.01 * one, np.eye(1),  # drift, vol, chol
        (0.1 if full else 0.0) * one, (0.85 if full else 0.0) * one,  # garch alpha, beta
        (0.1 if full else 0.0) * one,  # ar1
        0.01 if full else 0.0, -0.05, 0.03,  # jump intensity, mean, std
        np.array([0.99, 0.9]) if full else np.ones(2), np.array([1.0, 2.0]), np.ones(2),
        0.5, 1e6 * one,  # intrabar_vol, base_volume
    )
    window = np.zeros(n, dtype=np.int64) if full else np.full(n, -1, dtype=np.int64)
    stress = (
        np.full(n, -1, dtype=np.int64), math.log(0.8),  # no crash
        window, 1 << 40, 2.0,  # vol spike over the whole run (all) or none (gbm)
        window, 1 << 40, 0.1,  # drought likewise
    )
    rng = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(42)
    close, dev, h = np.empty((n, 1)), np.empty((n, 1)), np.empty((n, 1))
    regime, bar_index = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    _reset_all_nb(rng, 100.0 * one, params[1], params[5], params[2],
                  close, dev, h, regime, bar_index)
    return (rng, *params, *stress, close, dev, h, regime, bar_index, np.empty((n, 5, 1)))


@pytest.mark.parametrize("features", ["gbm", "all"])
@pytest.mark.parametrize("threads", ["1", "all"])
@pytest.mark.parametrize("num_envs", [4096, 65536])
def test_sim_step_all(benchmark, num_envs, threads, features):
    n_threads = 1 if threads == "1" else numba.config.NUMBA_NUM_THREADS
    saved = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        args = make_args(num_envs, features)
        sim_step_all_nb(*args)  # compile (or load the cache) before timing

        def run():
            for _ in range(CALLS_PER_ROUND):
                sim_step_all_nb(*args)

        benchmark.pedantic(run, rounds=20 if num_envs <= 4096 else 5, warmup_rounds=1)
    finally:
        numba.set_num_threads(saved)
    out = args[-1]
    assert np.all(np.isfinite(out)) and np.all(out[:, 2] > 0.0)  # low > 0
    per_call = benchmark.stats.stats.median / CALLS_PER_ROUND  # robust to a busy machine
    info = benchmark.extra_info
    info["num_envs"] = num_envs
    info["threads"] = n_threads
    info["features"] = features
    info["ns_per_env_bar"] = round(per_call / num_envs * 1e9, 2)
    info["env_bars_per_s"] = round(num_envs / per_call)
    info["env_bars_per_s_per_thread"] = round(num_envs / per_call / n_threads)
