"""The run's market prices for the tear sheet's buy-and-hold line and exposure panel.

``benchmark.parquet`` in a run directory: ``timestamp`` (timestamp[ns, tz=UTC], the equity
curves' bars) then one float64 column per symbol, its close at each of those bars (currency per
unit). The report turns a symbol's column into buy and hold (close_t / close_0, no costs) and the
mean over symbols into an equal-weight buy and hold for portfolio envs. Written by
``python -m optrader.backtest`` next to equity.parquet (when ``backtest.save_equity``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE_NAME = "benchmark.parquet"


def benchmark_table(market, timestamps: np.ndarray):
    """A ``pyarrow.Table`` of the closes of ``market`` (MarketData) at ``timestamps`` int64 (T,)
    UTC ns, which must be bars of the market (ValueError otherwise)."""
    import pyarrow as pa

    ts = np.asarray(timestamps, dtype=np.int64)
    mts = np.asarray(market.timestamps)
    rows = np.minimum(np.searchsorted(mts, ts), mts.shape[0] - 1)
    if not (mts[rows] == ts).all():
        raise ValueError("timestamps: expected bars of the market (the equity curves' bars), "
                         "got times that are not among the market's timestamps")
    close = market.bars[3]  # (T, A): open, high, low, close, volume
    columns = {"timestamp": pa.array(ts, type=pa.timestamp("ns", tz="UTC"))}
    for a, symbol in enumerate(market.symbols):
        columns[str(symbol)] = pa.array(np.ascontiguousarray(close[rows, a]))
    return pa.table(columns)


def write_benchmark(out_dir, market, timestamps: np.ndarray) -> Path:
    """Write ``benchmark.parquet`` into ``out_dir`` atomically; returns its path."""
    import pyarrow.parquet as pq

    from optrader.backtest.outputs import _atomic

    table = benchmark_table(market, timestamps)
    return _atomic(Path(out_dir) / FILE_NAME, lambda tmp: pq.write_table(table, tmp))
