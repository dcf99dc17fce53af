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

from kernels.enums import (
    N_SIM_ASSET,
    N_SIM_CLOCK,
    N_SIM_ENV,
    N_SIM_REGIME,
    N_SIM_STATE,
    N_SIM_STRESS,
    BarField,
    SimAsset,
    SimEnv,
    SimRegime,
    SimStress,
)
from kernels.simulation import sim_reset_env_nb, sim_step_all_nb

CALLS_PER_ROUND = 20


@njit  # not cached: it would not see edits to the inlined kernel
def _reset_all_nb(rng, sim_asset, chol, sim_state, sim_clock):
    for i in range(rng.shape[0]):
        sim_reset_env_nb(i, rng, sim_asset, chol, sim_state, sim_clock)


def make_args(n, features):
    """sim_step_all_nb's arguments for n envs x 1 asset (packed layout), state reset."""
    full = features == "all"
    sim_asset = np.empty((n, N_SIM_ASSET, 1))
    sim_asset[:, SimAsset.DRIFT] = 2e-4
    sim_asset[:, SimAsset.VOL] = 0.01
    sim_asset[:, SimAsset.GARCH_ALPHA] = 0.1 if full else 0.0
    sim_asset[:, SimAsset.GARCH_BETA] = 0.85 if full else 0.0
    sim_asset[:, SimAsset.AR1] = 0.1 if full else 0.0
    sim_asset[:, SimAsset.INIT_PRICE] = 100.0
    sim_asset[:, SimAsset.BASE_VOLUME] = 1e6
    sim_env = np.empty((n, N_SIM_ENV))
    sim_env[:, SimEnv.JUMP_INTENSITY] = 0.01 if full else 0.0
    sim_env[:, SimEnv.JUMP_MEAN] = -0.05
    sim_env[:, SimEnv.JUMP_STD] = 0.03
    sim_env[:, SimEnv.INTRABAR_VOL] = 0.5
    sim_env[:, SimEnv.CRASH_SIZE] = math.log(0.8)
    sim_env[:, SimEnv.SPIKE_MULT] = 2.0
    sim_env[:, SimEnv.DROUGHT_MULT] = 0.1
    chol = np.eye(1)
    regime_table = np.empty((N_SIM_REGIME, 2))
    regime_table[SimRegime.P_STAY] = [0.99, 0.9] if full else [1.0, 1.0]
    regime_table[SimRegime.VOL_MULT] = [1.0, 2.0]
    regime_table[SimRegime.DRIFT_MULT] = [1.0, 1.0]
    # Vol spike and drought over the whole run (all) or none (gbm); no crash.
    window = 0 if full else -1
    stress = np.empty((n, N_SIM_STRESS), dtype=np.int64)
    stress[:, SimStress.CRASH_BAR] = -1
    stress[:, SimStress.SPIKE_START] = window
    stress[:, SimStress.SPIKE_LEN] = 1 << 40
    stress[:, SimStress.DROUGHT_START] = window
    stress[:, SimStress.DROUGHT_LEN] = 1 << 40
    rng = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(42)
    sim_state = np.empty((n, N_SIM_STATE, 1))
    sim_clock = np.empty((n, N_SIM_CLOCK), dtype=np.int64)
    _reset_all_nb(rng, sim_asset, chol, sim_state, sim_clock)
    out_bars = np.empty((5, n, 1))  # env i's bar in out_bars[:, i, :]
    return (rng, sim_asset, sim_env, chol, regime_table, stress, sim_state, sim_clock, out_bars)


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
    assert np.all(np.isfinite(out)) and np.all(out[BarField.LOW] > 0.0)
    per_call = benchmark.stats.stats.median / CALLS_PER_ROUND  # robust to a busy machine
    info = benchmark.extra_info
    info["num_envs"] = num_envs
    info["threads"] = n_threads
    info["features"] = features
    info["ns_per_env_bar"] = round(per_call / num_envs * 1e9, 2)
    info["env_bars_per_s"] = round(num_envs / per_call)
    info["env_bars_per_s_per_thread"] = round(num_envs / per_call / n_threads)
