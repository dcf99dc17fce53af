"""Backtests of a checkpoint (``agent.checkpoint``): a flat policy, an always-long policy against
the buy-and-hold strategy on the same market and costs, the checkpoint's run config (its
observation, market and costs, under the user's keys), and checkpoints that do not fit or are
missing."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

import optrader
from optrader.agents.es import Policy, save_checkpoint
from optrader.backtest.agent_run import run_agent
from optrader.backtest.cli import run_backtest
from optrader.backtest.runner import run_strategy
from optrader.config import ConfigError

BASE = ["data.n_bars=1200", "data.n_assets=2", "execution.commission_bps=5",
        "execution.slippage_bps=2"]


def compose(*overrides, env="backtest"):
    return optrader.compose(env, [*BASE, *overrides])


def make_checkpoint(path, cfg, bias: float):
    """A linear policy for cfg's env with W = 0 and every output's bias = ``bias``, so its
    action is tanh(bias) whatever it observes."""
    env = optrader.make_vec(cfg, num_envs=1)
    policy = Policy.for_env(env, kind="linear")
    params = np.zeros(policy.n_params)
    params[policy.layout["b"][0]] = bias
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, params, policy, env.observation_names)
    return path


def test_a_flat_policy_never_trades(tmp_path):
    cfg = compose("observation.window=4", "data.split.use=all")  # every bar, not only train
    ckpt = make_checkpoint(tmp_path / "ckpt" / "policy.npz", cfg, 0.0)
    out = run_backtest(compose("observation.window=4", "data.split.use=all",
                               f"agent.checkpoint={ckpt.parent}"),
                       out_dir=tmp_path / "run", progress=False, show=False)
    m = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pandas()
    assert len(m) == 1
    assert m.loc[0, "strategy"] == "agent" and m.loc[0, "asset"] == "portfolio"
    assert m.columns[3] == "total_return"  # no parameter columns
    assert m.loc[0, "n_trades"] == 0 and m.loc[0, "total_return"] == 0.0
    assert m.loc[0, "exposure"] == 0.0
    eq = pq.read_table(tmp_path / "run" / "equity.parquet").to_pandas()
    assert (eq["env_0"] == 100_000.0).all()
    assert len(eq) == 1200 - 3  # from the first decision bar (window 4: bar 3) to bar 1199
    assert pq.read_table(tmp_path / "run" / "trades.parquet").num_rows == 0
    assert out["summary"]["checkpoint"] == str(ckpt) and out["summary"]["params"] == []


def test_an_always_long_policy_is_buy_and_hold(tmp_path):
    overrides = ("observation.window=4",)
    # tanh(30) rounds to 1.0 exactly: target weight 1 on both assets, like buy_and_hold
    ckpt = make_checkpoint(tmp_path / "policy.npz", compose(*overrides), 30.0)
    out = run_backtest(compose(*overrides, f"agent.checkpoint={ckpt}"), progress=False,
                       show=False)
    agent = out["result"]
    env = optrader.make_vec(compose(*overrides, "execution.record_fills=true"), num_envs=1)
    bh = run_strategy(env, "buy_and_hold", np.zeros((1, 4)), rebalance="every_bar")
    assert agent.start_bar == bh.start_bar == 3
    np.testing.assert_array_equal(agent.timestamps, bh.timestamps)
    np.testing.assert_array_equal(agent.equity, bh.equity)
    assert agent.equity[0, -1] != agent.equity[0, 0]  # it did hold the market
    np.testing.assert_array_equal(agent.steps, bh.steps)
    np.testing.assert_array_equal(agent.fill_count, bh.fill_count)
    assert agent.fill_count[0] > 2  # rebalancing to weight 1 as prices move, both assets
    for f in ("env", "bar", "asset", "qty", "price", "commission"):
        np.testing.assert_array_equal(agent.fills[f], bh.fills[f])
    np.testing.assert_array_equal(agent.exposed_bars, bh.exposed_bars)
    assert agent.exposed_bars[0] == agent.steps[0]
    np.testing.assert_allclose(agent.traded_notional, bh.traded_notional, rtol=1e-12)
    np.testing.assert_array_equal(agent.assets, [-1])


def test_the_checkpoint_run_config_sets_the_observation(tmp_path):
    run = tmp_path / "train_run"
    trained = compose("observation.window=8", "observation.features=[log_return,range]",
                      "data.split.use=all", env="training")  # the backtest takes its split
    make_checkpoint(run / "policy.npz", trained, 0.5)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(trained, resolve=True))
    # the backtest config says window 4, one feature: the run's config.yaml wins ...
    cfg = compose("observation.window=4", f"agent.checkpoint={run}")
    out = run_backtest(cfg, progress=False, show=False, overrides=[f"agent.checkpoint={run}"])
    assert out["summary"]["n_steps"] == 1199 - 7  # first decision bar 7: window 8
    assert out["metrics"].loc[0, "n_trades"] >= 0
    # ... unless the user set the key on the command line: then it does not fit
    with pytest.raises(ValueError, match=r"agent\.checkpoint: .*does not fit this env: "
                                         r"observation size expected \d+ \(env\), got \d+ "
                                         r"\(checkpoint\).*observation\.window"):
        run_backtest(cfg, progress=False, show=False, overrides=["observation.window=4"])
    # without override strings, a key that differs from the defaults counts as set
    with pytest.raises(ValueError, match=r"does not fit this env: observation size"):
        run_backtest(cfg, progress=False, show=False)


# the training run: its own market (800 bars, a test split) and no costs
TRAINED = ["observation.window=4", "data.n_bars=800", "data.split.train=0.5",
           "data.split.validation=0.25", "execution.commission_bps=0",
           "execution.slippage_bps=0"]


def test_the_checkpoint_market_and_costs_are_the_run_s_under_your_keys(tmp_path, caplog):
    run = tmp_path / "train_run"
    trained = compose(*TRAINED, env="training")
    make_checkpoint(run / "policy.npz", trained, 30.0)  # always long: buy and hold
    (run / "config.yaml").write_text(OmegaConf.to_yaml(trained, resolve=True))
    # the backtest's own config has 1200 bars, costs and window 32: none of it is used
    mine = [f"agent.checkpoint={run}"]
    with caplog.at_level(logging.INFO, logger="optrader.backtest.cli"):
        out = run_backtest(compose(*mine), out_dir=tmp_path / "in", progress=False,
                           show=False, overrides=mine)
    assert "data; observation; action; execution; risk; reward" in caplog.text
    assert "the split the policy was trained on (data.split.use=train" in caplog.text
    env = optrader.make_vec(compose(*TRAINED, "execution.record_fills=true"), num_envs=1)
    bh = run_strategy(env, "buy_and_hold", np.zeros((1, 4)), rebalance="every_bar")
    agent = out["result"]
    assert agent.start_bar == bh.start_bar == 3 and agent.equity.shape == (1, 400 - 3)
    np.testing.assert_array_equal(agent.equity, bh.equity)  # the run's market, no costs
    np.testing.assert_array_equal(agent.fills["commission"], 0.0)
    used = OmegaConf.load(tmp_path / "in" / "config.yaml")
    assert used.data.n_bars == 800 and used.execution.commission_bps == 0
    assert used.observation.window == 4 and used.env.mode == "backtest"

    # your keys on top: the held-out test split (bars 600..799), with costs
    mine = [f"agent.checkpoint={run}", "data.split.use=test", "execution.commission_bps=5"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="optrader.backtest.cli"):
        out = run_backtest(compose(*mine), out_dir=tmp_path / "test", progress=False,
                           show=False, overrides=mine)
    assert "data (yours: data.split.use)" in caplog.text
    assert "execution (yours: execution.commission_bps)" in caplog.text
    assert "trained on" not in caplog.text
    agent = out["result"]
    assert agent.start_bar == 603 and out["summary"]["n_steps"] == 799 - 603
    assert (agent.fills["commission"] > 0).all()
    used = OmegaConf.load(tmp_path / "test" / "config.yaml")
    assert used.data.split.use == "test" and used.data.n_bars == 800
    assert used.execution.commission_bps == 5 and used.execution.slippage_bps == 0


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    ckpt = make_checkpoint(tmp_path / "policy.npz", compose("observation.window=8"), 0.0)
    with pytest.raises(ValueError, match=r"does not fit this env: observation size"):
        run_backtest(compose("observation.window=4", f"agent.checkpoint={ckpt}"),
                     out_dir=tmp_path / "run", progress=False, show=False)
    assert not (tmp_path / "run").exists()
    one_asset = make_checkpoint(tmp_path / "one" / "policy.npz",
                                compose("observation.window=4", "data.n_assets=1"), 0.0)
    with pytest.raises(ValueError, match=r"action dims expected 2 \(env\), got 1"):
        run_backtest(compose("observation.window=4", f"agent.checkpoint={one_asset}"),
                     progress=False, show=False)


def test_missing_checkpoints_and_wrong_modes_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"agent\.checkpoint: .*nope\.npz' \(no such file"):
        run_backtest(compose(f"agent.checkpoint={tmp_path / 'nope.npz'}"), progress=False)
    with pytest.raises(ConfigError, match=r"the directory .* \(no policy\.npz in that"):
        run_backtest(compose(f"agent.checkpoint={tmp_path}"), progress=False)
    (tmp_path / "policy.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"^agent\.checkpoint: .* is not a readable policy\.npz"):
        run_backtest(compose("observation.window=4", f"agent.checkpoint={tmp_path}"),
                     progress=False)
    env = optrader.make_vec(compose("execution.record_fills=true", env="training"))
    with pytest.raises(ValueError, match=r"backtest mode .*got env\.mode='training'"):
        run_agent(env, tmp_path / "policy.npz")


def test_an_env_that_stops_early_stays_as_it_ended(tmp_path):
    cfg = compose("observation.window=4", "env.bankrupt_fraction=0.9",
                  "execution.record_fills=true")
    ckpt = make_checkpoint(tmp_path / "policy.npz", cfg, 30.0)
    # the same policy under two costs: a 20 % commission bankrupts env 1 on its first fill
    env = optrader.make_vec(cfg, num_envs=2,
                            per_env={"execution.commission_bps": np.array([0.0, 2000.0])})
    res = run_agent(env, ckpt)
    assert res.steps[1] == 1 and res.steps[0] > 1
    assert res.equity[1, 1] < 0.9 * 100_000
    assert (res.equity[1, 2:] == res.equity[1, 1]).all()
    first = res.fills[res.fills["env"] == 1]
    assert res.fill_count[1] == len(first) == 2  # one buy per asset, then nothing
    assert (first["bar"] == res.start_bar + 1).all()
    assert res.exposed_bars[1] == 1
