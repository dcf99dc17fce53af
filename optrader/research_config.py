"""Config schemas of the research modes: strategies (``strategy``), backtests (``backtest``),
validation (``validation``) and metric conventions (``metrics``).

``strategy`` has one schema per registered strategy (``STRATEGY_SCHEMAS``): ``name`` plus that
strategy's parameters. A parameter is a number or a list of numbers; lists form a grid (the
Cartesian product over the parameters, first parameter varying slowest), one env per point.
``STRATEGY_PARAMS`` maps each parameter to its column of the kernel's params array
(``kernels.strategies``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optrader.checks import ConfigError, _at_least, _in_range, _one_of, _positive

# name -> ((param, kernel column, default, kind), ...); kind: "window" (whole bars >= 1),
# "window2" (whole bars >= 2), "flag" (0 or 1), "prob" ([0, 1]), "real" (finite), "seed"
# (whole >= 0)
STRATEGY_PARAMS: dict[str, tuple[tuple[str, int, float, str], ...]] = {
    "buy_and_hold": (),
    "sma_cross": (("fast", 0, 10, "window"), ("slow", 1, 50, "window"),
                  ("long_only", 2, 0, "flag")),
    "ema_cross": (("fast", 0, 12, "window"), ("slow", 1, 26, "window"),
                  ("long_only", 2, 0, "flag")),
    "zscore": (("lookback", 0, 20, "window2"), ("entry_z", 1, 2.0, "real"),
               ("exit_z", 2, 0.5, "real")),
    "bollinger": (("lookback", 0, 20, "window2"), ("k", 1, 2.0, "real")),
    "momentum": (("lookback", 0, 20, "window"), ("long_only", 1, 0, "flag")),
    "rsi": (("period", 0, 14, "window"), ("lower", 1, 30.0, "real"), ("upper", 2, 70.0, "real")),
    "pairs": (("lookback", 0, 60, "window2"), ("entry_z", 1, 2.0, "real"),
              ("exit_z", 2, 0.5, "real")),
    "random": (("p_change", 0, 0.05, "prob"), ("seed", 3, 0, "seed")),
}


def _check_strategy(self, key: str) -> None:
    _one_of(f"{key}.name", self.name, tuple(STRATEGY_PARAMS))
    for pname, _, _, kind in STRATEGY_PARAMS[self.name]:
        for v in _values(getattr(self, pname), f"{key}.{pname}"):
            check_param_value(f"{key}.{pname}", kind, v)
    grid = strategy_grid(self)[1]
    if self.name in ("sma_cross", "ema_cross") and grid.size and np.any(grid[:, 0] >= grid[:, 1]):
        bad = grid[np.argmax(grid[:, 0] >= grid[:, 1])]
        raise ConfigError(f"{key}: expected fast < slow in every grid point, got fast={bad[0]:g}, "
                          f"slow={bad[1]:g}")


def check_param_value(where: str, kind: str, v: float) -> None:
    """ConfigError unless v suits a parameter of ``kind`` (see STRATEGY_PARAMS); shared by the
    config and ``run_strategy``'s kernel params."""
    if kind in ("window", "window2", "seed"):
        lo = {"window": 1, "window2": 2, "seed": 0}[kind]
        if v != round(v) or v < lo:
            raise ConfigError(f"{where}: expected whole bars >= {lo}, got {v!r}"
                              if kind != "seed" else
                              f"{where}: expected a whole number >= 0, got {v!r}")
    elif kind == "flag" and v not in (0.0, 1.0):
        raise ConfigError(f"{where}: expected 0 or 1, got {v!r}")
    elif kind == "prob":
        _in_range(where, v, 0.0, 1.0)


def _values(v: Any, key: str) -> tuple[float, ...]:
    """A parameter's values: a number, or a non-empty list of numbers (a grid axis)."""
    items = v if isinstance(v, (list, tuple)) else (v,)
    if not items:
        raise ConfigError(f"{key}: expected a number or a non-empty list of numbers, got []")
    out = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
            raise ConfigError(f"{key}: expected finite numbers, got {x!r}")
        out.append(float(x))
    return tuple(out)


def _strategy_schema(name: str, params) -> type:
    fields = [("name", str, field(default=name))]
    fields += [(p, Any, field(default=d)) for p, _, d, _ in params]
    return dataclasses.make_dataclass(
        f"{''.join(w.title() for w in name.split('_'))}StrategyConfig", fields, frozen=True,
        namespace={"check": _check_strategy,
                   "__doc__": f"Strategy {name!r}: parameters "
                              f"{[p for p, *_ in params] or 'none'} (numbers or grid lists)."})


STRATEGY_SCHEMAS: dict[str, type] = {n: _strategy_schema(n, p) for n, p in STRATEGY_PARAMS.items()}


