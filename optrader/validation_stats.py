"""Statistics of a validation run: bootstrap confidence intervals of per-episode means, and gates.

``bootstrap_ci(x, resamples, confidence, seed)``: the mean of the finite values of x (one per
episode) with a percentile bootstrap interval: draw ``resamples`` samples of the n values with
replacement, take each sample's mean, and report the (1 - c)/2 and (1 + c)/2 quantiles of those
means (numpy's default linear interpolation). NaN values (a metric undefined for an episode,
e.g. a Sharpe ratio of a flat equity curve) are left out and counted. Every column is resampled
by a generator seeded with ``seed``, so columns with the same n use the same episode indices: a
paired bootstrap across policies evaluated on the same episodes.

The interval assumes independent episodes. Episodes whose bar ranges overlap share returns, so
the interval is then too narrow; ``optrader.validate`` reports the overlap.

Gates: ``"metric": "op value"`` with op one of ``>``, ``>=``, ``<``, ``<=``
(``optrader.research_config.parse_gate``), evaluated on the trained policy's mean, or with
``gate_stat: conservative`` on the interval bound on the failing side (the lower bound for
``>``/``>=``, the upper bound for ``<``/``<=``). A NaN statistic fails its gate.

``render_report`` prints a validation report (``optrader.validate``) as a table of policies x
KEY_METRICS, each "mean [low, high]", then one line per gate and PASS / FAIL.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import numpy as np

from optrader.research_config import parse_gate

KEY_METRICS = ("total_return", "sharpe", "max_drawdown", "win_rate", "n_trades")  # printed
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
GATE_STATS = ("mean", "conservative")


class BootstrapCI(NamedTuple):
    mean: float  # mean of the finite values; NaN when there are none
    low: float  # lower bound of the percentile interval of the mean
    high: float  # upper bound
    n: int  # finite values used
    n_nan: int  # NaN values left out


def bootstrap_ci(x, resamples: int, confidence: float, seed: int) -> BootstrapCI:
    """Mean of x and its percentile bootstrap interval, vectorized over the resamples.

    Args:
        x: float (n,) one value per episode; NaN values are left out (counted in n_nan).
        resamples: B >= 1 bootstrap samples.
        confidence: two-sided level in (0, 1), e.g. 0.95.
        seed: seeds ``np.random.default_rng``; equal seeds and inputs give equal intervals.

    Returns:
        ``BootstrapCI``: with no finite value, mean, low and high are NaN; with one, the interval
        is that value (zero width), as it is for constant values.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"x: expected one value per episode, shape (n,), got {a.shape}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 1:
        raise ValueError(f"resamples: expected an integer >= 1, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence!r}")
    if np.isinf(a).any():
        raise ValueError(f"x: expected finite values or NaN, got inf at episodes "
                         f"{np.nonzero(np.isinf(a))[0][:10].tolist()}")
    finite = a[~np.isnan(a)]
    n, n_nan = int(finite.size), int(a.size - finite.size)
    if n == 0:
        return BootstrapCI(np.nan, np.nan, np.nan, 0, n_nan)
    mean = float(finite.mean())
    if n == 1 or np.all(finite == finite[0]):
        return BootstrapCI(mean, mean, mean, n, n_nan)  # every resample has this mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(resamples), n))  # (B, n): one row per resample
    means = finite[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return BootstrapCI(mean, float(low), float(high), n, n_nan)


def summarize(frame, metrics, resamples: int, confidence: float, seed: int):
    """Per policy and metric: mean, ci_low, ci_high, n, n_nan of the episodes of ``frame``.

    Args:
        frame: DataFrame with a ``policy`` column and one column per metric, one row per
            (policy, episode).
        metrics: the metric columns to summarize.
        resamples, confidence, seed: as ``bootstrap_ci``.

    Returns:
        DataFrame with columns policy, metric, mean, ci_low, ci_high, n, n_nan, in the order
        policies first appear in ``frame`` and ``metrics`` are given.
    """
    import pandas as pd

    rows = []
    for policy in pd.unique(frame["policy"]):
        part = frame[frame["policy"] == policy]
        for metric in metrics:
            ci = bootstrap_ci(part[metric].to_numpy(dtype=np.float64), resamples, confidence,
                              seed)
            rows.append({"policy": policy, "metric": metric, "mean": ci.mean,
                         "ci_low": ci.low, "ci_high": ci.high, "n": ci.n, "n_nan": ci.n_nan})
    return pd.DataFrame(rows, columns=["policy", "metric", "mean", "ci_low", "ci_high", "n",
                                       "n_nan"])


def policy_cis(summary, policy: str) -> dict[str, BootstrapCI]:
    """metric -> ``BootstrapCI`` of one policy's rows of a ``summarize`` frame."""
    part = summary[summary["policy"] == policy]
    return {r.metric: BootstrapCI(float(r.mean), float(r.ci_low), float(r.ci_high), int(r.n),
                                  int(r.n_nan)) for r in part.itertuples()}


def summary_dict(summary) -> dict[str, dict[str, dict]]:
    """policy -> metric -> {mean, ci_low, ci_high, n, n_nan} of a ``summarize`` frame, as JSON
    values (NaN -> None)."""
    out: dict[str, dict[str, dict]] = {}
    for r in summary.itertuples():
        out.setdefault(r.policy, {})[r.metric] = {
            k: json_number(getattr(r, k)) for k in ("mean", "ci_low", "ci_high", "n", "n_nan")}
    return out


def json_number(v) -> float | int | None:
    """A JSON number: NaN -> None, numpy scalars -> Python."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    return None if math.isnan(v) else float(v)


class GateResult(NamedTuple):
    metric: str
    op: str
    threshold: float
    stat: str  # "mean", "ci_low" or "ci_high": the statistic compared
    value: float  # that statistic (NaN if undefined)
    passed: bool
    reason: str  # e.g. "sharpe mean 0.82 is not > 1.5"


def evaluate_gates(gates: dict, ci_of, gate_stat: str = "mean") -> list[GateResult]:
    """Check each gate ``metric: "op value"`` against a policy's statistics.

    Args:
        gates: metric name -> comparison text such as ``"> 1.5"``.
        ci_of: metric name -> ``BootstrapCI`` (or any object with mean, low, high, n, n_nan)
            of the policy under test, e.g. a dict.
        gate_stat: ``mean``, or ``conservative`` for the interval bound on the failing side.

    Returns:
        One ``GateResult`` per gate, in the order given.
    """
    if gate_stat not in GATE_STATS:
        raise ValueError(f"gate_stat: expected one of {list(GATE_STATS)}, got {gate_stat!r}")
    out = []
    for metric, text in gates.items():
        op, threshold = parse_gate(f"validation.gates.{metric}", text)
        if metric not in ci_of:
            raise ValueError(f"validation.gates: no statistics for metric {metric!r}; known: "
                             f"{sorted(ci_of)}")
        ci = ci_of[metric]
        stat = "mean" if gate_stat == "mean" else ("ci_low" if op.startswith(">") else "ci_high")
        value = {"mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high}[stat]
        label = {"mean": "mean", "ci_low": "CI low", "ci_high": "CI high"}[stat]
        if np.isnan(value):
            passed = False
            why = (f"undefined in all {ci.n_nan} episodes" if ci.n == 0 else "undefined")
            reason = f"{metric} {label} is NaN ({why}), not {op} {threshold:g}"
        else:
            passed = bool(OPS[op](value, threshold))
            shown = f"{metric} {label} {value:.4g}" + ("" if stat == "mean" else
                                                        f" (mean {ci.mean:.4g})")
            reason = f"{shown} {op} {threshold:g}" if passed else \
                f"{shown} is not {op} {threshold:g}"
        out.append(GateResult(metric, op, threshold, stat, float(value), passed, reason))
    return out


def render_report(report: dict, console=None) -> None:
    """Print the policies x KEY_METRICS table ("mean [low, high]") and the gate lines of a
    validation report (``optrader.validate.validate``'s result or validation.json)."""
    import sys

    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{report['episodes']} episodes of {report['episode_length']} bars: mean "
                        f"[{report['confidence']:.0%} bootstrap interval]")
    table.add_column("policy", no_wrap=True)
    for m in KEY_METRICS:
        table.add_column(m, justify="right")
    for policy, stats in report["summary"].items():
        table.add_row(policy, *(_cell(m, stats.get(m)) for m in KEY_METRICS))
    console.print(table)
    ann = report.get("annualisation")
    if ann:  # what the annualised columns assume
        console.print(f"annualised with {ann['periods_per_year']:,.6g} bars/year "
                      f"({ann['source']}: {ann['basis']})")
    for g in report["gates"]:
        console.print(f"{'✓' if g['passed'] else '✗'} {g['reason']}")
    failed = sum(not g["passed"] for g in report["gates"])
    console.print("PASS" + ("" if report["gates"] else " (no gates)") if report["passed"] else
                  f"FAIL ({failed} of {len(report['gates'])} gates)")


def _cell(metric: str, s: dict | None) -> str:
    """ "mean [low, high]": fractions as percentages, None (NaN) as n/a."""
    if s is None or s["mean"] is None:
        return "n/a"
    pct = metric in ("total_return", "max_drawdown", "win_rate")
    digits = 1 if metric == "n_trades" else 2

    def fmt(v):
        return "n/a" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.{digits}f}")

    return f"{fmt(s['mean'])} [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]"
