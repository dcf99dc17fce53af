"""The tear sheet of one env: its contents (``build_sheet``), HTML and PNG renderings, and
``write_report`` (the Python API of ``python -m optrader.report``).

Files are written only where asked: the default ``report.html`` / ``report.png`` in the run
directory, or ``out``. An existing file is replaced only if this module wrote it (HTML: a
generator meta tag; PNG: a Software text chunk) or with ``force=True``.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from optrader.output_paths import output_file_problem
from optrader.report import figures as F
from optrader.report.calc import (
    annualisation_text,
    exposure,
    format_param,
    format_run_value,
    format_value,
    varying_params,
)
from optrader.report.run import (
    ReportError,
    Run,
    Selection,
    closes,
    env_benchmark,
    env_equity,
    env_trades,
    is_agent_run,
    load_run,
    run_annualisation,
    select,
)

FORMATS = {"html": (".html",), "png": (".png",), "both": (".html", ".png")}
SUFFIXES = {"html": (".html", ".htm"), "png": (".png",)}  # accepted for --out
HTML_MARKER = '<meta name="generator" content="optrader.report">'
PNG_MARKER = b"Software\x00optrader.report"  # the tEXt chunk savefig writes from metadata
DPI = 100


@dataclass
class Sheet:
    """Everything one tear sheet shows (notes explain panels that cannot be drawn)."""

    run: Run
    selection: Selection
    title: str  # strategy, asset, env
    subtitle: str  # parameters, date range, how the env was chosen
    equity: pd.Series | None  # float64 (T,) currency, UTC index
    equity_note: str
    trades: pd.DataFrame | None  # the env's rows of trades.parquet
    trades_note: str
    grid_rows: pd.DataFrame  # metrics rows of the env's strategy and asset
    grid_axes: tuple[str, str] | None  # (x, y) parameters of the heat map, None: no 2-D grid
    grid_note: str
    highlight: tuple | None  # (x value, y value) of the env
    params: list[tuple[str, str]]  # (name, formatted value)
    metrics: list[tuple[str, str]]
    benchmark: pd.Series | None = None  # buy and hold on the equity's bars (currency)
    benchmark_label: str = ""  # its legend, or why there is none
    annualisation: dict | None = None  # periods_per_year, source, basis
    exposure: pd.Series | None = None  # net exposure per bar (calc.exposure)
    exposure_fraction: bool = True  # exposure is a fraction of equity (else open trips)
    agent: bool = False  # a trained policy's run: no parameter heat map
    risk_free: float = 0.0  # annual, for the rolling Sharpe

    @property
    def periods_per_year(self) -> float | None:
        return None if self.annualisation is None else self.annualisation["periods_per_year"]


def build_sheet(run: Run, selection: Selection) -> Sheet:
    """Gather the selected env's curve, trades, parameter grid and formatted metrics."""
    env = selection.env
    row = run.row(env)
    strategy = str(row.get("strategy", run.config.get("strategy", "strategy")))
    asset = row.get("asset")
    equity, equity_note = env_equity(run, env)
    trades, trades_note = env_trades(run, env)
    same = pd.Series(True, index=run.metrics.index)
    for col in ("strategy", "asset"):
        if col in run.metrics.columns:
            same &= run.metrics[col] == row[col]
    rows = run.metrics.loc[same]
    varying = varying_params(rows, run.params)
    axes, grid_note, highlight = None, "", None
    if len(varying) == 2:
        axes = (varying[0], varying[1])
        highlight = (row[axes[0]], row[axes[1]])
    elif not varying:
        grid_note = "a single parameter set: no parameter heat map"
    elif len(varying) == 1:
        grid_note = f"only {varying[0]} varies: no 2-D parameter heat map"
    else:
        grid_note = (f"{len(varying)} parameters vary ({', '.join(varying)}): no 2-D heat map; "
                     "param_heatmap_figure(metrics, x, y, metric) averages over the others")
    agent = is_agent_run(run)
    if agent:
        axes, grid_note = None, "a trained policy's run: no strategy parameters to map"
    params = [(p, format_param(row[p])) for p in run.params]
    head = f"{strategy} · {asset} · env {env}" if asset is not None else f"{strategy} · env {env}"
    ann = run_annualisation(run, equity)
    subtitle = " · ".join(
        [", ".join(f"{k}={v}" for k, v in params) or "no parameters",
         _date_range(equity, trades), selection.how])
    metrics = [(m, format_value(m, row[m])) for m in run.metric_names]
    if ann is not None:  # the table says how many, the subtitle from what
        metrics.append(("periods_per_year", f"{format_run_value('', ann['periods_per_year'])} "
                                            f"({ann.get('source', '?')})"))
        subtitle += f"\nannualised with {annualisation_text(ann)}"
    prices = closes(run)
    bench, bench_label = env_benchmark(run, env, equity, prices)
    expo = None if equity is None else exposure(trades, equity, prices)
    rf = run.config.get("risk_free", 0.0)
    rf = float(rf) if isinstance(rf, (int, float)) and not isinstance(rf, bool) else 0.0
    return Sheet(run, selection, head, subtitle, equity, equity_note, trades, trades_note, rows,
                 axes, grid_note, highlight, params, metrics, bench, bench_label, ann, expo,
                 prices is not None, agent, rf)


