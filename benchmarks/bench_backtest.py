"""SMA-grid backtests end to end, optrader vs vectorbt in the same run.

Workloads (the same closes for both engines; long-only SMA crossover, market orders at the close,
10 bps fees, 1 bp slippage, orders on signal changes):

* ``one_asset``: 1,000 (fast, slow) pairs x 100,000 one-minute bars on one asset;
* ``many_assets``: 100 assets x 10 pairs x 100,000 bars (each column a single-asset backtest).

optrader's time covers building the env over the data (``make_vec`` on the long DataFrame), the
batch run (``run_strategy``) and the metrics with round trips (``backtest_metrics``); the config
is composed before timing. vectorbt's covers ``MA.run``, the crossover signals,
``Portfolio.from_signals`` and its metric accessors (benchmarks/vbt_workloads.py). Both are
compiled on a small input first, and before every round the process touches more memory than
either engine needs (``warm_guest_memory``: on this VM a first touch of guest memory costs ~2 s
per GB, and memory left free for a while goes back to the host).
Each runs ``OPTRADER_BENCH_ROUNDS`` (3) rounds; ``extra_info`` reports bar-columns per second of
the best round (columns x bars / seconds). Run with
``pytest benchmarks/bench_backtest.py --benchmark-only``; vectorbt is optional (the dev extra
installs it).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import optrader
from benchmarks.vbt_workloads import grid_pairs, sma_grid_many_assets, sma_grid_one_asset
from optrader.backtest import backtest_metrics, run_strategy

N_BARS = int(os.environ.get("OPTRADER_BENCH_BARS", 100_000))  # fewer for a quick smoke run
FEES = 1e-3
SLIPPAGE = 1e-4
WORKLOADS = {"one_asset": (1, 1000), "many_assets": (100, 10)}  # (assets, pairs)
ROUNDS = int(os.environ.get("OPTRADER_BENCH_ROUNDS", 3))


def closes(n_bars: int, n_assets: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, (n_bars, n_assets)), axis=0))


def frame(close: np.ndarray) -> pd.DataFrame:
    """Long OHLCV bars whose open, high and low equal the close (fills are at the close)."""
    ts = pd.date_range("2020-01-01", periods=close.shape[0], freq="min", tz="UTC")
    parts = []
    for a in range(close.shape[1]):
        c = close[:, a]
        parts.append(pd.DataFrame({"symbol": f"A{a:03d}", "open": c, "high": c, "low": c,
                                   "close": c, "volume": 1e9}, index=ts))
    return pd.concat(parts)


def backtest_config():
    """The composed config of the workloads (Hydra composition, ~0.3 s, is setup like
    vectorbt's arguments, outside the timing)."""
    return optrader.compose("backtest", [
        "observation.window=1", "execution.fill_price=close", "execution=zero_cost",
        f"execution.commission_bps={FEES * 1e4}", f"execution.slippage_bps={SLIPPAGE * 1e4}",
        "execution.half_spread_bps=0", "data.split.use=all"])


def optrader_grid(cfg, data: pd.DataFrame, n_assets: int,
                  pairs: np.ndarray) -> tuple[int, object]:
    """(bar-columns, metrics) of one env per (asset, pair): the env over the data, the run and
    the metrics with round trips."""
    n = n_assets * len(pairs)
    env = optrader.make_vec(cfg, num_envs=n, data=data, copy=False)
    params = np.zeros((n, 4))
    params[:, :2] = np.tile(pairs, (n_assets, 1))
    params[:, 2] = 1.0  # long only, as vectorbt's from_signals
    assets = np.repeat(np.arange(n_assets), len(pairs)) if n_assets > 1 else None
    res = run_strategy(env, "sma_cross", params, assets=assets)
    metrics, _ = backtest_metrics(env, res, periods_per_year=252 * 390)
    return n * (res.equity.shape[1] - 1), metrics


WARM_GIB = 6  # more than either engine's peak memory on these workloads


def warm_guest_memory(gib: float) -> None:
    """Touch ``gib`` GiB once and free it. On a VM the first touch of guest memory is slow (here
    an 800 MB array took 1.9 s to fill the first time and 0.1 s after), and whichever engine ran
    first would pay it; afterwards both reuse memory the guest already has."""
    block = np.empty(int(gib * 2**27))
    block[:] = 1.0
    del block


@pytest.fixture(scope="module")
def compiled():
    """Compile both engines on a small input so no timing includes it, and warm the memory."""
    warm_guest_memory(WARM_GIB)
    small = closes(2_000, 2)
    optrader_grid(backtest_config(), frame(small), 2, grid_pairs(3))
    sma_grid_one_asset(small[:, 0], grid_pairs(3), FEES, SLIPPAGE)
    return True


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("engine", ["optrader", "vectorbt"])
def test_sma_grid(benchmark, compiled, engine, workload):
    if engine == "vectorbt":
        pytest.importorskip("vectorbt")
    n_assets, n_pairs = WORKLOADS[workload]
    close = closes(N_BARS, n_assets)
    pairs = grid_pairs(n_pairs)
    if engine == "optrader":
        data = frame(close)
        cfg = backtest_config()

        def run():
            return optrader_grid(cfg, data, n_assets, pairs)[0]
    else:
        def run():
            if n_assets == 1:
                sma_grid_one_asset(close[:, 0], pairs, FEES, SLIPPAGE, chunk=100)
            else:
                sma_grid_many_assets(close, pairs, FEES, SLIPPAGE, chunk=1)
            return len(pairs) * n_assets * (N_BARS - 1)

    # warm again before every round: the host takes back guest memory that sits free a while
    columns_bars = benchmark.pedantic(run, setup=lambda: warm_guest_memory(WARM_GIB),
                                      rounds=ROUNDS, iterations=1, warmup_rounds=0)
    seconds = benchmark.stats.stats.min  # the best round: this machine's timings swing
    benchmark.extra_info["bar_columns"] = columns_bars
    benchmark.extra_info["bar_columns_per_second"] = round(columns_bars / seconds)
