"""vectorbt's side of the SMA-grid benchmark workloads, end to end including metrics.

The same work as an optrader ``run_strategy`` sweep, written the idiomatic fast vectorbt way:
one ``MA.run`` per window list (every column at once), crossover signals with
``ma_crossed_above`` / ``ma_crossed_below``, one ``Portfolio.from_signals`` call over every
column (long only, all cash in, market orders at the close with percentage fees and slippage),
then vectorbt's vectorized metric accessors. There is no Python loop over columns; ``chunk``
optionally splits the pairs into a few column blocks to bound memory: vectorbt holds ~16-18
float64 (T, columns) arrays at its peak, ~130-150 bytes per bar-column (docs/crosscheck.md).

Not a pytest module (no ``bench_`` prefix): the benchmarks import it, and
``python benchmarks/vbt_workloads.py`` times both workloads at a small size.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import numpy as np
import pandas as pd

METRICS = ("total_return", "sharpe_ratio", "max_drawdown", "n_trades", "win_rate")


def sma_grid_one_asset(close: np.ndarray, pairs: np.ndarray, fees: float, slippage: float, *,
                       freq: str = "1min", init_cash: float = 100_000.0,
                       chunk: int | None = None) -> pd.DataFrame:
    """One SMA-crossover backtest per (fast, slow) pair on one asset.

    Args:
        close: float (T,) closes.
        pairs: int (n, 2) windows (fast, slow) in bars, each >= 1.
        fees: commission as a fraction of traded value (vectorbt ``fees``; 1e-3 = 10 bps).
        slippage: price move against the trader as a fraction (vectorbt ``slippage``).
        freq: bar frequency for the annualised metrics (Sharpe).
        init_cash: starting cash of every column.
        chunk: pairs per vectorbt call (None: all at once).

    Returns:
        A DataFrame with one row per pair (index fast_window, slow_window, in ``pairs`` order)
        and the columns of ``METRICS``.
    """
    close = _closes(close, ndim=1)
    pairs = _pairs(pairs)
    return _sma_grid(pd.Series(close), pairs, fees, slippage, freq, init_cash, chunk)


def sma_grid_many_assets(close: np.ndarray, pairs: np.ndarray, fees: float, slippage: float, *,
                         freq: str = "1min", init_cash: float = 100_000.0,
                         chunk: int | None = None) -> pd.DataFrame:
    """Every asset x every (fast, slow) pair: A x p columns, each a single-asset backtest.

    Args:
        close: float (T, A) closes, one column per asset.
        pairs, fees, slippage, freq, init_cash, chunk: as ``sma_grid_one_asset``.

    Returns:
        A DataFrame with one row per (pair, asset) (index fast_window, slow_window, asset; pairs
        in ``pairs`` order, assets inner) and the columns of ``METRICS``.
    """
    close = _closes(close, ndim=2)
    pairs = _pairs(pairs)
    frame = pd.DataFrame(close, columns=pd.RangeIndex(close.shape[1], name="asset"))
    return _sma_grid(frame, pairs, fees, slippage, freq, init_cash, chunk)


def _sma_grid(close, pairs, fees, slippage, freq, init_cash, chunk) -> pd.DataFrame:
    import vectorbt as vbt

    step = len(pairs) if chunk is None else max(1, int(chunk))
    parts = []
    for lo in range(0, len(pairs), step):
        block = pairs[lo:lo + step]
        fast = vbt.MA.run(close, window=block[:, 0], short_name="fast")
        slow = vbt.MA.run(close, window=block[:, 1], short_name="slow")
        # columns (fast_window, slow_window[, asset]): vectorbt stacks the two column indexes
        entries = fast.ma_crossed_above(slow)
        exits = fast.ma_crossed_below(slow)
        pf = vbt.Portfolio.from_signals(close, entries, exits, fees=fees, slippage=slippage,
                                        init_cash=init_cash, freq=freq)
        trades = pf.trades
        parts.append(pd.DataFrame({
            "total_return": pf.total_return(),
            "sharpe_ratio": pf.sharpe_ratio(),
            "max_drawdown": pf.max_drawdown(),
            "n_trades": trades.count(),
            "win_rate": trades.win_rate(),
        }))
        # vectorbt's portfolio, wrappers and cached arrays form reference cycles: without a
        # collection a block's (T, columns) arrays outlive it and the blocks pile up
        del fast, slow, entries, exits, pf, trades
        gc.collect()
    return pd.concat(parts) if len(parts) > 1 else parts[0]


def _closes(close, ndim: int) -> np.ndarray:
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != ndim or c.shape[0] < 2:
        want = "(T,)" if ndim == 1 else "(T, A)"
        raise ValueError(f"close: expected shape {want} with T >= 2, got {c.shape}")
    if not (np.isfinite(c).all() and (c > 0).all()):
        raise ValueError("close: expected finite prices > 0")
    return c


def _pairs(pairs) -> np.ndarray:
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1:
        raise ValueError(f"pairs: expected shape (n, 2) of (fast, slow) windows, got {p.shape}")
    if p.dtype.kind not in "iu" or (p < 1).any():
        raise ValueError("pairs: expected integer windows >= 1")
    return p.astype(np.int64)


# ---- timing -------------------------------------------------------------------------------------


def synthetic_closes(n_bars: int, n_assets: int, seed: int = 0) -> np.ndarray:
    """float (T, A) GBM closes of 1-minute bars (about 20 % annual volatility)."""
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, (n_bars, n_assets)), axis=0))


def grid_pairs(n: int) -> np.ndarray:
    """n (fast, slow) pairs: fast in 2..., slow from 2 x fast up, all distinct."""
    fast = 2 + np.arange(n) % 50
    slow = 2 * fast + 10 * (np.arange(n) // 50) + 5
    return np.column_stack([fast, slow])


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _time(name: str, warm, fn, bar_columns: int, repeat: int = 3) -> None:
    """Best of ``repeat`` timed calls of ``fn`` after ``warm`` (the same work on a few bars:
    Numba compiles vectorbt's kernels on the first call); prints bar-columns per second and the
    growth of the process's peak memory over the warm state."""
    warm()
    gc.collect()
    base = _peak_rss_bytes()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        gc.collect()
    grown = _peak_rss_bytes() - base
    print(f"{name}: {bar_columns:,} bar-columns, best of {repeat} {best:.3f} s = "
          f"{bar_columns / best:,.0f} bar-columns/s; peak RSS +{grown / 2**20:,.0f} MiB "
          f"({grown / bar_columns:.0f} B per bar-column)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=100, help="pairs of the one-asset grid")
    ap.add_argument("--assets", type=int, default=10)
    ap.add_argument("--asset-pairs", type=int, default=10, help="pairs of the many-asset grid")
    ap.add_argument("--chunk", type=int, default=None, help="pairs per vectorbt call")
    ap.add_argument("--fees", type=float, default=1e-3)
    ap.add_argument("--slippage", type=float, default=5e-4)
    ap.add_argument("--only", choices=("one", "many"), default=None,
                    help="one workload per process gives a clean peak-memory reading")
    args = ap.parse_args(argv)
    if args.only != "many":
        one = synthetic_closes(args.bars, 1)[:, 0]
        p1 = grid_pairs(args.pairs)
        _time(f"sma_grid_one_asset {args.pairs} pairs x {args.bars} bars",
              lambda: sma_grid_one_asset(one[:1000], p1[:4], args.fees, args.slippage),
              lambda: sma_grid_one_asset(one, p1, args.fees, args.slippage, chunk=args.chunk),
              args.pairs * args.bars)
    if args.only != "one":
        many = synthetic_closes(args.bars, args.assets, seed=1)
        p2 = grid_pairs(args.asset_pairs)
        _time(f"sma_grid_many_assets {args.assets} assets x {args.asset_pairs} pairs x "
              f"{args.bars} bars",
              lambda: sma_grid_many_assets(many[:1000], p2[:2], args.fees, args.slippage),
              lambda: sma_grid_many_assets(many, p2, args.fees, args.slippage, chunk=args.chunk),
              args.assets * args.asset_pairs * args.bars)


if __name__ == "__main__":
    main()
