"""Trading metrics of a batch of envs: the Python side of ``kernels.metrics``.

``compute_metrics`` turns equity curves (and optionally round trips and per-bar notionals) into a
DataFrame with one row per env; ``round_trips`` matches fill records (``drain_fills`` of
``TradingVectorEnv``, concatenated over steps) FIFO into round trips; ``trades_table`` exports them
to Arrow. Inputs are checked here once, with errors naming what was expected and what arrived;
the kernels then run without checks. Definitions and conventions: ``kernels/metrics.py`` and
``kernels/trades.py`` (FIFO matching).

Batches of more than ``_PARALLEL_MIN`` equity values run the threaded kernels (the same results
bit for bit). The equity check is one kernel pass; ``check_equity`` returns curves that passed it
as a ``CheckedEquity``, which ``compute_metrics`` and ``exposure_turnover`` take without a second
scan (a backtest hands the same curves to both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numba
import numpy as np

from kernels.enums import TRADE_DTYPE
from kernels.metrics import (
    EQUITY_METRICS,
    N_METRICS,
    NOTIONAL_METRICS,
    TRADE_METRICS,
    EquityDefect,
    Metric,
    equity_defects_nb,
    equity_defects_par_nb,
    equity_metrics_nb,
    equity_metrics_par_nb,
    exposure_turnover_nb,
    exposure_turnover_sums_nb,
    exposure_turnover_sums_par_nb,
    trade_metrics_nb,
)
from kernels.trades import fill_defects_nb, round_trips_nb

METRIC_NAMES = tuple(name.lower() for name in Metric._fields)
LOWER_IS_BETTER = frozenset({"ann_vol", "max_drawdown", "max_dd_duration", "var_95", "cvar_95",
                             "avg_loss", "max_consec_losses"})
"""Metrics where the smallest value ranks first (risks and losses are positive numbers); every
other metric ranks largest first (backtest tables, report selection)."""
_FILL_FIELDS = ("env", "bar", "asset", "qty", "price", "commission")
_FILL_TYPES = (np.int64, np.int64, np.int64, np.float64, np.float64, np.float64)
_INT_METRICS = (Metric.MAX_DD_DURATION, Metric.N_TRADES, Metric.MAX_CONSEC_LOSSES)
_PARALLEL_MIN = 1 << 16  # equity values below which a threaded kernel's start-up outweighs it


def round_trips(fills: np.ndarray, n_envs: int, n_assets: int, *,
                return_open: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """FIFO round trips of fill records.

    Args:
        fills: a structured array with at least the fields env, bar, asset (integers), qty
            (signed units), price (fill price, slippage included) and commission (currency), as
            ``optrader.envs.vector.FILL_DTYPE``; a ``fee`` field, if present, is added to the
            commission. Each env's fills must be in execution order (bars non-decreasing); envs
            may interleave, so ``np.concatenate`` of successive ``drain_fills()`` works.
        n_envs: envs in the batch (env ids are in [0, n_envs)).
        n_assets: assets in the market (asset ids are in [0, n_assets)).
        return_open: also return the lots still open at the end.

    Returns:
        ``TRADE_DTYPE`` (m,) in exit order (closing fill, then FIFO lot), or (trades, open lots)
        with return_open; open lots carry their entry cost share in ``commission``.
    """
    n_envs = _count("n_envs", n_envs)
    n_assets = _count("n_assets", n_assets)
    columns = _fill_columns(fills)
    if fill_defects_nb(*columns, n_envs, n_assets):
        _raise_fill_defects(*columns, n_envs, n_assets)
    # one matching pass into records of one row per fill instead of counting first (trades +
    # open lots <= fills): only the rows written become memory, and resize hands the rest back
    # in place (a shrinking realloc moves nothing)
    m = columns[0].shape[0]
    trades = np.empty(m, dtype=TRADE_DTYPE)
    lots = np.empty(m, dtype=TRADE_DTYPE)
    n_trades, n_open = round_trips_nb(*columns, n_envs, n_assets, trades, lots)
    trades.resize(n_trades, refcheck=False)  # nothing else refers to them yet
    if not return_open:
        return trades
    lots.resize(n_open, refcheck=False)
    return trades, lots


def trades_table(trades: np.ndarray):
    """A ``pyarrow.Table`` of ``TRADE_DTYPE`` records, one column per field, same dtypes."""
    import pyarrow as pa

    trades = np.asarray(trades)
    if trades.dtype.names is None or set(TRADE_DTYPE.names) - set(trades.dtype.names):
        raise TypeError(f"trades: expected a structured array of TRADE_DTYPE (fields "
                        f"{list(TRADE_DTYPE.names)}), got dtype {trades.dtype}")
    return pa.table({name: pa.array(np.ascontiguousarray(trades[name]))
                     for name in TRADE_DTYPE.names})


def compute_metrics(equity, *, periods_per_year: float, rf_annual: float = 0.0, trades=None,
                    gross_notional=None, traded_notional=None,
                    params: Mapping | None = None):
    """One row of metrics per env.

    Args:
        equity: float (n, T+1) equity curves in currency (a 1-D curve is one env): column 0 the
            initial equity (> 0), then each bar's close equity. NaN may pad the end of a row
            whose env ran fewer bars; every bar but a row's last must have equity > 0. A
            ``CheckedEquity`` (``check_equity``) is taken as checked.
        periods_per_year: bars per year (252 for daily bars), > 0.
        rf_annual: annual risk-free rate (> -1) for Sharpe and Sortino.
        trades: ``TRADE_DTYPE`` round trips (``round_trips``) of these envs, or None.
        gross_notional, traded_notional: float (n, T), currency per bar (column t-1 = bar t),
            both or neither; NaN is allowed only where the equity row is padded.
        params: ``{name: scalar or sequence of n}`` columns to add (e.g. a sweep's parameters).

    Returns:
        A ``pandas.DataFrame`` indexed by env: the parameter columns, then one lower snake case
        column per metric of ``kernels.metrics.Metric`` (trade metrics only when trades are
        given, exposure and turnover only with the notionals). Undefined values are NaN;
        max_dd_duration, n_trades and max_consec_losses are int64.
    """
    import pandas as pd

    eq = _equity_array(equity)
    n, width = eq.shape
    ppy = _number("periods_per_year", periods_per_year)
    if ppy <= 0.0:
        raise ValueError(f"periods_per_year: expected a number > 0, got {periods_per_year!r}")
    rf = _number("rf_annual", rf_annual)
    if rf <= -1.0:
        raise ValueError(f"rf_annual: expected a rate > -1, got {rf_annual!r}")
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of parameter columns, got "
                        f"{type(params).__name__}")
    columns = dict.fromkeys(params or {})
    out = np.full((n, N_METRICS), np.nan)
    n_chunks = _n_chunks(eq)
    if n_chunks:
        equity_metrics_par_nb(n_chunks, eq, ppy, rf, out)
    else:
        equity_metrics_nb(eq, ppy, rf, out)
    metrics = list(EQUITY_METRICS)
    if trades is not None:
        env, pnl, bars = _trade_columns(trades)
        if trade_metrics_nb(env, pnl, bars, n, out):
            _raise_trade_defects(env, pnl, n)
        metrics += TRADE_METRICS
    if (gross_notional is None) != (traded_notional is None):
        raise ValueError("gross_notional, traded_notional: expected both or neither, got "
                         f"{'gross_notional' if traded_notional is None else 'traded_notional'}"
                         " only")
    if gross_notional is not None:
        n_bars = (width - 1) - np.argmax(~np.isnan(eq[:, ::-1]), axis=1)
        gross = _notional("gross_notional", gross_notional, (n, width - 1), n_bars)
        traded = _notional("traded_notional", traded_notional, (n, width - 1), n_bars)
        exposure_turnover_nb(gross, traded, eq, ppy, out)
        metrics += NOTIONAL_METRICS
    metrics.sort()
    frame = pd.DataFrame({METRIC_NAMES[c]: out[:, c].astype(np.int64) if c in _INT_METRICS
                          else out[:, c] for c in metrics},
                         index=pd.RangeIndex(n, name="env"))
    for name in columns:
        if not isinstance(name, str) or name in frame.columns:
            raise ValueError(f"params: expected string keys other than the metric names, got "
                             f"{name!r}")
        value = params[name]
        if np.ndim(value) == 0:
            columns[name] = [value] * n
        elif len(value) == n:
            columns[name] = list(value) if not isinstance(value, np.ndarray) else value
        else:
            raise ValueError(f"params[{name!r}]: expected a scalar or {n} values (one per env), "
                             f"got {len(value)}")
    if columns:
        frame = pd.concat([pd.DataFrame(columns, index=frame.index), frame], axis=1)
    return frame


def exposure_turnover(held_bars, traded_notional, equity, *, periods_per_year: float):
    """(exposure, turnover) float64 (n,) from a run's per-env sums (``BacktestResult``) and its
    NaN-padded equity curves, with the definitions of ``compute_metrics``."""
    eq = _equity_array(equity)
    n = eq.shape[0]
    held = np.ascontiguousarray(held_bars, dtype=np.int64)
    traded = np.ascontiguousarray(traded_notional, dtype=np.float64)
    if held.shape != (n,) or traded.shape != (n,):
        raise ValueError(f"held_bars, traded_notional: expected shape ({n},) (one per equity "
                         f"row), got {held.shape} and {traded.shape}")
    out = np.full((n, N_METRICS), np.nan)
    ppy = _number("periods_per_year", periods_per_year)
    n_chunks = _n_chunks(eq)
    if n_chunks:
        exposure_turnover_sums_par_nb(n_chunks, held, traded, eq, ppy, out)
    else:
        exposure_turnover_sums_nb(held, traded, eq, ppy, out)
    return out[:, Metric.EXPOSURE].copy(), out[:, Metric.TURNOVER].copy()


# ---- validation --------------------------------------------------------------------------------
def _count(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
    return int(v)


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    return float(v)


def _float_array(name: str, x, ndim: int) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _n_chunks(eq: np.ndarray) -> int:
    """Chunks of rows for a threaded kernel over eq (a few per thread: rows differ in length),
    or 0 for the serial kernel; both give the same results bit for bit."""
    threads = numba.get_num_threads()
    if threads < 2 or eq.shape[0] < 2 or eq.size < _PARALLEL_MIN:
        return 0
    return min(eq.shape[0], 4 * threads)


class CheckedEquity(NamedTuple):
    """Equity curves float64 (n, T+1) that passed the checks of ``compute_metrics``; made only
    by ``check_equity``. Do not edit the array in place afterwards."""

    array: np.ndarray


def check_equity(equity) -> CheckedEquity:
    """Check equity curves once for several metric calls (raises ValueError as
    ``compute_metrics`` does)."""
    return CheckedEquity(_equity_array(equity))


def _equity_array(equity) -> np.ndarray:
    if isinstance(equity, CheckedEquity):
        return equity.array
    eq = np.asarray(equity)
    if eq.ndim == 1:
        eq = eq[None, :]
    eq = _float_array("equity", eq, 2)
    if eq.shape[0] < 1 or eq.shape[1] < 1:
        raise ValueError(f"equity: expected shape (n_envs >= 1, T+1 >= 1), got {eq.shape}")
    defects = np.empty(eq.shape[0], dtype=np.uint8)
    n_chunks = _n_chunks(eq)
    if n_chunks:
        equity_defects_par_nb(n_chunks, eq, defects)
    else:
        equity_defects_nb(eq, defects)
    if defects.any():
        _raise_equity_defects(eq, defects)
    return eq


def _raise_equity_defects(eq: np.ndarray, defects: np.ndarray):
    """The error of the first kind of defect found, listing the envs that have it."""
    rows = np.nonzero(defects & EquityDefect.INF)[0]
    if rows.size:
        raise ValueError(f"equity: expected finite values (NaN only as end padding), got inf in "
                         f"envs {rows[:10].tolist()}")
    rows = np.nonzero(defects & EquityDefect.INITIAL)[0]
    if rows.size:
        raise ValueError(f"equity: expected an initial equity (column 0) > 0, got "
                         f"{eq[rows[0], 0]!r} for envs {rows[:10].tolist()}")
    # padding: once a row is NaN it stays NaN
    rows = np.nonzero(defects & EquityDefect.GAP)[0]
    if rows.size:
        raise ValueError(f"equity: expected NaN only as padding after an env's last bar, got "
                         f"NaN followed by values in envs {rows[:10].tolist()}")
    # a bar after one with equity <= 0 has no meaningful return
    rows = np.nonzero(defects & EquityDefect.NOT_POSITIVE)[0]
    raise ValueError(f"equity: expected equity > 0 on every bar before an env's last (a "
                     f"return after a wiped-out account is undefined), got <= 0 in envs "
                     f"{rows[:10].tolist()}")


def _notional(name: str, x, shape: tuple, n_bars: np.ndarray) -> np.ndarray:
    a = _float_array(name, x, 2)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (n_envs, T bars, one less column "
                         f"than equity), got {a.shape}")
    inside = np.arange(shape[1])[None, :] < n_bars[:, None]
    bad = inside & ~(np.isfinite(a) & (a >= 0.0))
    if bad.any():
        rows = np.nonzero(bad.any(axis=1))[0]
        raise ValueError(f"{name}: expected finite values >= 0 on each env's bars, got "
                         f"{a[bad][0]!r} in envs {rows[:10].tolist()}")
    return a


def _fill_columns(fills) -> tuple:
    """(env, bar, asset, qty, price, cost) of the fill records for round_trips_nb: views of
    the record fields when they are already int64 / float64 (as FILL_DTYPE: no copies), else
    contiguous copies converted to those dtypes; cost = commission + fee when there is a fee."""
    f = np.asarray(fills)
    names = f.dtype.names or ()
    missing = [x for x in _FILL_FIELDS if x not in names]
    if missing or f.ndim != 1:
        raise TypeError(f"fills: expected a 1-D structured array with fields "
                        f"{list(_FILL_FIELDS)} (FILL_DTYPE), got dtype {f.dtype} shape {f.shape}"
                        + (f", missing {missing}" if missing else ""))
    for x in ("env", "bar", "asset"):
        if f.dtype[x].kind not in "iu":
            raise TypeError(f"fills[{x!r}]: expected integers, got {f.dtype[x]}")
    for x in ("qty", "price", "commission") + (("fee",) if "fee" in names else ()):
        if f.dtype[x].kind not in "iuf":
            raise TypeError(f"fills[{x!r}]: expected numbers, got {f.dtype[x]}")
    views = tuple(f[x] for x in _FILL_FIELDS)
    if "fee" not in names and all(v.dtype == t and v.flags.aligned
                                  for v, t in zip(views, _FILL_TYPES, strict=True)):
        return views
    env, bar, asset, qty, price, cost = (np.ascontiguousarray(v, dtype=t)
                                         for v, t in zip(views, _FILL_TYPES, strict=True))
    if "fee" in names:
        cost = cost + f["fee"]
    return env, bar, asset, qty, price, cost


def _raise_fill_defects(env, bar, asset, qty, price, cost, n_envs: int, n_assets: int):
    """The error of the first defect, in this order, of fills that fill_defects_nb rejected."""
    for x, a, limit, hi in (("env", env, "n_envs", n_envs),
                            ("asset", asset, "n_assets", n_assets)):
        if a.size and (a.min() < 0 or a.max() >= hi):
            raise ValueError(f"fills[{x!r}]: expected ids in [0, {hi - 1}] ({limit}={hi}), got "
                             f"values in [{a.min()}, {a.max()}]")
    if bar.size and bar.min() < 0:
        raise ValueError(f"fills['bar']: expected bars >= 0, got {bar.min()}")
    for x, a in (("qty", qty), ("commission", cost)):
        if not np.isfinite(a).all():
            raise ValueError(f"fills[{x!r}]: expected finite values, got NaN or inf at rows "
                             f"{np.nonzero(~np.isfinite(a))[0][:10].tolist()}")
    bad = ~(np.isfinite(price) & (price > 0.0))
    if bad.any():
        raise ValueError(f"fills['price']: expected finite prices > 0, got {price[bad][0]!r} at "
                         f"rows {np.nonzero(bad)[0][:10].tolist()}")
    order = np.argsort(env, kind="stable")  # stable: keeps each env's execution order
    env_sorted, bar_sorted = env[order], bar[order]
    back = (np.diff(bar_sorted) < 0) & (np.diff(env_sorted) == 0)
    if back.any():
        e = env_sorted[1:][back][0]
        raise ValueError(f"fills: expected each env's fills in execution order (bars "
                         f"non-decreasing), got env {e} going back in time")
    raise AssertionError("fill_defects_nb rejected fills that pass the checks here")


def _trade_columns(trades):
    """(env int64, pnl float64, bars int64 or float64) of the trade records for
    trade_metrics_nb: views of the fields that have those dtypes (TRADE_DTYPE: no copies), else
    contiguous converted copies (bars as float64)."""
    t = np.asarray(trades)
    names = t.dtype.names or ()
    missing = [x for x in ("env", "pnl", "bars") if x not in names]
    if missing or t.ndim != 1:
        raise TypeError(f"trades: expected a 1-D TRADE_DTYPE array (round_trips), got dtype "
                        f"{t.dtype} shape {t.shape}")
    env, pnl, bars = t["env"], t["pnl"], t["bars"]
    if not (env.dtype == np.int64 and env.flags.aligned):
        env = np.ascontiguousarray(env, dtype=np.int64)
    if not (pnl.dtype == np.float64 and pnl.flags.aligned):
        pnl = np.ascontiguousarray(pnl, dtype=np.float64)
    if not (bars.dtype in (np.int64, np.float64) and bars.flags.aligned):
        bars = np.ascontiguousarray(bars, dtype=np.float64)
    return env, pnl, bars


def _raise_trade_defects(env, pnl, n_envs: int):
    """The error of the first defect of round trips that trade_metrics_nb reported."""
    if env.size and (env.min() < 0 or env.max() >= n_envs):
        raise ValueError(f"trades['env']: expected env ids in [0, {n_envs - 1}] (one row of "
                         f"equity per env), got values in [{env.min()}, {env.max()}]")
    if not np.isfinite(pnl).all():
        raise ValueError("trades['pnl']: expected finite values (closed round trips only, not "
                         "open lots), got NaN or inf")
    raise AssertionError("trade_metrics_nb reported defects that the checks here do not find")
