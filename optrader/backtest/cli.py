"""Backtest command line: ``python -m optrader.backtest strategy=sma_cross strategy.fast=5,10,20
strategy.slow=50,100``.

Reads top to bottom: validate the config (with ``agent.checkpoint``: take the trained run's
``data``, ``observation``, ``action``, ``execution``, ``risk`` and ``reward`` groups under your
keys, ``optrader.checkpoints``), load the market once, then either

* a strategy grid: one env per point of ``strategy_grid(spec.strategy)`` (x asset with
  ``backtest.per_asset``, asset-major), all run by ``run_strategy`` in one kernel call; or
* an agent (``agent.checkpoint=...``): the policy stepped from Python by ``run_agent``;

then metrics per env, the files of ``outputs`` in the run dir, and a table of the top
``backtest.top_n`` envs by ``backtest.rank_by``.

Throughput (``seconds``, ``bar_columns_per_second``) leaves out the time Numba spends compiling
kernels on their first use or loading them from its disk cache (``compile_s``,
``cache_load_s``; ``optrader.compile_status`` shows the compiling on a terminal or on stderr).

Command-line sweeps on ``strategy.*`` keys (``strategy.fast=5,10,20``,
``'strategy.fast=range(5,30,5)'``) are rewritten to Hydra lists before Hydra parses them, so the
whole grid is one batch of envs in one process. Sweeps over anything else are refused unless
``--multirun`` asks for one process (job) per value.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from optrader.annualisation import annualisation_for
from optrader.backtest.agent_run import run_agent
from optrader.backtest.benchmark import write_benchmark
from optrader.backtest.outputs import write_outputs
from optrader.backtest.runner import backtest_metrics, pad_stopped, run_strategy
from optrader.checkpoints import checkpoint_config, describe_taken
from optrader.cli_errors import VALUE_FLAGS, HydraCommand
from optrader.compile_status import CompileWatch
from optrader.config import ConfigError, config_dir, load_spec
from optrader.metrics import LOWER_IS_BETTER
from optrader.research_config import STRATEGY_PARAMS, kernel_params, strategy_grid

log = logging.getLogger(__name__)

TABLE_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades",
                 "win_rate")
_PERCENT = frozenset({"total_return", "cagr", "ann_vol", "max_drawdown", "win_rate", "var_95",
                      "cvar_95", "exposure"})


def run_backtest(cfg: DictConfig, data=None, out_dir: str | Path | None = None,
                 progress: bool = True, *, overrides: Sequence[str] | None = None,
                 show: bool = True) -> dict[str, Any]:
    """Backtest the config's strategy grid, or its ``agent.checkpoint``.

    Args:
        cfg: composed config in backtest mode (``optrader.compose(env="backtest", ...)``).
        data: market data for ``optrader.make_vec`` (None: the configured source).
        out_dir: if given, write the files of ``optrader.backtest.outputs`` there.
        progress: a spinner (strategy) or progress bar (agent) on a terminal, and the status
            while Numba compiles (``optrader.compile_status``; stderr off a terminal).
        overrides: the override strings ``cfg`` was composed with; with a checkpoint, their
            keys win over the groups taken from its run config
            (``optrader.checkpoints.checkpoint_config``). None: the keys where ``cfg`` differs
            from the defaults.
        show: print the top-N table and the throughput line.

    Returns:
        ``metrics`` (DataFrame, one row per env: env, strategy, asset, parameters, metrics),
        ``trades`` (TRADE_DTYPE), ``equity`` float64 (n, T+1) NaN after an env stopped,
        ``timestamps`` int64 (T+1,) UTC ns, ``table`` (the printed top-N rows), ``summary``
        (backtest.json), ``paths`` (name -> Path written), ``result`` (the BacktestResult).
    """
    with CompileWatch(show=progress) as watch:
        return _run_backtest(cfg, data, out_dir, progress, overrides, show, watch)


def _run_backtest(cfg, data, out_dir, progress, overrides, show, watch) -> dict[str, Any]:
    import optrader
    from optrader.data import load_market
    from optrader.data.loader import file_config

    spec = load_spec(cfg)  # everything is validated before any work starts
    if spec.env.mode != "backtest":
        raise ConfigError(f"env.mode: optrader.backtest runs backtest mode (+env=backtest, "
                          f"every env over the whole split), got {spec.env.mode!r}")
    bt = spec.backtest
    ckpt_path, run_cfg = None, cfg
    if spec.agent.checkpoint:
        ckpt = checkpoint_config(cfg, spec.agent.checkpoint, overrides)
        ckpt_path, run_cfg = ckpt.path, ckpt.config
        spec = load_spec(run_cfg)  # with the checkpoint's groups, still before any work
        log.info("agent.checkpoint=%s: backtesting its policy; the strategy group (%s) is "
                 "ignored%s", ckpt_path, spec.strategy.name,
                 f"; from {ckpt.run_config}: {describe_taken(ckpt.taken)}" if ckpt.taken else "")
        if "data" in ckpt.taken and not ckpt.user_keys & {"data.split", "data.split.use"}:
            log.warning("backtesting on the split the policy was trained on (data.split.use=%s "
                        "from its run config): set data.split.use=test for held-out bars",
                        spec.data.split.use)
        if bt.per_asset:
            log.warning("backtest.per_asset is ignored for a checkpoint: its policy trades the "
                        "assets it was trained on")
    market = load_market(spec.data, data)  # loaded once; the env shares it
    data_cfg = file_config(spec.data, data)
    if data_cfg is not spec.data:  # a path splits as data=csv|parquet data.path=PATH would
        plain = OmegaConf.to_container(run_cfg, resolve=True)
        plain["data"] = OmegaConf.to_container(OmegaConf.structured(data_cfg))
        run_cfg = OmegaConf.create(plain)
        spec = load_spec(run_cfg)
    # fills are part of every result; the per-step info dicts are not read
    run_cfg = OmegaConf.merge(run_cfg, {"execution": {"record_fills": True}})
    env_cfg = OmegaConf.merge(run_cfg, {"env": {"info": "none"}})
    console = _console()

    if ckpt_path is None:
        name = spec.strategy.name
        names, grid = strategy_grid(spec.strategy)
        assets = None
        if bt.per_asset:  # asset-major: env a * n_points + p trades asset a with grid point p
            assets = np.repeat(np.arange(market.n_assets), grid.shape[0])
            grid = np.tile(grid, (market.n_assets, 1))
        env = optrader.make_vec(env_cfg, num_envs=grid.shape[0], data=market, copy=False)
        with _Spinner(console, progress, f"{name}: {grid.shape[0]} envs", watch), \
                watch.span() as run:
            try:
                result = run_strategy(env, name, kernel_params(name, grid), assets=assets,
                                      fill_cap=bt.fill_cap or None,
                                      memory_budget_mb=bt.memory_budget_mb,
                                      rebalance=bt.rebalance)
            except RuntimeError as exc:
                if "fill_cap" not in str(exc):
                    raise
                raise ValueError(f"{exc} (backtest.fill_cap=N)") from None
        params = {p: grid[:, k] for k, p in enumerate(names)}
    else:
        name, names, params = "agent", (), None
        env = optrader.make_vec(env_cfg, num_envs=1, data=market, copy=False)
        with _Bar(console, progress, watch) as bar, watch.span() as run:
            try:
                result = run_agent(env, ckpt_path, on_step=bar.update)
            except ValueError as exc:
                prefix = "" if str(exc).startswith("agent.checkpoint") else "agent.checkpoint: "
                raise ValueError(f"{prefix}{exc}") from None
    seconds = max(run.seconds, 1e-9)  # without compiling and cache loads
    watch.settle()  # plain output: the seconds of the compiling that just ended

    n, n_steps = result.equity.shape[0], result.equity.shape[1] - 1
    annualisation = annualisation_for(spec, market)  # configured, synthetic or inferred
    ppy = annualisation.periods_per_year
    equity = result.equity
    if (result.steps < n_steps).any():
        equity = pad_stopped(equity, result.steps)  # metrics see only the bars traded
    frame, trades = backtest_metrics(env, result._replace(equity=equity), periods_per_year=ppy,
                                     risk_free=spec.metrics.risk_free, params=params)
    frame = frame.reset_index(drop=True)
    frame.insert(0, "env", np.arange(n, dtype=np.int64))
    frame.insert(1, "strategy", name)
    frame.insert(2, "asset", [market.symbols[a] if a >= 0 else "portfolio"
                              for a in result.assets])
    ts = result.timestamps
    summary = {
        "strategy": name, "params": list(names), "rank_by": bt.rank_by,
        "periods_per_year": ppy, "annualisation": annualisation.as_dict(),
        "risk_free": float(spec.metrics.risk_free),
        "n_envs": int(n), "n_steps": int(n_steps), "start": _iso(ts[0]), "end": _iso(ts[-1]),
        # seconds leaves out compile_s and cache_load_s: a cached run takes well under 1 ms
        "seconds": round(seconds, 9), "bar_columns_per_second": n * n_steps / seconds,
        "wall_seconds": round(run.wall, 9), **run.summary(),
        "per_asset": bool(bt.per_asset and ckpt_path is None),
        "checkpoint": str(ckpt_path) if ckpt_path is not None else None,
    }
    table = rank_envs(frame, bt.rank_by, bt.top_n)
    paths = {}
    if out_dir is not None:
        paths = write_outputs(out_dir, metrics=frame, trades=trades,
                              market_timestamps=market.timestamps, summary=summary,
                              config_yaml=OmegaConf.to_yaml(run_cfg, resolve=True),
                              equity=equity if bt.save_equity else None, timestamps=ts)
        if bt.save_equity:  # closes at the equity's bars: the report's buy and hold, exposure
            paths["benchmark"] = write_benchmark(out_dir, market, ts)
    shown = table[["env", "asset", *names, *dict.fromkeys((*TABLE_METRICS, bt.rank_by))]]
    if show:
        print_table(console, shown, bt.rank_by, summary, out_dir)
    env.close()
    return {"metrics": frame, "trades": trades, "equity": equity, "timestamps": ts,
            "table": shown, "summary": summary, "paths": paths, "result": result}


def rank_envs(metrics, rank_by: str, top_n: int):
    """The top_n rows of ``metrics`` by ``rank_by``: ascending for ``LOWER_IS_BETTER``,
    descending otherwise, NaN last, ties in env order."""
    if rank_by not in metrics.columns:
        raise ValueError(f"backtest.rank_by: expected a metric column, got {rank_by!r}; "
                         f"columns: {list(metrics.columns)}")
    ordered = metrics.sort_values(rank_by, ascending=rank_by in LOWER_IS_BETTER,
                                  na_position="last", kind="stable")
    return ordered.head(int(top_n))


def print_table(console, table, rank_by: str, summary: dict, out_dir) -> None:
    """The ranked rows as a rich table, then the run's throughput and output dir."""
    from rich.table import Table

    order = "ascending" if rank_by in LOWER_IS_BETTER else "descending"
    t = Table(title=f"{summary['strategy']}: top {len(table)} of {summary['n_envs']} envs by "
                    f"{rank_by} ({order})")
    for col in table.columns:
        t.add_column(str(col), justify="left" if col == "asset" else "right")
    for row in table.itertuples(index=False):
        t.add_row(*(_fmt(col, v, summary["params"]) for col, v in zip(table.columns, row,
                                                                       strict=True)))
    console.print(t)
    where = f"; outputs in {out_dir}" if out_dir is not None else ""
    console.print(f"{summary['n_envs']} envs x {summary['n_steps']} bars in "
                  f"{summary['seconds']:.3f} s: {summary['bar_columns_per_second']:,.0f} "
                  f"bar-columns/s{_jit_note(summary)}{where}")
    ann = summary.get("annualisation")
    if ann:  # what every annualised column above assumes
        console.print(f"annualised with {ann['periods_per_year']:,.6g} bars/year "
                      f"({ann['source']}: {ann['basis']})")


