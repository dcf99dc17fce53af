"""Backtests: a batch of envs, one per parameter set (x asset), each over the whole range.

``runner``: ``run_strategy`` (a rule-based strategy in one kernel call) and ``backtest_metrics``;
``python -m optrader.backtest +env=backtest strategy=sma_cross strategy.fast=5,10`` is the command
line (``cli``).
"""

from optrader.backtest.runner import (
    BacktestResult,
    backtest_metrics,
    estimate_backtest_bytes,
    run_strategy,
)

__all__ = ["BacktestResult", "backtest_metrics", "estimate_backtest_bytes", "run_strategy"]
