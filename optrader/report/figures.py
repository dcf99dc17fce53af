"""Tear-sheet panels as matplotlib Figures (object-oriented API: no pyplot, no backend switch).

Each panel has a ``draw_*(ax, ...)`` that draws into given Axes (the one-figure PNG sheet uses
them) and a ``*_figure(...)`` returning a new ``matplotlib.figure.Figure`` for notebooks
(``display(fig)``, or ``fig.savefig(path)``: saving picks the Agg canvas, so this works headless).
Missing or empty inputs draw a note in the panel instead of raising.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter, PercentFormatter, StrMethodFormatter

from optrader.report.calc import (
    MONTHLY_MAX_YEARS,
    drawdown,
    format_param,
    format_value,
    monthly_returns,
    param_grid,
    rolling_sharpe,
    sharpe_window,
    yearly_returns,
)
from optrader.report.run import LOWER_IS_BETTER

WIN, LOSS, LINE, BENCH = "#2e7d32", "#c62828", "#1f4e79", "0.45"
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_ANNOTATED_CELLS = 300  # beyond this, cell labels would be unreadable


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def note(ax, text: str, title: str = "", width: int = 60) -> None:
    """Replace a panel by a centred note (why it cannot be drawn), wrapped at ``width`` chars."""
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    ax.text(0.5, 0.5, textwrap.fill(text, width), ha="center", va="center", fontsize=10,
            color="0.35", transform=ax.transAxes)


def _times(series: pd.Series) -> np.ndarray:
    """UTC timestamps as naive datetime64[ns] (matplotlib plots these without pandas' help)."""
    index = pd.DatetimeIndex(series.index)
    return (index if index.tz is None else index.tz_convert(None)).to_numpy()


def _date_axis(ax) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def draw_equity(ax, equity: pd.Series | None, *, log: bool = False, note_text: str = "",
                benchmark: pd.Series | None = None, benchmark_label: str = "buy and hold") -> None:
    """Equity (currency) at each bar's close, with ``benchmark`` (e.g. buy and hold on the same
    bars, ``calc.buy_and_hold``) dashed; log scale when asked and every value is > 0."""
    if equity is None or equity.dropna().empty:
        note(ax, note_text or "no equity curve", "Equity")
        return
    equity = equity.dropna()
    ax.plot(_times(equity), equity.to_numpy(), color=LINE, lw=1.2,
            marker="o" if len(equity) == 1 else None, label="strategy")
    title = f"Equity: {equity.iloc[0]:,.2f} to {equity.iloc[-1]:,.2f}"
    values = equity.to_numpy()
    if benchmark is not None and benchmark.notna().any():
        bench = benchmark.dropna()
        ax.plot(_times(bench), bench.to_numpy(), color=BENCH, lw=1.0, ls="--",
                label=f"{benchmark_label}: {bench.iloc[-1]:,.2f}")
        ax.legend(fontsize=8, loc="upper left")
        values = np.concatenate([values, bench.to_numpy()])
    if log and (values > 0).all():
        ax.set_yscale("log")
        title += " (log scale)"
    elif log:
        title += " (linear: equity <= 0 has no log)"
    ax.set_title(title)
    ax.set_ylabel("currency")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    if ax.get_yscale() == "log":  # within a decade the 10^k ticks are too few: label 2..9 x 10^k
        lo, hi = values.min(), values.max()
        ax.yaxis.set_minor_formatter(StrMethodFormatter("{x:,.0f}") if hi < 10 * lo
                                     else NullFormatter())
    ax.grid(alpha=0.3)
    _date_axis(ax)


def draw_rolling_sharpe(ax, equity: pd.Series | None, periods_per_year: float | None, *,
                        rf_annual: float = 0.0, note_text: str = "") -> None:
    """Sharpe over a trailing window (``calc.sharpe_window``: a year of bars, or a quarter of a
    short curve), annualised with ``periods_per_year``; the full-period Sharpe dotted."""
    title = "Rolling Sharpe"
    if equity is None or equity.dropna().empty:
        note(ax, note_text or "no equity curve", title)
        return
    if not periods_per_year:
        note(ax, "no periods_per_year to annualise with", title)
        return
    equity = equity.dropna()
    window = sharpe_window(len(equity) - 1, periods_per_year)
    if len(equity) - 1 < window:
        note(ax, f"{len(equity) - 1} returns: too few for a rolling window", title)
        return
    roll = rolling_sharpe(equity, window, periods_per_year, rf_annual)
    ax.plot(_times(roll), roll.to_numpy(), color=LINE, lw=1.0)
    ax.axhline(0.0, color="0.3", lw=0.8)
    whole = rolling_sharpe(equity, len(equity) - 1, periods_per_year, rf_annual).iloc[-1]
    if np.isfinite(whole):
        ax.axhline(whole, color=BENCH, lw=1.0, ls=":", label=f"whole period {whole:.2f}")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{title} ({window:,}-bar window, {periods_per_year:,.6g} bars/year)")
    ax.grid(alpha=0.3)
    _date_axis(ax)


def draw_exposure(ax, exposure: pd.Series | None, *, fraction: bool = True,
                  metric: float | None = None, note_text: str = "") -> None:
    """Net exposure per bar (``calc.exposure``): a fraction of equity (long > 0) or, without
    prices, the number of open round trips signed by side; ``metric`` = the run's exposure
    metric (share of bars in the market) for the title."""
    title = "Exposure"
    if exposure is None or exposure.empty:
        note(ax, note_text or "no exposure: no equity curve", title)
        return
    x, y = _times(exposure), exposure.to_numpy()
    ax.fill_between(x, y, 0.0, step="post", color=LINE, alpha=0.3, lw=0)
    ax.plot(x, y, color=LINE, lw=0.6, drawstyle="steps-post")
    ax.axhline(0.0, color="0.3", lw=0.8)
    if fraction:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        title += " (net, of equity; closed round trips)"
    else:
        title += " (open round trips, + long / - short)"
    if metric is not None and np.isfinite(metric):
        title += f"; in market {format_value('exposure', metric)} of bars"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _date_axis(ax)


def draw_drawdown(ax, equity: pd.Series | None, *, note_text: str = "") -> None:
    """Underwater curve: equity / running peak - 1, in percent (``calc.drawdown``)."""
    if equity is None or equity.dropna().empty:
        note(ax, note_text or "no equity curve", "Drawdown")
        return
    dd = drawdown(equity.dropna())
    x, y = _times(dd), dd.to_numpy()
    ax.fill_between(x, np.nan_to_num(y), 0.0, color=LOSS, alpha=0.35, lw=0)
    ax.plot(x, y, color=LOSS, lw=0.8, marker="o" if len(dd) == 1 else None)
    worst = np.nanmin(y) if np.isfinite(y).any() else np.nan
    ax.set_title(f"Drawdown (max {format_value('max_drawdown', 0.0 - worst)})")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(top=0.0, bottom=min(-0.01, worst * 1.05) if np.isfinite(worst) else -0.01)
    ax.grid(alpha=0.3)
    _date_axis(ax)


def draw_monthly_returns(ax, equity: pd.Series | None, *, note_text: str = "") -> None:
    """Year x month heat map of calendar-month returns (``calc.monthly_returns``), green up."""
    if equity is None or equity.dropna().empty:
        note(ax, note_text or "no equity curve", "Monthly returns")
        return
    table = monthly_returns(equity)
    years = yearly_returns(equity)
    _return_grid(ax, table.to_numpy(), MONTH_NAMES,
                 [f"{y}  {format_value('total_return', years.get(y, np.nan))}"
                  for y in table.index])
    ax.set_title("Monthly returns (UTC months; row label: the year's return)")


def draw_yearly_returns(ax, equity: pd.Series | None, *, note_text: str = "") -> None:
    """Calendar-year returns (``calc.yearly_returns``) as a decade x year-of-decade heat map:
    one readable row per decade however long the history."""
    if equity is None or equity.dropna().empty:
        note(ax, note_text or "no equity curve", "Yearly returns")
        return
    years = yearly_returns(equity)
    decades = np.arange(years.index.min() // 10, years.index.max() // 10 + 1) * 10
    data = np.full((len(decades), 10), np.nan)
    for y, v in years.items():
        data[(y // 10) * 10 == decades, y % 10] = v
    _return_grid(ax, data, [f"+{k}" for k in range(10)], [f"{d}s" for d in decades])
    ax.set_title(f"Yearly returns (UTC years {years.index.min()}-{years.index.max()}; row: "
                 "decade, column: year in it)")


def draw_calendar_returns(ax, equity: pd.Series | None, *, note_text: str = "") -> None:
    """Monthly returns, or yearly returns for histories longer than ``MONTHLY_MAX_YEARS``."""
    if equity is not None and len(monthly_returns(equity)) > MONTHLY_MAX_YEARS:
        draw_yearly_returns(ax, equity, note_text=note_text)
    else:
        draw_monthly_returns(ax, equity, note_text=note_text)


def _return_grid(ax, data: np.ndarray, columns, rows) -> None:
    finite = data[np.isfinite(data)]
    vmax = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-3)  # symmetric about 0
    im = ax.imshow(np.ma.masked_invalid(data), cmap="RdYlGn", vmin=-vmax, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(columns)), labels=columns)
    ax.set_yticks(range(len(rows)), labels=rows, fontsize=9)
    if data.size <= _MAX_ANNOTATED_CELLS:
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1%}", ha="center", va="center", fontsize=7)
    ax.figure.colorbar(im, ax=ax, format=PercentFormatter(1.0), fraction=0.04)


def calendar_height(equity: pd.Series | None) -> float:
    """Inches the calendar-returns panel of ``equity`` needs (0.4 in per row: years, or decades
    past ``MONTHLY_MAX_YEARS`` years)."""
    n_years = 1 if equity is None else len(monthly_returns(equity))
    n = -(-n_years // 10) + 1 if n_years > MONTHLY_MAX_YEARS else n_years
    return 1.0 + 0.4 * max(1, n)


def monthly_height(n_years: int) -> float:
    """Inches a monthly-returns panel of ``n_years`` rows needs (0.4 in per year)."""
    return 1.0 + 0.4 * max(1, n_years)


def draw_trades(ax, trades: pd.DataFrame | None, *, note_text: str = "") -> None:
    """Histogram of round-trip returns (fractions), wins (pnl > 0) and losses stacked."""
    returns = np.array([]) if trades is None else trades["return"].to_numpy(np.float64)
    ok = np.isfinite(returns)
    if not ok.any():
        note(ax, note_text or "no closed round trips", "Trade returns")
        return
    pnl = trades["pnl"].to_numpy(np.float64) if "pnl" in trades.columns else returns
    returns, win = returns[ok], pnl[ok] > 0  # a win as in the win_rate metric: pnl > 0
    n = len(returns)
    edges = _bin_edges(returns, int(np.clip(2 * np.sqrt(n), 5, 50)))
    ax.hist([returns[win], returns[~win]], bins=edges, stacked=True, color=[WIN, LOSS],
            label=[f"wins ({win.sum()})", f"losses ({n - win.sum()})"])
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.axvline(returns.mean(), color=LINE, lw=1, ls="--", label=f"mean {returns.mean():.2%}")
    ax.set_title(f"Trade returns: {n} trades, win rate {win.mean():.1%}")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("trades")
    ax.legend(fontsize=8)


def _bin_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """About ``bins`` equal bins over x with 0 on an edge, so no bin mixes gains and losses."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.histogram_bin_edges(x, bins=1)
    width = (hi - lo) / bins
    start = np.floor(lo / width) * width
    edges = start + width * np.arange(int(np.ceil((hi - start) / width)) + 1)
    edges[-1] = max(edges[-1], hi)  # rounding must not leave the largest value out
    return edges


def draw_param_heatmap(ax, metrics: pd.DataFrame, x: str, y: str, metric: str, *,
                       highlight: tuple | None = None) -> pd.DataFrame:
    """Heat map of ``calc.param_grid(metrics, x, y, metric)``; returns the grid drawn.

    ``highlight`` = (x value, y value) outlines that cell (the selected env). Colours run red to
    green from worst to best (reversed for ``LOWER_IS_BETTER`` metrics).
    """
    grid = param_grid(metrics, x, y, metric)
    data = grid.to_numpy()
    if not np.isfinite(data).any():
        note(ax, f"{metric} is NaN for every ({x}, {y})", f"{metric} by {x} and {y}")
        return grid
    cmap = "RdYlGn_r" if metric in LOWER_IS_BETTER else "RdYlGn"
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, origin="lower", aspect="auto",
                   interpolation="nearest")
    ax.set_xticks(range(grid.shape[1]), labels=[format_param(v) for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), labels=[format_param(v) for v in grid.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if data.size <= _MAX_ANNOTATED_CELLS:
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, format_value(metric, v), ha="center", va="center", fontsize=7)
    if highlight is not None and highlight[0] in grid.columns and highlight[1] in grid.index:
        j, i = grid.columns.get_loc(highlight[0]), grid.index.get_loc(highlight[1])
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=2.5))
    ax.set_title(f"{metric} by {x} and {y}" + (" (box: this env)" if highlight else ""))
    ax.figure.colorbar(im, ax=ax, label=metric)
    return grid


def draw_table(ax, rows: list[tuple[str, str]], title: str = "Key metrics") -> None:
    """(name, value) rows as a table in two column pairs."""
    ax.axis("off")
    ax.set_title(title)
    if not rows:
        note(ax, "no metrics")
        return
    half = (len(rows) + 1) // 2
    left, right = rows[:half], rows[half:] + [("", "")] * (2 * half - len(rows))
    cells = [[a, b, c, d] for (a, b), (c, d) in zip(left, right, strict=True)]
    table = ax.table(cellText=cells, loc="upper center", cellLoc="left",
                     colWidths=[0.22, 0.2, 0.22, 0.2])
    table.auto_set_font_size(False)
    table.set_fontsize(8)


def equity_figure(equity: pd.Series | None, *, log: bool = False,
                  benchmark: pd.Series | None = None,
                  benchmark_label: str = "buy and hold") -> Figure:
    """Equity curve figure (10 x 3.5 in); ``equity`` as ``run.env_equity`` returns it, with an
    optional benchmark curve (``run.env_benchmark``)."""
    fig = _figure(10, 3.5)
    draw_equity(fig.add_subplot(), equity, log=log, benchmark=benchmark,
                benchmark_label=benchmark_label)
    return fig


def drawdown_figure(equity: pd.Series | None) -> Figure:
    """Underwater (drawdown) figure (10 x 2.5 in)."""
    fig = _figure(10, 2.5)
    draw_drawdown(fig.add_subplot(), equity)
    return fig


def monthly_returns_figure(equity: pd.Series | None) -> Figure:
    """Calendar-returns heat map, 10 in wide: months by year, or years by decade for histories
    longer than ``MONTHLY_MAX_YEARS`` years (``draw_calendar_returns``)."""
    fig = _figure(10, 0.6 + calendar_height(equity))
    draw_calendar_returns(fig.add_subplot(), equity)
    return fig


def rolling_sharpe_figure(equity: pd.Series | None, periods_per_year: float | None, *,
                          rf_annual: float = 0.0) -> Figure:
    """Rolling-Sharpe figure (10 x 2.5 in)."""
    fig = _figure(10, 2.5)
    draw_rolling_sharpe(fig.add_subplot(), equity, periods_per_year, rf_annual=rf_annual)
    return fig


def exposure_figure(exposure: pd.Series | None, *, fraction: bool = True,
                    metric: float | None = None) -> Figure:
    """Exposure figure (10 x 2.5 in)."""
    fig = _figure(10, 2.5)
    draw_exposure(fig.add_subplot(), exposure, fraction=fraction, metric=metric)
    return fig


def trades_figure(trades: pd.DataFrame | None) -> Figure:
    """Trade-return histogram (6 x 3.5 in); ``trades`` = rows of trades.parquet."""
    fig = _figure(6, 3.5)
    draw_trades(fig.add_subplot(), trades)
    return fig


def param_heatmap_figure(metrics_df: pd.DataFrame, x: str, y: str, metric: str, *,
                         highlight: tuple | None = None) -> Figure:
    """Heat map of the mean ``metric`` over a 2-D grid of parameters ``x`` and ``y`` (6.5 x 4.5
    in); other columns that vary are averaged over. Raises ValueError for an unknown column."""
    fig = _figure(6.5, 4.5)
    draw_param_heatmap(fig.add_subplot(), metrics_df, x, y, metric, highlight=highlight)
    return fig


__all__ = ["calendar_height", "draw_calendar_returns", "draw_drawdown", "draw_equity",
           "draw_exposure", "draw_monthly_returns", "draw_param_heatmap", "draw_rolling_sharpe",
           "draw_table", "draw_trades", "draw_yearly_returns", "drawdown_figure",
           "equity_figure", "exposure_figure", "monthly_height", "monthly_returns_figure", "note",
           "param_heatmap_figure", "rolling_sharpe_figure", "trades_figure"]