def _jit_note(summary: dict) -> str:
    """"" or " (not counted: compile 12.3 s, cache loads 0.4 s)" for the throughput line."""
    parts = [f"{what} {summary[key]:.1f} s" for key, what in
             (("compile_s", "compile"), ("cache_load_s", "cache loads"))
             if summary.get(key, 0) >= 0.05]
    return f" (not counted: {', '.join(parts)})" if parts else ""


def _fmt(col: str, v, params) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if col in params:
        return f"{v:g}"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{v:.2%}" if col in _PERCENT else f"{v:.3f}"


def _iso(ns) -> str:
    import pandas as pd

    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def _console():
    from rich.console import Console

    console = Console()
    # piped output (logs, CI) would otherwise be cut to 80 columns and truncate the table
    return console if console.is_terminal or console.is_jupyter else Console(width=200)


class _Spinner:
    """A rich status line while the kernel runs (terminal only), with ``watch``'s compile
    status appended while Numba compiles."""

    def __init__(self, console, enabled: bool, text: str, watch: CompileWatch):
        from contextlib import ExitStack

        self.text, self.watch, self._stack = text, watch, ExitStack()
        self.status = console.status(text) if enabled and console.is_terminal else None

    def __enter__(self):
        if self.status is not None:
            self.status.start()
            self._stack.callback(self.status.stop)
            self._stack.enter_context(self.watch.shown_in(self._show))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    def _show(self, text: str | None) -> None:
        self.status.update(f"{self.text}: {text}" if text else self.text)


