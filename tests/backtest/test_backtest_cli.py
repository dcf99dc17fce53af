"""``python -m optrader.backtest``: argument rewriting, grids as one batch, per-asset envs, the
output files and their formats, a checkpoint's run config under the command line's keys,
ranking, the memory budget and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

import optrader
from optrader.agents.es import Policy, save_checkpoint
from optrader.backtest.cli import prepare_argv, rank_envs, run_backtest
from optrader.backtest.runner import pad_stopped, run_strategy
from optrader.config import ConfigError
from optrader.metrics import TRADE_DTYPE

SMALL = ["data.n_bars=2000", "observation.window=4"]
# the bars of conf/data/synthetic: business days from data.start (freq auto, 252 a year)
SYNTHETIC_TS = pd.bdate_range("2000-01-03", periods=2000, tz="UTC").as_unit("ns").asi8


def compose(*overrides):
    return optrader.compose("backtest", [*SMALL, *overrides])


def strategy_overrides(*argv):
    """The strategy.* overrides as the command line hands them to Hydra."""
    return [a for a in prepare_argv(list(argv)) if a.startswith("strategy")]


# ---- argument rewriting -------------------------------------------------------------------------
def test_sweeps_on_strategy_parameters_become_one_list():
    args = prepare_argv(["strategy=sma_cross", "strategy.fast=5,10,20",
                         "strategy.slow=range(50,151,50)", "strategy.long_only=1"])
    assert args == ["+env=backtest", "hydra.job.name=backtest", "strategy=sma_cross",
                    "strategy.fast=[5,10,20]", "strategy.slow=[50,100,150]",
                    "strategy.long_only=1"]
    assert prepare_argv(["strategy=bollinger", "strategy.k=range(1.0,2.0,0.5)"])[-1] == \
        "strategy.k=[1.0,1.5]"


def test_a_given_mode_is_kept_and_env_without_plus_is_added():
    assert prepare_argv(["+env=backtest"]) == ["hydra.job.name=backtest", "+env=backtest"]
    assert prepare_argv(["env=training", "hydra.job.name=x"]) == ["+env=training",
                                                                 "hydra.job.name=x"]
    # flags go first (Hydra's argparse wants them before the overrides); their values stay
    assert prepare_argv(["strategy.fast=1", "--cfg", "job"]) == [
        "--cfg", "job", "+env=backtest", "hydra.job.name=backtest", "strategy.fast=1"]


def test_a_sweep_over_anything_else_is_refused_unless_multirun():
    with pytest.raises(ConfigError, match=r"data\.seed=1,2: only strategy parameters .* "
                                          r"add --multirun"):
        prepare_argv(["data.seed=1,2"])
    with pytest.raises(ConfigError, match="only strategy parameters"):
        prepare_argv(["strategy=sma_cross,ema_cross"])
    assert prepare_argv(["data.seed=1,2", "-m", "strategy.fast=1,2"]) == \
        ["-m", "+env=backtest", "hydra.job.name=backtest", "data.seed=1,2", "strategy.fast=[1,2]"]
    with pytest.raises(ConfigError, match="not a continuous interval"):
        prepare_argv(["strategy.fast=interval(1,5)"])


def test_an_unknown_strategy_parameter_names_the_close_one():
    with pytest.raises(ConfigError, match=r"strategy\.fastt: strategy 'sma_cross' has no "
                                          r"parameter 'fastt'.*did you mean 'strategy\.fast'"):
        prepare_argv(["strategy.fastt=3"])
    with pytest.raises(ConfigError, match=r"strategy 'rsi' has no parameter 'fast'.*'period'"):
        prepare_argv(["strategy.fast=3", "strategy=rsi"])


# ---- grids -------------------------------------------------------------------------------------
def test_a_grid_is_one_batch_in_cartesian_order(tmp_path):
    cfg = compose(*strategy_overrides("strategy.fast=range(5,20,5)", "strategy.slow=30,60"))
    out = run_backtest(cfg, out_dir=tmp_path, progress=False, show=False)
    m = pq.read_table(tmp_path / "metrics.parquet").to_pandas()
    assert m["env"].tolist() == list(range(6))
    assert m["fast"].tolist() == [5, 5, 10, 10, 15, 15]  # the first parameter varies slowest
    assert m["slow"].tolist() == [30, 60] * 3
    assert (m["long_only"] == 0).all() and (m["strategy"] == "sma_cross").all()
    assert (m["asset"] == "portfolio").all()
    # env 3 (fast 10, slow 60) is the same backtest as that parameter set alone
    env = optrader.make_vec(compose("execution.record_fills=true"), num_envs=1)
    alone = run_strategy(env, "sma_cross", [[10, 60, 0, 0]])
    np.testing.assert_array_equal(out["equity"][3], alone.equity[0])
    assert m.loc[3, "total_return"] == pytest.approx(alone.equity[0, -1] / 1e5 - 1, rel=1e-12)


def test_per_asset_runs_one_env_per_asset_and_point(tmp_path):
    cfg = compose("data.n_assets=3", "backtest.per_asset=true", "backtest.save_equity=false",
                  *strategy_overrides("strategy.fast=5,10", "strategy.slow=20"))
    out = run_backtest(cfg, out_dir=tmp_path, progress=False, show=False)
    m = pq.read_table(tmp_path / "metrics.parquet").to_pandas()
    assert m["asset"].tolist() == ["SYN0", "SYN0", "SYN1", "SYN1", "SYN2", "SYN2"]
    assert m["fast"].tolist() == [5, 10] * 3
    trades = pq.read_table(tmp_path / "trades.parquet").to_pandas()
    assert len(trades) > 0
    np.testing.assert_array_equal(trades["asset"], trades["env"] // 2)  # its own asset only
    assert not (tmp_path / "equity.parquet").exists()
    assert "equity" not in out["paths"]


# ---- the command line, end to end ---------------------------------------------------------------
def test_cli_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "optrader.backtest", "strategy=sma_cross", "strategy.fast=5,10",
         "strategy.slow=20,40", "data.n_bars=1500", "data.split.use=all",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bar-columns/s" in proc.stdout and str(run_dir) in proc.stdout

    m = pq.read_table(run_dir / "metrics.parquet")
    assert m.column_names[:6] == ["env", "strategy", "asset", "fast", "slow", "long_only"]
    assert {"total_return", "sharpe", "max_drawdown", "n_trades", "exposure"} <= \
        set(m.column_names)
    assert str(m.schema.field("env").type) == "int64"
    assert str(m.schema.field("asset").type) == "string"
    m = m.to_pandas()
    assert len(m) == 4 and m["fast"].tolist() == [5, 5, 10, 10]

    eq_table = pq.read_table(run_dir / "equity.parquet")
    assert eq_table.column_names == ["timestamp", "env_0", "env_1", "env_2", "env_3"]
    assert str(eq_table.schema.field("timestamp").type) == "timestamp[ns, tz=UTC]"
    eq = eq_table.to_pandas()
    np.testing.assert_allclose(eq.iloc[-1, 1:].to_numpy(), (1 + m["total_return"]) * 100_000,
                               rtol=1e-12)
    assert (eq.iloc[0, 1:] == 100_000).all()
    # one row per bar, business-day bars from the synthetic start; slow=40: first decision at bar 40
    ts = eq["timestamp"].astype("int64").to_numpy()
    np.testing.assert_array_equal(ts, SYNTHETIC_TS[40:1500])

    trades = pq.read_table(run_dir / "trades.parquet")
    assert trades.column_names == [*TRADE_DTYPE.names, "entry_time", "exit_time"]
    trades = trades.to_pandas()
    assert len(trades) == m["n_trades"].sum() > 0
    for col, bar in (("entry_time", "entry_bar"), ("exit_time", "exit_bar")):
        np.testing.assert_array_equal(trades[col].astype("int64"),
                                      SYNTHETIC_TS[trades[bar].to_numpy()])

    summary = json.loads((run_dir / "backtest.json").read_text())
    assert summary["strategy"] == "sma_cross" and summary["params"] == ["fast", "slow",
                                                                         "long_only"]
    assert summary["n_envs"] == 4 and summary["n_steps"] == len(eq) - 1 == 1459
    assert summary["start"] == pd.Timestamp(SYNTHETIC_TS[40], tz="UTC").isoformat()  # bar 40
    assert summary["periods_per_year"] == 252.0 and summary["checkpoint"] is None
    assert summary["annualisation"]["source"] == "synthetic"
    assert summary["bar_columns_per_second"] == pytest.approx(
        4 * 1459 / summary["seconds"], rel=1e-3)
    cfg = optrader.load_spec(OmegaConf.load(run_dir / "config.yaml"))
    assert cfg.env.mode == "backtest" and cfg.strategy.fast == (5.0, 10.0)


def test_cli_checkpoint_runs_on_its_market_under_your_keys(tmp_path):
    # a training run dir: 800 bars split 0.5 / 0.25 / 0.25, window 4, no commission
    run = tmp_path / "train_run"
    run.mkdir()
    trained = optrader.compose("training", [
        "data.n_bars=800", "data.split.train=0.5", "data.split.validation=0.25",
        "observation.window=4", "execution.commission_bps=0"])
    env = optrader.make_vec(trained, num_envs=1)
    policy = Policy.for_env(env)
    save_checkpoint(run / "policy.npz", np.zeros(policy.n_params), policy,
                    env.observation_names)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(trained, resolve=True))
    out = tmp_path / "bt"
    proc = subprocess.run(
        [sys.executable, "-m", "optrader.backtest", f"agent.checkpoint={run}",
         "data.split.use=test", "execution.slippage_bps=3", f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "backtest.json").read_text())
    assert summary["checkpoint"] == str(run / "policy.npz") and summary["strategy"] == "agent"
    # the test split (bars 600..799), window 4: the first decision at bar 603
    assert summary["start"] == pd.Timestamp(SYNTHETIC_TS[603], tz="UTC").isoformat()
    assert summary["n_steps"] == 799 - 603
    used = OmegaConf.load(out / "config.yaml")
    assert used.data.n_bars == 800 and used.data.split.use == "test"
    assert used.observation.window == 4 and used.execution.commission_bps == 0
    assert used.execution.slippage_bps == 3
    log = (out / "backtest.log").read_text()
    assert "data (yours: data.split.use)" in log and "execution (yours: " in log


def test_cli_refusals_exit_2_with_one_line(tmp_path):
    for args, message in (
            (["data.seed=1,2"], "only strategy parameters"),
            (["backtest.memory_budget_mb=0.001"], "backtest.memory_budget_mb")):
        run_dir = tmp_path / "run"
        proc = subprocess.run([sys.executable, "-m", "optrader.backtest", "data.n_bars=300",
                               *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("optrader.backtest: "), proc.stderr
        assert message in lines[0]
        assert not (run_dir / "metrics.parquet").exists()


def test_other_modes_are_refused(tmp_path):
    cfg = optrader.compose("training", SMALL)
    with pytest.raises(ConfigError, match=r"backtest mode \(\+env=backtest.*got 'training'"):
        run_backtest(cfg, out_dir=tmp_path / "run", progress=False, show=False)
    assert not (tmp_path / "run").exists()


# ---- ranking, stops, budget ----------------------------------------------------------------------
def test_ranking_puts_the_best_first_and_nan_last():
    m = pd.DataFrame({"env": np.arange(5), "sharpe": [0.5, np.nan, 2.0, 1.0, 2.0],
                      "max_drawdown": [0.3, 0.1, np.nan, 0.2, 0.4]})
    assert rank_envs(m, "sharpe", 4)["env"].tolist() == [2, 4, 3, 0]  # ties in env order
    assert rank_envs(m, "sharpe", 10)["env"].tolist() == [2, 4, 3, 0, 1]
    assert rank_envs(m, "max_drawdown", 5)["env"].tolist() == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError, match="backtest.rank_by"):
        rank_envs(m, "calmar", 3)


def test_the_printed_table_is_the_top_n(tmp_path, capsys):
    cfg = compose("backtest.top_n=3", "backtest.rank_by=max_drawdown",
                  *strategy_overrides("strategy.fast=2,5,10", "strategy.slow=20,40"))
    out = run_backtest(cfg, progress=False)
    table, m = out["table"], out["metrics"]
    assert len(table) == 3 and out["paths"] == {}
    assert table["max_drawdown"].tolist() == sorted(m["max_drawdown"])[:3]
    printed = capsys.readouterr().out
    assert "top 3 of 6 envs by max_drawdown (ascending)" in printed
    for env in table["env"]:
        assert any(line.split("│")[1].strip() == str(env)
                   for line in printed.splitlines() if line.count("│") > 3)


def test_a_stopped_env_is_nan_padded(tmp_path):
    cfg = compose("strategy=random", "strategy.p_change=[1.0,0.0]", "strategy.seed=1",
                  "env.bankrupt_fraction=0.99", "env.max_leverage=3")
    out = run_backtest(cfg, out_dir=tmp_path, progress=False, show=False)
    steps = out["result"].steps
    eq = pq.read_table(tmp_path / "equity.parquet").to_pandas()
    n_rows = len(eq)
    assert steps[0] < n_rows - 1 and steps[1] == n_rows - 1
    e0 = eq["env_0"].to_numpy()
    assert np.isfinite(e0[:steps[0] + 1]).all() and np.isnan(e0[steps[0] + 1:]).all()
    assert e0[steps[0]] <= 0.99 * 100_000
    assert (eq["env_1"] == 100_000).all()  # p_change 0: never trades
    m = out["metrics"]
    assert m.loc[0, "total_return"] == pytest.approx(e0[steps[0]] / 1e5 - 1, rel=1e-12)


def test_pad_stopped_keeps_the_stop_bar():
    eq = np.arange(10.0).reshape(2, 5) + 1
    out = pad_stopped(eq, np.array([2, 4]))
    np.testing.assert_array_equal(out[0], [1, 2, 3, np.nan, np.nan])
    np.testing.assert_array_equal(out[1], eq[1])
    assert not np.isnan(eq).any()


def test_over_the_memory_budget_nothing_runs_or_is_written(tmp_path):
    cfg = compose("backtest.memory_budget_mb=0.01",
                  *strategy_overrides("strategy.fast=range(2,12)", "strategy.slow=50"))
    with pytest.raises(ValueError, match=r"10 envs .*backtest\.memory_budget_mb"):
        run_backtest(cfg, out_dir=tmp_path / "run", progress=False, show=False)
    assert not (tmp_path / "run").exists()


def test_a_path_given_to_run_backtest_splits_as_the_file_config_would(tmp_path):
    """run_backtest(cfg, data=PATH) and make_vec(data=PATH) take the same data=csv split."""
    import optrader
    from optrader.backtest.cli import run_backtest

    idx = pd.bdate_range("2020-01-01", periods=400)
    close = 100 + np.cumsum(np.random.default_rng(0).normal(size=400))
    path = tmp_path / "bars.csv"
    pd.DataFrame({"date": idx, "open": close, "high": close + 1, "low": close - 1,
                  "close": close, "volume": 1e6}).to_csv(path, index=False)
    cfg = optrader.compose(env="backtest", overrides=["strategy=buy_and_hold"])
    out = run_backtest(cfg, data=str(path), progress=False, show=False)
    env = optrader.make_vec(cfg, num_envs=1, data=str(path))
    lo, hi = env.split_range
    assert hi - lo < 400  # the csv group's train split, not every bar
    assert len(out["timestamps"]) == hi - lo - env.config.observation.window + 1
    assert out["timestamps"][-1] == env.market.timestamps[hi - 1]
