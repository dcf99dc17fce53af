"""The numbers behind the tear-sheet panels: drawdown, calendar returns, rolling Sharpe, exposure,
buy and hold, parameter grids, formats.

Equity curves are pandas Series of float64 currency indexed by UTC bar-close timestamps (as
``run.env_equity`` returns them); returns and drawdowns are fractions (0.1 = 10 %).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kernels.metrics import ZERO_RTOL

MONTHS = tuple(range(1, 13))
PERCENT_METRICS = frozenset({"total_return", "cagr", "ann_vol", "max_drawdown", "var_95",
                             "cvar_95", "win_rate", "kelly", "exposure"})
CURRENCY_METRICS = frozenset({"avg_win", "avg_loss", "expectancy"})
BAR_METRICS = frozenset({"max_dd_duration", "avg_trade_bars"})
COUNT_METRICS = frozenset({"n_trades", "max_consec_losses"})
MONTHLY_MAX_YEARS = 15  # longer histories show yearly returns (a row per decade) instead
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"))
RUN_UNITS = {"seconds": " s", "wall_seconds": " s", "compile_s": " s", "cache_load_s": " s",
             "bar_columns_per_second": "/s"}  # backtest.json keys with units


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


def format_number(value, unit: str = "") -> str:
    """A number as a person reads it: from a million up 3 significant digits and a M / G / T
    suffix (``2420706.916 -> "2.42 M"``), from a thousand up whole with separators
    (``19899 -> "19,899"``), below that 4 significant digits (``0.1234567 -> "0.1235"``);
    NaN as 'n/a'. ``unit`` is appended (``"/s"`` -> ``"2.42 M/s"``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return ("inf" if v > 0 else "-inf") + unit
    v += 0.0  # no "-0"
    for size, suffix in _SI:
        if abs(v) >= size:
            return f"{v / size:.3g} {suffix}{unit.lstrip()}"
    if abs(v) >= 1e3:
        return f"{v:,.0f}{unit}"
    return (str(int(v)) if v.is_integer() else f"{v:.4g}") + unit


def format_run_value(key: str, value) -> str:
    """A backtest.json value for the sheet's run table: numbers via ``format_number`` (with the
    unit of ``RUN_UNITS``), an annualisation dict as one line, anything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return format_number(value, RUN_UNITS.get(key, ""))
    if isinstance(value, dict) and "periods_per_year" in value:
        return annualisation_text(value)
    return str(value)


def annualisation_text(ann: dict) -> str:
    """ "252 bars/year (inferred: daily bars on weekdays: 252 sessions)" from an annualisation
    dict (``Annualisation.as_dict``)."""
    ppy = format_number(ann.get("periods_per_year"))
    source, basis = ann.get("source"), ann.get("basis")
    how = f" ({source}: {basis})" if source and basis else f" ({source})" if source else ""
    return f"{ppy} bars/year{how}"


def rolling_sharpe(equity: pd.Series, window: int, periods_per_year: float,
                   rf_annual: float = 0.0) -> pd.Series:
    """Sharpe ratio over the last ``window`` bar returns, as the ``sharpe`` metric defines it
    (mean excess return / std with ddof=1 x sqrt(periods_per_year), rf compounded per bar):
    float64 (T,), NaN for the first ``window`` bars and where the window's std is 0."""
    if not (isinstance(window, (int, np.integer)) and window >= 2):
        raise ValueError(f"rolling_sharpe: expected a window of >= 2 bars, got {window!r}")
    if not periods_per_year > 0:
        raise ValueError(f"rolling_sharpe: expected periods_per_year > 0, got "
                         f"{periods_per_year!r}")
    rf = (1.0 + rf_annual) ** (1.0 / periods_per_year) - 1.0
    excess = equity.pct_change() - rf
    roll = excess.rolling(window, min_periods=window)
    std = roll.std(ddof=1)
    # a std that is rounding noise of a flat stretch counts as 0, as in kernels.metrics
    tiny = ZERO_RTOL * (excess.add(rf).abs().rolling(window, min_periods=window).mean() + abs(rf))
    return (roll.mean() / std.where(std > tiny) * math.sqrt(periods_per_year)).astype(np.float64)


def sharpe_window(n_bars: int, periods_per_year: float) -> int:
    """Bars of the rolling-Sharpe window: one year, or a quarter of the curve when it is
    shorter than two years (at least 2)."""
    year = int(round(periods_per_year))
    return max(2, year if n_bars >= 2 * year else n_bars // 4)


def buy_and_hold(closes: pd.DataFrame, columns, equity: pd.Series) -> pd.Series:
    """Equal-weight buy and hold of ``columns`` of ``closes`` (one column per symbol, indexed by
    time), bought at the equity curve's first bar with its first value and never traded (no
    costs): float64 on the equity's index (NaN where the closes have no bar)."""
    px = closes.reindex(equity.index)[list(columns)].astype(np.float64)
    growth = (px / px.iloc[0]).mean(axis=1, skipna=False)
    return (growth * float(equity.iloc[0])).rename("buy_and_hold")


def exposure(trades: pd.DataFrame | None, equity: pd.Series,
             closes: pd.DataFrame | None = None) -> pd.Series:
    """Net exposure at each bar of ``equity`` from closed round trips (rows of trades.parquet
    with entry_time, exit_time, side, qty, asset): with ``closes`` (benchmark.parquet columns
    in asset order) sum(side x qty x close) / equity, a fraction of equity (long > 0); without
    them sum(side) over the open trips. A trip counts from its entry bar up to, not including,
    its exit bar; a position still open at the end is not in trades.parquet and not counted."""
    out = np.zeros(len(equity))
    if trades is None or trades.empty:
        return pd.Series(out, index=equity.index, name="exposure")
    t = equity.index.as_unit("ns").asi8
    start = np.searchsorted(t, _ns(trades["entry_time"]))
    stop = np.searchsorted(t, _ns(trades["exit_time"]))
    side = trades["side"].to_numpy(np.float64)
    if closes is None:
        delta = np.zeros(len(t) + 1)
        np.add.at(delta, start, side)
        np.add.at(delta, stop, -side)
        out = np.cumsum(delta)[:-1]
    else:
        px = closes.reindex(equity.index).to_numpy(np.float64)
        qty = trades["qty"].to_numpy(np.float64) * side
        asset = trades["asset"].to_numpy(np.int64)
        units = np.zeros((len(t) + 1, px.shape[1]))
        np.add.at(units, (start, asset), qty)
        np.add.at(units, (stop, asset), -qty)
        held = np.cumsum(units, axis=0)[:-1]
        out = np.nansum(held * px, axis=1) / equity.to_numpy(np.float64)
    return pd.Series(out, index=equity.index, name="exposure")


def _ns(times: pd.Series) -> np.ndarray:
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    return index.as_unit("ns").asi8