class _Bar:
    """A rich progress bar of bars stepped (terminal only); ``update(done, total)``. Its label
    shows ``watch``'s compile status while Numba compiles."""

    def __init__(self, console, enabled: bool, watch: CompileWatch):
        from contextlib import ExitStack

        self.progress, self.watch, self._stack = None, watch, ExitStack()
        if enabled and console.is_terminal:
            from rich.progress import Progress

            self.progress = Progress(console=console, transient=True)
            self.task = self.progress.add_task("agent", total=None)

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
            self._stack.callback(self.progress.stop)
            self._stack.enter_context(self.watch.shown_in(self._show))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    def _show(self, text: str | None) -> None:
        self.progress.update(self.task, description=f"agent: {text}" if text else "agent")

    def update(self, done: int, total: int) -> None:
        if self.progress is not None and (done % 256 == 0 or done == total):
            self.progress.update(self.task, completed=done, total=total)


# ---------------------------------------------------------------------------------------------
# Command line


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """The command line Hydra should parse.

    Flags (``-m``, ``--cfg job``) come first, then ``+env=backtest`` when no mode is given (``env=X`` becomes ``+env=X``);
    ``hydra.job.name=backtest`` names the log file; discrete sweeps on ``strategy.<param>``
    (``a,b,c``, ``range(...)``, ``choice(...)``) become Hydra lists ``[a,b,c]``, one grid in
    one batch. Raises ConfigError for a sweep over anything else (unless ``--multirun``), a
    continuous ``interval()`` sweep, or a parameter the selected strategy does not have.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    multirun = any(a in ("-m", "--multirun") for a in argv)
    flags, out, parsed = [], [], []
    skip = False
    for arg in argv:
        if skip or arg.startswith("-"):
            skip = not skip and arg in VALUE_FLAGS
            flags.append(arg)
            continue
        try:
            o = parser.parse_override(arg)
        except HydraException:
            out.append(arg)  # Hydra reports its own syntax errors
            continue
        key = o.key_or_group
        if key == "env" and not o.is_add() and not o.is_force_add():
            arg = f"+{arg}"
        elif o.is_sweep_override():
            if key.startswith("strategy."):
                if not o.is_discrete_sweep():
                    raise ConfigError(f"{arg}: a strategy parameter takes a list of values "
                                      f"(a,b,c or range(start,stop,step)), not a continuous "
                                      f"interval")
                arg = f"{o.get_key_element()}=[{','.join(o.sweep_string_iterator())}]"
            elif not multirun:
                raise ConfigError(
                    f"{arg}: only strategy parameters (strategy.<name>=a,b,c or range(...)) "
                    f"form a batch of envs in one run; a sweep over {key!r} needs one run per "
                    f"value: add --multirun")
        parsed.append(o)
        out.append(arg)
    _check_strategy_keys(parsed)
    head = [] if any(o.key_or_group == "env" for o in parsed) else ["+env=backtest"]
    if not any(o.key_or_group == "hydra.job.name" for o in parsed):
        head.append("hydra.job.name=backtest")
    return [*flags, *head, *out]  # Hydra's argparse takes the flags before the overrides


def _check_strategy_keys(parsed) -> None:
    """Every ``strategy.<param>`` override names a parameter of the selected strategy."""
    chosen = [o for o in parsed if o.key_or_group == "strategy"]
    if chosen and chosen[-1].is_sweep_override():
        return  # --multirun over strategies: each job's strategy checks its own keys
    if chosen:
        name = chosen[-1].value()
    else:
        defaults = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml").defaults)
        name = next((d["strategy"] for d in defaults if isinstance(d, dict) and "strategy" in d),
                    None)
    if name not in STRATEGY_PARAMS:
        return  # Hydra lists the strategies there are
    known = [p for p, *_ in STRATEGY_PARAMS[name]]
    for o in parsed:
        key = o.key_or_group
        if not key.startswith("strategy.") or key.count(".") != 1:
            continue
        param = key.split(".", 1)[1]
        if param != "name" and param not in known:
            close = difflib.get_close_matches(param, known, n=1)
            hint = f"; did you mean 'strategy.{close[0]}'?" if close else ""
            raise ConfigError(f"{key}: strategy {name!r} has no parameter {param!r} (its "
                              f"parameters: {known or 'none'}){hint}")


COMMAND = HydraCommand("optrader.backtest")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@COMMAND.task
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_backtest(cfg, out_dir=hc.runtime.output_dir, overrides=list(hc.overrides.task))


def cli(argv: Sequence[str] | None = None) -> None:
    """``python -m optrader.backtest [overrides]``: rewrite the arguments (``prepare_argv``),
    then run Hydra under the shared error handler (``optrader.cli_errors``: one line and exit
    2 for a usage, config or data error)."""
    COMMAND.run(main, sys.argv[1:] if argv is None else list(argv), prepare=prepare_argv)