def strategy_grid(cfg) -> tuple[tuple[str, ...], np.ndarray]:
    """(parameter names, float64 (n_points, n_params)) of a strategy config's grid."""
    params = STRATEGY_PARAMS[cfg.name]
    names = tuple(p for p, *_ in params)
    axes = [_values(getattr(cfg, p), p) for p in names]
    points = list(itertools.product(*axes)) if axes else [()]
    return names, np.array(points, dtype=np.float64).reshape(len(points), len(names))


def kernel_params(name: str, grid: np.ndarray) -> np.ndarray:
    """The kernel's params float64 (n, N_STRATEGY_PARAM) for grid rows of strategy ``name``."""
    from kernels.strategies import N_STRATEGY_PARAM

    out = np.zeros((grid.shape[0], N_STRATEGY_PARAM))
    for k, (_, col, _, _) in enumerate(STRATEGY_PARAMS[name]):
        out[:, col] = grid[:, k]
    return out


@dataclass(frozen=True)
class MetricsConfig:
    periods_per_year: float = 0.0  # bars per year for annualising; 0: inferred from timestamps
    risk_free: float = 0.0  # annual risk-free rate (fraction), for Sharpe and Sortino

    def check(self, key: str) -> None:
        _at_least(f"{key}.periods_per_year", self.periods_per_year, 0.0)
        _in_range(f"{key}.risk_free", self.risk_free, -1.0, 1.0)


@dataclass(frozen=True)
class BacktestConfig:
    memory_budget_mb: float = 4096.0  # refuse a run whose curves + fills would exceed this
    per_asset: bool = False  # one env per (asset, parameter set), each trading its asset alone
    # on_change: trade an asset only when the strategy's target weight changes (orders on signals,
    # like vectorbt's from_signals); every_bar: rebalance to the target weight every bar (the
    # env's rule; needed with sizing rules, stops, portfolio limits, latency or limit orders)
    rebalance: str = "on_change"
    rank_by: str = "sharpe"  # metric of the printed top-N table (metrics.parquet has them all)
    top_n: int = 10  # rows of the printed table
    save_equity: bool = True  # write equity.parquet (one column per env)
    fill_cap: int = 0  # fill records kept per env; 0: sized from the range and the budget

    def check(self, key: str) -> None:
        from optrader.metrics import METRIC_NAMES

        _positive(f"{key}.memory_budget_mb", self.memory_budget_mb)
        _one_of(f"{key}.rebalance", self.rebalance, ("on_change", "every_bar"))
        _one_of(f"{key}.rank_by", self.rank_by, METRIC_NAMES)
        _at_least(f"{key}.top_n", self.top_n, 1)
        _at_least(f"{key}.fill_cap", self.fill_cap, 0)


_GATE = re.compile(r"^\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


def parse_gate(key: str, text: Any) -> tuple[str, float]:
    """A promotion gate '> 1.5' / '<= 0.1' as (operator, threshold)."""
    m = _GATE.match(str(text))
    try:
        value = float(m.group(2)) if m else float("nan")
    except ValueError:
        value = float("nan")
    if not m or not np.isfinite(value):
        raise ConfigError(f"{key}: expected a comparison like '> 1.5' or '<= 0.1', got {text!r}")
    return m.group(1), value


@dataclass(frozen=True)
class ValidationConfig:
    episodes: int = 32  # K episodes per policy, starts spread evenly over the split
    episode_length: int = 0  # bars per episode; 0: env.episode_length
    bootstrap: int = 2000  # resamples for the confidence intervals of the means
    confidence: float = 0.95  # two-sided confidence level
    baselines: tuple = ("buy_and_hold", "random")  # compared on the same episodes
    gates: dict = field(default_factory=lambda: {"sharpe": "> 1.5", "max_drawdown": "< 0.10"})
    gate_stat: str = "mean"  # mean | conservative (the CI bound on the failing side)

    def check(self, key: str) -> None:
        from optrader.metrics import METRIC_NAMES

        _at_least(f"{key}.episodes", self.episodes, 1)
        _at_least(f"{key}.episode_length", self.episode_length, 0)
        _at_least(f"{key}.bootstrap", self.bootstrap, 100)
        _in_range(f"{key}.confidence", self.confidence, 0.0, 1.0, closed_lo=False,
                  closed_hi=False)
        for b in self.baselines:
            _one_of(f"{key}.baselines", b, ("buy_and_hold", "random"))
        for metric, text in self.gates.items():
            _one_of(f"{key}.gates", metric, METRIC_NAMES)
            parse_gate(f"{key}.gates.{metric}", text)
        _one_of(f"{key}.gate_stat", self.gate_stat, ("mean", "conservative"))


def build_strategy(raw: Any, build) -> Any:
    """The strategy schema selected by ``raw['name']``, built with the config's ``_build``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"strategy: expected a mapping, got {raw!r}")
    name = raw.get("name", "sma_cross")
    _one_of("strategy.name", name, tuple(STRATEGY_PARAMS))
    return build(STRATEGY_SCHEMAS[name], raw, "strategy")
