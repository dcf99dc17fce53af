"""Config schemas of the research modes: strategies (``strategy``), backtests (``backtest``),
validation (``validation``) and metric conventions (``metrics``).

``strategy`` has one schema per registered strategy (``STRATEGY_SCHEMAS``): ``name`` plus that
strategy's parameters. A parameter is a number or a list of numbers; lists form a grid (the
Cartesian product over the parameters, first parameter varying slowest), one env per point.
``STRATEGY_SPECS`` is each strategy's parameter table: every parameter's column of the kernel's
params array (``kernels.strategies``), default and allowed range, and the relations between
parameters (``fast < slow``, ``lower <= upper``, ``exit_z <= entry_z``); the config's check, the
backtest runner's check and docs/backtest.md read it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from optrader.checks import ConfigError, _at_least, _in_range, _one_of, _positive


class ParamSpec(NamedTuple):
    """One strategy parameter: its column of the kernel's params array, its default and the
    values it may take (``lo`` <= value <= ``hi``, whole numbers only if ``whole``)."""

    name: str
    column: int
    default: float
    lo: float
    hi: float = math.inf
    whole: bool = False
    unit: str = ""  # what it counts, for the docs


class Relation(NamedTuple):
    """A relation two parameters of one strategy must keep at every grid point / env:
    ``left op right`` with op "<" or "<="; ``why`` says what breaks otherwise."""

    left: str
    op: str
    right: str
    why: str


class StrategySpec(NamedTuple):
    """A strategy's parameter table: the parameters in order (grid and config order) and the
    relations between them. The config check, ``run_strategy``'s check and docs/backtest.md
    (``strategy_params_markdown``) all read it."""

    params: tuple[ParamSpec, ...]
    relations: tuple[Relation, ...] = ()


def _bars(name, col, default, lo=1):
    return ParamSpec(name, col, default, lo, whole=True, unit="bars")


def _flag(name, col):
    return ParamSpec(name, col, 0, 0, 1, whole=True)


_FAST_SLOW = Relation("fast", "<", "slow", "the fast average is the shorter window")
_Z_BAND = Relation("exit_z", "<=", "entry_z", "an exit threshold above the entry threshold "
                   "leaves no band to hold a position in")

STRATEGY_SPECS: dict[str, StrategySpec] = {
    "buy_and_hold": StrategySpec(()),
    "sma_cross": StrategySpec((_bars("fast", 0, 10), _bars("slow", 1, 50, 2),
                               _flag("long_only", 2)), (_FAST_SLOW,)),
    "ema_cross": StrategySpec((_bars("fast", 0, 12), _bars("slow", 1, 26, 2),
                               _flag("long_only", 2)), (_FAST_SLOW,)),
    "zscore": StrategySpec((_bars("lookback", 0, 20, 2),
                            ParamSpec("entry_z", 1, 2.0, 0.0, unit="std"),
                            ParamSpec("exit_z", 2, 0.5, 0.0, unit="std")), (_Z_BAND,)),
    "bollinger": StrategySpec((_bars("lookback", 0, 20, 2),
                               ParamSpec("k", 1, 2.0, 0.0, unit="std"))),
    "momentum": StrategySpec((_bars("lookback", 0, 20), _flag("long_only", 1))),
    "rsi": StrategySpec((_bars("period", 0, 14),
                         ParamSpec("lower", 1, 30.0, 0.0, 100.0, unit="RSI points"),
                         ParamSpec("upper", 2, 70.0, 0.0, 100.0, unit="RSI points")),
                        (Relation("lower", "<=", "upper", "an RSI between upper and lower "
                                  "would be both a long and a short signal"),)),
    "pairs": StrategySpec((_bars("lookback", 0, 60, 2),
                           ParamSpec("entry_z", 1, 2.0, 0.0, unit="std"),
                           ParamSpec("exit_z", 2, 0.5, 0.0, unit="std")), (_Z_BAND,)),
    "random": StrategySpec((ParamSpec("p_change", 0, 0.05, 0.0, 1.0, unit="probability per bar"),
                            # a whole float64: exact up to 2**53
                            ParamSpec("seed", 3, 0, 0, 2.0**53, whole=True, unit="hash seed"))),
}
# name -> its ParamSpecs (name, column, default, ...), in grid order
STRATEGY_PARAMS: dict[str, tuple[ParamSpec, ...]] = {n: s.params
                                                     for n, s in STRATEGY_SPECS.items()}


def _check_strategy(self, key: str) -> None:
    _one_of(f"{key}.name", self.name, tuple(STRATEGY_SPECS))
    for spec in STRATEGY_PARAMS[self.name]:
        _values(getattr(self, spec.name), f"{key}.{spec.name}")
    names, grid = strategy_grid(self)
    n = grid.shape[0]

    def row(r: int) -> str:
        point = ", ".join(f"{p}={v:g}" for p, v in zip(names, grid[r], strict=True))
        return f"grid row {r} of {n} ({point})"

    check_strategy_rows(self.name, grid, row, prefix=f"{key}.")


def _range_text(spec: ParamSpec) -> str:
    if spec.whole and (spec.lo, spec.hi) == (0, 1):
        return "0 or 1"
    kind = ("whole bars" if spec.unit == "bars" else "a whole number") if spec.whole else "a number"
    if spec.hi == math.inf:
        return f"{kind} >= {spec.lo:g}"
    hi = "2**53" if spec.hi == 2.0**53 else f"{spec.hi:g}"
    return f"{kind} in [{spec.lo:g}, {hi}]"


def check_strategy_rows(name: str, values: np.ndarray, row, prefix: str = "") -> None:
    """ConfigError unless every row of ``values`` (float (rows, n_params), the columns in
    ``STRATEGY_SPECS[name].params`` order) keeps the strategy's ranges and relations. The first
    offending row is named with ``row(r)`` (e.g. "grid row 3 of 8 (...)", "params row 3"),
    with the strategy, the parameters and their values. Shared by the config (grids) and
    ``run_strategy`` (kernel params)."""
    spec = STRATEGY_SPECS[name]
    col = {p.name: k for k, p in enumerate(spec.params)}
    for k, p in enumerate(spec.params):
        v = values[:, k]
        bad = ~np.isfinite(v) | (v < p.lo) | (v > p.hi)
        if p.whole:
            bad |= v != np.round(v)
        if bad.any():
            r = int(np.argmax(bad))
            raise ConfigError(f"{prefix}{p.name}: strategy {name!r} expects {p.name} to be "
                              f"{_range_text(p)}, got {p.name}={float(values[r, k]):g} at {row(r)}")
    for rel in spec.relations:
        a, b = values[:, col[rel.left]], values[:, col[rel.right]]
        bad = ~(a < b) if rel.op == "<" else ~(a <= b)
        if bad.any():
            r = int(np.argmax(bad))
            raise ConfigError(f"{prefix}{rel.left}, {prefix}{rel.right}: strategy {name!r} "
                              f"expects {rel.left} {rel.op} {rel.right} ({rel.why}), got "
                              f"{rel.left}={a[r]:g}, {rel.right}={b[r]:g} at {row(r)}")


def strategy_params_markdown() -> str:
    """The parameter table of every strategy as Markdown (docs/backtest.md holds it verbatim;
    a test keeps the two equal)."""
    lines = ["| strategy | parameter | default | allowed | relations |",
             "| --- | --- | --- | --- | --- |"]
    for name, spec in STRATEGY_SPECS.items():
        rel = "; ".join(f"`{r.left} {r.op} {r.right}`: {r.why}" for r in spec.relations)
        if not spec.params:
            lines.append(f"| `{name}` | (none) | | | |")
        for k, p in enumerate(spec.params):
            unit = f" ({p.unit})" if p.unit and p.unit != "bars" else ""
            lines.append(f"| {f'`{name}`' if k == 0 else ''} | `{p.name}` | {p.default:g} | "
                         f"{_range_text(p)}{unit} | {rel if k == 0 else ''} |")
    return "\n".join(lines) + "\n"


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
    fields += [(p.name, Any, field(default=p.default)) for p in params]
    return dataclasses.make_dataclass(
        f"{''.join(w.title() for w in name.split('_'))}StrategyConfig", fields, frozen=True,
        namespace={"check": _check_strategy,
                   "__doc__": f"Strategy {name!r}: parameters "
                              f"{[p.name for p in params] or 'none'} (numbers or grid "
                              f"lists; ranges and relations: STRATEGY_SPECS)."})


STRATEGY_SCHEMAS: dict[str, type] = {n: _strategy_schema(n, p) for n, p in STRATEGY_PARAMS.items()}


def strategy_grid(cfg) -> tuple[tuple[str, ...], np.ndarray]:
    """(parameter names, float64 (n_points, n_params)) of a strategy config's grid."""
    params = STRATEGY_PARAMS[cfg.name]
    names = tuple(p.name for p in params)
    axes = [_values(getattr(cfg, p), p) for p in names]
    points = list(itertools.product(*axes)) if axes else [()]
    return names, np.array(points, dtype=np.float64).reshape(len(points), len(names))


def kernel_params(name: str, grid: np.ndarray) -> np.ndarray:
    """The kernel's params float64 (n, N_STRATEGY_PARAM) for grid rows of strategy ``name``."""
    from kernels.strategies import N_STRATEGY_PARAM

    out = np.zeros((grid.shape[0], N_STRATEGY_PARAM))
    for k, p in enumerate(STRATEGY_PARAMS[name]):
        out[:, p.column] = grid[:, k]
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
