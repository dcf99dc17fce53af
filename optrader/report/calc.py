"""The numbers behind the tear-sheet panels: drawdown, calendar returns, parameter grids, formats.

Equity curves are pandas Series of float64 currency indexed by UTC bar-close timestamps (as
``run.env_equity`` returns them); returns and drawdowns are fractions (0.1 = 10 %).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MONTHS = tuple(range(1, 13))
PERCENT_METRICS = frozenset({"total_return", "cagr", "ann_vol", "max_drawdown", "var_95",
                             "cvar_95", "win_rate", "kelly", "exposure"})
CURRENCY_METRICS = frozenset({"avg_win", "avg_loss", "expectancy"})
BAR_METRICS = frozenset({"max_dd_duration", "avg_trade_bars"})
COUNT_METRICS = frozenset({"n_trades", "max_consec_losses"})


def drawdown(equity: pd.Series) -> pd.Series:
    """The underwater curve equity / running peak - 1: float64 (T,), a fraction <= 0.

    0 at every new high; -0.25 is 25 % below the highest equity so far, so ``-drawdown.min()``
    is the ``max_drawdown`` metric. NaN where the running peak is not positive (no meaningful
    fraction once the equity never was above 0).
    """
    peak = equity.cummax()
    return equity / peak.where(peak > 0) - 1.0


def _check_dated(equity: pd.Series, fn: str) -> None:
    if not isinstance(equity.index, pd.DatetimeIndex):
        raise TypeError(f"{fn}: expected an equity Series indexed by timestamps "
                        f"(DatetimeIndex), got a {type(equity.index).__name__}")


def _period_returns(equity: pd.Series, keys: list) -> pd.Series:
    """Simple return of each calendar period: its last equity over the previous period's last
    equity (the first period: over the curve's first value, the initial equity) minus 1."""
    last = equity.groupby(keys).last()
    prev = last.shift(1)
    prev.iloc[0] = equity.iloc[0]
    return last / prev - 1.0


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Calendar-month returns (UTC months): float64 (years, 12), index year, columns 1..12.

    A month's return compounds every bar in it, including the move from the previous month's
    last close to its first close; months before the curve, after it, or without bars are NaN
    (the next month with bars then spans the gap). Empty curve: a (0, 12) frame.
    """
    _check_dated(equity, "monthly_returns")
    equity = equity.dropna()
    if equity.empty:
        return pd.DataFrame(columns=pd.Index(MONTHS, name="month"), dtype=np.float64)
    idx = pd.DatetimeIndex(equity.index)
    table = _period_returns(equity, [idx.year, idx.month]).unstack()
    table = table.reindex(columns=MONTHS)
    table.index.name, table.columns.name = "year", "month"
    return table.astype(np.float64)


def yearly_returns(equity: pd.Series) -> pd.Series:
    """Calendar-year returns (UTC), float64 indexed by year; same conventions as the months."""
    _check_dated(equity, "yearly_returns")
    equity = equity.dropna()
    if equity.empty:
        return pd.Series(dtype=np.float64)
    return _period_returns(equity, [pd.DatetimeIndex(equity.index).year])


def varying_params(metrics: pd.DataFrame, params) -> list[str]:
    """The parameters (in the given order) taking more than one value over ``metrics``' rows."""
    return [p for p in params if metrics[p].nunique(dropna=True) > 1]


def param_grid(metrics: pd.DataFrame, x: str, y: str, metric: str) -> pd.DataFrame:
    """Mean of ``metric`` per (y, x) cell: float64 (n_y, n_x), index y values, columns x values.

    Rows sharing a cell (other parameters varying, repeated runs) are averaged, NaNs skipped; a
    cell with no finite value is NaN. Values are sorted ascending on both axes.
    """
    for name in (x, y, metric):
        if name not in metrics.columns:
            raise ValueError(f"param_grid: expected a column {name!r} of the metrics, got columns "
                             f"{list(metrics.columns)}")
    if x == y:
        raise ValueError(f"param_grid: expected two different parameters, got x = y = {x!r}")
    cells = metrics.groupby([y, x], dropna=True)[metric].mean()
    grid = cells.unstack(x).sort_index().sort_index(axis=1)
    return grid.astype(np.float64)


def format_param(value) -> str:
    """A parameter value as text: integers without '.0', NaN as 'n/a'."""
    v = float(value)
    if math.isnan(v):
        return "n/a"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:g}"


def format_value(name: str, value) -> str:
    """A metric value as the sheet shows it: fractions in percent, currency with 2 decimals,
    durations in bars, counts as integers, ratios with 2 decimals; NaN as 'n/a'."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    v += 0.0  # -0.0 -> 0.0: no "-0.00%"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if name in PERCENT_METRICS:
        return f"{v:.2%}"
    if name in CURRENCY_METRICS:
        return f"{v:,.2f}"
    if name in BAR_METRICS:
        return f"{v:,.1f} bars" if name == "avg_trade_bars" else f"{v:,.0f} bars"
    if name in COUNT_METRICS:
        return f"{v:,.0f}"
    return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:.3g}"