def _date_range(equity: pd.Series | None, trades: pd.DataFrame | None) -> str:
    if equity is not None:
        bars = len(equity)
        first, last, n = equity.index[0], equity.index[-1], f" ({bars} bar{'s' * (bars != 1)})"
    elif trades is not None and {"entry_time", "exit_time"} <= set(trades.columns):
        first, last, n = trades["entry_time"].min(), trades["exit_time"].max(), " (trades)"
    else:
        return "dates unknown"
    if pd.isna(first) or pd.isna(last):
        return "dates unknown"
    daily = all(t == t.normalize() for t in (first, last))
    fmt = "%Y-%m-%d" if daily else "%Y-%m-%d %H:%M UTC"
    return f"{first.strftime(fmt)} to {last.strftime(fmt)}{n}"


def sheet_figure(sheet: Sheet, *, log: bool = False) -> Figure:
    """Every panel of ``sheet`` in one figure 14 in wide (the PNG tear sheet); without an equity
    curve, one line says so in place of the curve panels. Agent runs have no parameter heat map:
    their trades panel takes the full width."""
    table = sheet.params + sheet.metrics
    heights = [3.6, 0.6 + 0.25 * ((len(table) + 1) // 2)]  # trades | heat map, then the table
    if sheet.equity is not None:
        heights = [3.2, 2.0, 2.0, 2.0, F.calendar_height(sheet.equity)] + heights
    else:
        heights = [0.5] + heights
    fig = Figure(figsize=(14, sum(heights) + 0.8), layout="constrained")
    fig.suptitle(f"{sheet.title}\n{sheet.subtitle}", fontsize=12)
    gs = fig.add_gridspec(len(heights), 2, height_ratios=heights)
    if sheet.equity is not None:
        eq = sheet.equity
        ax = fig.add_subplot(gs[0, :])
        F.draw_equity(ax, eq, log=log, benchmark=sheet.benchmark,
                      benchmark_label=sheet.benchmark_label)
        if sheet.benchmark is None:  # why there is no buy-and-hold line
            ax.text(0.99, 0.02, sheet.benchmark_label, transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=8, color="0.4")
        F.draw_drawdown(fig.add_subplot(gs[1, :]), eq)
        F.draw_rolling_sharpe(fig.add_subplot(gs[2, :]), eq, sheet.periods_per_year,
                              rf_annual=sheet.risk_free)
        F.draw_exposure(fig.add_subplot(gs[3, :]), sheet.exposure,
                        fraction=sheet.exposure_fraction, metric=_exposure_metric(sheet))
        F.draw_calendar_returns(fig.add_subplot(gs[4, :]), eq)
    else:
        ax = fig.add_subplot(gs[0, :])
        F.note(ax, f"{sheet.equity_note}; equity, drawdown, rolling Sharpe, exposure and "
               "calendar returns are omitted", width=120)
        ax.axis("off")
    if sheet.agent:
        F.draw_trades(fig.add_subplot(gs[-2, :]), sheet.trades, note_text=sheet.trades_note)
    else:
        F.draw_trades(fig.add_subplot(gs[-2, 0]), sheet.trades, note_text=sheet.trades_note)
        ax = fig.add_subplot(gs[-2, 1])
        if sheet.grid_axes is None:
            F.note(ax, sheet.grid_note, "Parameter heat map")
        else:
            F.draw_param_heatmap(ax, sheet.grid_rows, *sheet.grid_axes, sheet.selection.metric,
                                 highlight=sheet.highlight)
    F.draw_table(fig.add_subplot(gs[-1, :]), table, "Parameters and key metrics")
    return fig


def _exposure_metric(sheet: Sheet) -> float | None:
    row = sheet.run.row(sheet.selection.env)
    value = row.get("exposure")
    return float(value) if value is not None and pd.notna(value) else None


def _img(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _note_html(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _table_html(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return (f"<table><thead><tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th>"
            f"</tr></thead><tbody>{body}</tbody></table>")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:.2em}.sub{color:#555;margin-top:0}.note{color:#666;font-style:italic}
img{max-width:100%}table{border-collapse:collapse;margin:.5em 2em .5em 0;vertical-align:top}
th,td{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}td{text-align:right}
.tables{display:flex;flex-wrap:wrap;align-items:flex-start}.row{display:flex;flex-wrap:wrap}"""


def render_html(sheet: Sheet, *, log: bool = False) -> str:
    """A self-contained HTML page: figures as base64 PNGs, metrics as HTML tables."""
    eq, s = sheet.equity, sheet
    if eq is None:
        curves = [_note_html(s.equity_note + "; equity, drawdown, rolling Sharpe, exposure and "
                             "calendar returns are omitted")]
    else:
        curves = [_img(F.equity_figure(eq, log=log, benchmark=s.benchmark,
                                       benchmark_label=s.benchmark_label), "equity curve"),
                  _img(F.drawdown_figure(eq), "drawdown"),
                  _img(F.rolling_sharpe_figure(eq, s.periods_per_year, rf_annual=s.risk_free),
                       "rolling Sharpe"),
                  _img(F.exposure_figure(s.exposure, fraction=s.exposure_fraction,
                                         metric=_exposure_metric(s)), "exposure"),
                  _img(F.monthly_returns_figure(eq), "calendar returns")]
        if s.benchmark is None:
            curves.insert(1, _note_html(s.benchmark_label))
    trades = (_note_html(s.trades_note) if s.trades is None
              else _img(F.trades_figure(s.trades), "trade returns"))
    grid = (_note_html(s.grid_note) if s.grid_axes is None
            else _img(F.param_heatmap_figure(s.grid_rows, *s.grid_axes, s.selection.metric,
                                             highlight=s.highlight), "parameter heat map"))
    run = [("run directory", str(s.run.path.resolve())), ("envs", str(len(s.run.metrics)))]
    run += [(k, format_run_value(k, v)) for k, v in s.run.config.items()
            if k not in ("params", "strategy", "periods_per_year")
            and (isinstance(v, (str, int, float, bool)) or k == "annualisation")]
    title = html.escape(s.title)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', HTML_MARKER,
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>", f'<p class="sub">{html.escape(s.subtitle)}</p>',
        '<div class="tables">', _table_html(s.metrics, ("metric", "value")),
        _table_html(s.params, ("parameter", "value")), _table_html(run, ("run", "")), "</div>",
        "<h2>Equity, drawdown, rolling Sharpe, exposure, calendar returns</h2>", *curves,
        '<div class="row"><div><h2>Trades</h2>', trades, "</div>",
        *([] if s.agent else ["<div><h2>Parameters</h2>", grid, "</div>"]), "</div>",
        "</body></html>", ""])


def output_paths(run_dir: Path, fmt: str, out: str | Path | None, force: bool) -> list[Path]:
    """Where ``write_report`` writes: report.<ext> in the run dir (or in ``out`` if it is a
    directory), ``out`` itself for one format, ``out`` with each suffix for "both".

    Raises:
        ReportError: an unknown format, a suffix contradicting it, a missing parent directory, or
            an existing file this module did not write (without ``force``).
    """
    if fmt not in FORMATS:
        raise ReportError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    exts = FORMATS[fmt]
    if out is None or Path(out).is_dir():
        paths = [Path(out or run_dir) / f"report{e}" for e in exts]
    elif fmt == "both":
        paths = [Path(out).with_suffix(e) for e in exts]
    else:
        out = Path(out)
        if out.suffix and out.suffix.lower() not in SUFFIXES[fmt]:
            raise ReportError(f"--out: expected a {exts[0]} path for --format {fmt}, "
                              f"got {str(out)!r}")
        paths = [out if out.suffix else out.with_suffix(exts[0])]
    for path in paths:
        problem = output_file_problem(path)
        if problem is not None:
            raise ReportError(f"--out: {problem}")
        if path.exists() and not force and not is_report_file(path):
            raise ReportError(f"{str(path)!r} exists and was not written by optrader.report; "
                              "pass --force to overwrite it or --out another path")
    return paths


def is_report_file(path: Path) -> bool:
    """Whether ``path`` is a tear sheet this module wrote (its marker is in the first 64 KiB)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return HTML_MARKER.encode() in head or PNG_MARKER in head


def write_report(run_dir, env: int | None = None, fmt: str = "html", out=None,
                 metric: str | None = None, *, log: bool = False,
                 force: bool = False) -> list[Path]:
    """Write the tear sheet of one env of a backtest run directory.

    Args:
        run_dir: the directory ``python -m optrader.backtest`` wrote.
        env: the env id (metrics.parquet ``env``); None: the best by ``metric``.
        fmt: "html" (one self-contained file), "png" (one figure) or "both".
        out: a file path (for "both": the stem; each format's suffix replaces its suffix) or a
            directory; None: report.html / report.png in ``run_dir``.
        metric: the ranking metric choosing the env and colouring the parameter heat map; None:
            backtest.json's ``rank_by``. The best is the largest, or the smallest for risks and
            losses (``optrader.metrics.LOWER_IS_BETTER``); NaN ranks last.
        log: equity on a log scale.
        force: overwrite an existing file that is not an earlier report.

    Returns:
        The paths written.

    Raises:
        ReportError: a missing or incomplete run dir, an unknown env or metric, an unusable
            output path; the message is one line naming what was expected and what was found.
    """
    run = load_run(run_dir)
    selection = select(run, env, metric)
    paths = output_paths(run.path, fmt, out, force)
    sheet = build_sheet(run, selection)
    for path in paths:
        if path.suffix.lower() == ".png":
            sheet_figure(sheet, log=log).savefig(path, dpi=DPI,
                                                  metadata={"Software": "optrader.report"})
        else:
            path.write_text(render_html(sheet, log=log), encoding="utf-8")
    return paths
