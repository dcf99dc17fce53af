"""Backtest tear sheets: ``python -m optrader.report RUN_DIR`` or ``write_report(run_dir)``.

A sheet shows one env of a run directory written by ``python -m optrader.backtest``: its equity
curve, drawdown, monthly returns, trade-return distribution, the ranking metric over a 2-D
parameter grid, and its key metrics. As HTML (one self-contained file) or PNG (one figure)::

    from optrader.report import write_report, load_run, env_equity, equity_figure
    write_report("runs/sma", fmt="both")             # runs/sma/report.html, report.png
    run = load_run("runs/sma")
    equity, _ = env_equity(run, 7)
    equity_figure(equity, log=True)                  # a matplotlib Figure, shown by Jupyter

Modules: ``run`` (reading, checking, choosing the env), ``calc`` (drawdown, calendar returns,
parameter grids, formats), ``figures`` (one function per panel), ``sheet`` (HTML, PNG, files),
``cli``. See docs/report.md.
"""

from optrader.report.calc import (
    drawdown,
    format_value,
    monthly_returns,
    param_grid,
    varying_params,
    yearly_returns,
)
from optrader.report.cli import main
from optrader.report.figures import (
    drawdown_figure,
    equity_figure,
    monthly_returns_figure,
    param_heatmap_figure,
    trades_figure,
)
from optrader.report.run import (
    LOWER_IS_BETTER,
    ReportError,
    Run,
    Selection,
    env_equity,
    env_trades,
    load_run,
    rank_envs,
    select,
)
from optrader.report.sheet import (
    Sheet,
    build_sheet,
    output_paths,
    render_html,
    sheet_figure,
    write_report,
)

__all__ = ["LOWER_IS_BETTER", "ReportError", "Run", "Selection", "Sheet", "build_sheet",
           "drawdown", "drawdown_figure", "env_equity", "env_trades", "equity_figure",
           "format_value", "load_run", "main", "monthly_returns", "monthly_returns_figure",
           "output_paths", "param_grid", "param_heatmap_figure", "rank_envs", "render_html", "select",
           "sheet_figure", "trades_figure", "varying_params", "write_report", "yearly_returns"]
