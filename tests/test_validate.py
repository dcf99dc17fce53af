"""Validation mode: bootstrap intervals and gates against hand-computed cases, episode starts,
a flat and a buy-and-hold policy against the market bars, determinism, the checkpoint's
config.yaml, bad inputs, and the command line end to end (exit codes 0 / 1 / 2)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import optrader
from optrader.agents.es import Policy, save_checkpoint
from optrader.config import ConfigError
from optrader.validate import episode_starts, rewrite_argv, validate
from optrader.validation_stats import BootstrapCI, bootstrap_ci, evaluate_gates, render_report

# 600 bars: train 0..299, validation 300..599; window 4 -> first start 303; episodes of 32 bars
# -> last start 599 - 32 = 567. No costs, so buy-and-hold is exact.
SMALL = ["data.n_bars=600", "data.split.train=0.5", "data.split.validation=0.5",
         "observation.window=4", "env.episode_length=32", "validation.bootstrap=200",
         "execution.commission_bps=0", "execution.slippage_bps=0",
         "execution.half_spread_bps=0"]
K = 5


def compose(*overrides):
    return optrader.compose("validation", [*SMALL, *overrides])


def run(ckpt, *overrides, out_dir=None):
    ov = [*SMALL, f"agent.checkpoint={ckpt}", f"validation.episodes={K}", *overrides]
    return validate(optrader.compose("validation", ov), out_dir=out_dir, progress=False,
                    overrides=ov)


@pytest.fixture(scope="module")
def market():
    return optrader.make_vec(compose(), num_envs=1).market


@pytest.fixture(scope="module")
def flat_ckpt(tmp_path_factory):
    """A linear policy with zero parameters: tanh(0) = 0, it never holds anything."""
    d = tmp_path_factory.mktemp("ckpt")
    env = optrader.make_vec(compose(), num_envs=1)
    policy = Policy.for_env(env)
    save_checkpoint(d / "policy.npz", np.zeros(policy.n_params), policy, env.observation_names)
    return d


@pytest.fixture(scope="module")
def result(flat_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return run(flat_ckpt, out_dir=out), out


# ---------------------------------------------------------------------------------------------
# Statistics


def test_bootstrap_of_two_values_matches_the_hand_computed_distribution():
    # resampling [0, 1] twice: mean 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4
    ci = bootstrap_ci([0.0, 1.0], 20_000, 0.95, seed=1)
    assert (ci.mean, ci.low, ci.high, ci.n, ci.n_nan) == (0.5, 0.0, 1.0, 2, 0)
    # the 30% and 70% quantiles both fall inside the mass at 0.5
    ci = bootstrap_ci([0.0, 1.0], 20_000, 0.4, seed=1)
    assert (ci.low, ci.high) == (0.5, 0.5)


def test_bootstrap_quantiles_match_exact_enumeration():
    x = np.array([0.0, 1.0, 3.0, 7.0])
    means = np.array([np.mean(s) for s in itertools.product(x, repeat=4)])  # 256 equally likely
    values, counts = np.unique(means, return_counts=True)
    cdf = np.cumsum(counts) / counts.sum()
    levels = (0.1, 0.9)  # confidence 0.8
    assert min(abs(cdf - q).min() for q in levels) > 0.01  # not at a jump: a unique answer
    exact = [values[np.searchsorted(cdf, q)] for q in levels]
    ci = bootstrap_ci(x, 50_000, 0.8, seed=3)
    assert (ci.low, ci.high) == tuple(exact)
    assert ci.mean == 2.75


def test_bootstrap_properties():
    rng = np.random.default_rng(0)
    few, many = rng.normal(1.0, 2.0, 10), rng.normal(1.0, 2.0, 1000)
    a, b = bootstrap_ci(few, 2000, 0.95, seed=5), bootstrap_ci(many, 2000, 0.95, seed=5)
    for ci in (a, b):
        assert ci.low < ci.mean < ci.high
    # the width shrinks like 1/sqrt(n): 10x for 100x the episodes
    assert (b.high - b.low) < (a.high - a.low) / 4
    assert bootstrap_ci(few, 2000, 0.95, seed=5) == a
    assert bootstrap_ci(few, 2000, 0.95, seed=6) != a
    assert bootstrap_ci(few, 2000, 0.99, seed=5).high > a.high  # a higher level is wider
    assert bootstrap_ci([2.5] * 7, 500, 0.95, seed=0) == BootstrapCI(2.5, 2.5, 2.5, 7, 0)
    assert bootstrap_ci([4.0], 500, 0.95, seed=0) == BootstrapCI(4.0, 4.0, 4.0, 1, 0)


def test_bootstrap_leaves_out_and_counts_nan():
    ci = bootstrap_ci([1.0, np.nan, 3.0, np.nan], 1000, 0.95, seed=0)
    assert (ci.mean, ci.n, ci.n_nan) == (2.0, 2, 2)
    assert 1.0 <= ci.low <= ci.high <= 3.0
    none = bootstrap_ci([np.nan, np.nan], 1000, 0.95, seed=0)
    assert np.isnan([none.mean, none.low, none.high]).all() and (none.n, none.n_nan) == (0, 2)
    with pytest.raises(ValueError, match="confidence: expected a level in"):
        bootstrap_ci([1.0, 2.0], 100, 1.0, seed=0)
    with pytest.raises(ValueError, match="inf"):
        bootstrap_ci([1.0, np.inf], 100, 0.9, seed=0)


def test_gates_compare_the_mean_or_the_bound_on_the_failing_side():
    cis = {"sharpe": BootstrapCI(0.82, 0.1, 1.6, 10, 0),
           "max_drawdown": BootstrapCI(0.05, 0.02, 0.12, 10, 0),
           "win_rate": BootstrapCI(np.nan, np.nan, np.nan, 0, 10)}
    g = evaluate_gates({"sharpe": "> 1.5", "max_drawdown": "< 0.10"}, cis)
    assert [x.passed for x in g] == [False, True]
    assert g[0].reason == "sharpe mean 0.82 is not > 1.5"
    assert g[1].reason == "max_drawdown mean 0.05 < 0.1"
    g = evaluate_gates({"sharpe": "> 0.5", "max_drawdown": "< 0.10"}, cis, "conservative")
    assert [(x.stat, x.value, x.passed) for x in g] == [("ci_low", 0.1, False),
                                                        ("ci_high", 0.12, False)]
    assert g[0].reason == "sharpe CI low 0.1 (mean 0.82) is not > 0.5"
    assert [x.passed for x in evaluate_gates({"sharpe": ">= 0.82", "max_drawdown": "<=0.05"},
                                             cis)] == [True, True]
    (nan,) = evaluate_gates({"win_rate": "> 0"}, cis)
    assert not nan.passed and nan.reason == "win_rate mean is NaN (undefined in all 10 " \
                                            "episodes), not > 0"
    assert evaluate_gates({}, cis) == []
    with pytest.raises(ValueError, match="gate_stat: expected one of"):
        evaluate_gates({}, cis, "median")


# ---------------------------------------------------------------------------------------------
# Episodes and policies


def test_episode_starts_are_even_and_inclusive():
    assert episode_starts(303, 567, 5).tolist() == [303, 369, 435, 501, 567]
    assert episode_starts(10, 13, 4).tolist() == [10, 11, 12, 13]
    assert episode_starts(10, 20, 1).tolist() == [10]
    with pytest.raises(ConfigError, match=r"at most 4 episodes .* got 5"):
        episode_starts(10, 13, 5)


def test_starts_lie_in_the_validation_split(result, market):
    report, _ = result
    eps = report["tables"]["episodes"]
    assert report["data"]["split_range"] == [300, 600]
    assert report["starts"] == [303, 369, 435, 501, 567]
    for policy, part in eps.groupby("policy"):
        assert part["start_bar"].tolist() == report["starts"], policy
        assert (part["end_bar"] == part["start_bar"] + 32).all() and (part["steps"] == 32).all()
        assert part["end_bar"].max() <= 599
        ts = pd.to_datetime(market.timestamps, utc=True)
        assert (part["start_time"].to_numpy() == ts[part["start_bar"]].to_numpy()).all()
        assert (part["end_time"].to_numpy() == ts[part["end_bar"]].to_numpy()).all()
    assert report["max_overlap"] == 0.0  # 66 bars apart, 32 long


def test_flat_policy_earns_nothing_and_never_trades(result):
    report, _ = result
    eps = report["tables"]["episodes"]
    flat = eps[eps["policy"] == "trained"]
    assert len(flat) == K
    assert (flat["total_return"] == 0).all() and (flat["n_trades"] == 0).all()
    assert (flat["max_drawdown"] == 0).all() and (flat["exposure"] == 0).all()
    assert flat["sharpe"].isna().all()  # zero volatility: undefined
    s = report["summary"]["trained"]
    assert s["total_return"] == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": K, "n_nan": 0}
    assert s["sharpe"]["mean"] is None and s["sharpe"]["n_nan"] == K


def test_buy_and_hold_return_matches_the_bars(result, market):
    report, _ = result
    eps = report["tables"]["episodes"]
    bh = eps[eps["policy"] == "buy_and_hold"]
    op, close = market.field("open")[:, 0], market.field("close")[:, 0]
    # decide at close s, buy all-in at open s+1, no costs: equity ends at cash x close/open
    expected = close[bh["end_bar"]] / op[bh["start_bar"] + 1] - 1.0
    np.testing.assert_allclose(bh["total_return"], expected, rtol=0, atol=1e-12)
    assert len(set(np.sign(expected))) == 2  # some episodes lose, some gain: a real check
    assert (bh["n_trades"] == 1).all()  # the position held to the end is one round trip
    np.testing.assert_array_equal(bh["win_rate"], (expected > 0).astype(float))
    assert (bh["exposure"] == 1).all()


def test_summary_is_the_episode_mean_with_an_interval_around_it(result):
    report, _ = result
    eps, summary = report["tables"]["episodes"], report["tables"]["summary"]
    assert list(summary["policy"].unique()) == ["trained", "buy_and_hold", "random"]
    for _, row in summary.iterrows():
        values = eps.loc[eps["policy"] == row["policy"], row["metric"]].astype(float)
        assert row["n"] + row["n_nan"] == K and row["n_nan"] == values.isna().sum()
        if row["n"]:
            assert row["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_outputs_on_disk(result):
    report, out = result
    assert {"episodes.parquet", "summary.parquet", "validation.json", "config.yaml"} <= \
        {p.name for p in out.iterdir()}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "episodes.parquet"),
                                  report["tables"]["episodes"])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"),
                                  report["tables"]["summary"])

    def no_nan(x):
        raise AssertionError(f"{x} in validation.json")

    saved = json.loads((out / "validation.json").read_text(), parse_constant=no_nan)
    assert saved == json.loads(json.dumps({k: v for k, v in report.items() if k != "tables"}))
    assert saved["passed"] is False  # the default gate sharpe > 1.5 fails on a flat policy
    cfg = OmegaConf.load(out / "config.yaml")
    assert cfg.data.split.use == "validation" and cfg.observation.window == 4


def test_same_seed_same_outputs_and_the_seed_moves_only_the_random_policy(result, flat_ckpt):
    report, _ = result
    again = run(flat_ckpt)
    for name in ("episodes", "summary"):
        pd.testing.assert_frame_equal(again["tables"][name], report["tables"][name])
    other = run(flat_ckpt, "seed=1")["tables"]["episodes"]
    eps = report["tables"]["episodes"]
    fixed = eps["policy"] != "random"
    pd.testing.assert_frame_equal(other[fixed], eps[fixed])
    assert not np.allclose(other.loc[~fixed, "total_return"], eps.loc[~fixed, "total_return"])


def test_gates_on_a_flat_policy(flat_ckpt):
    report = run(flat_ckpt, "~validation.gates",
                 '+validation.gates={total_return: ">= 0", sharpe: "> 1.5"}',
                 "validation.baselines=[]")
    assert list(report["summary"]) == ["trained"]
    ok, sharpe = report["gates"]
    assert ok["passed"] and ok["reason"] == "total_return mean 0 >= 0"
    assert not sharpe["passed"] and sharpe["value"] is None and "NaN" in sharpe["reason"]
    assert report["passed"] is False
    report = run(flat_ckpt, "~validation.gates", '+validation.gates={total_return: ">= 0"}',
                 "validation.gate_stat=conservative", "validation.baselines=[]")
    assert report["passed"] is True and report["gates"][0]["stat"] == "ci_low"


def test_render_report_table_and_gate_lines(result):
    from io import StringIO

    from rich.console import Console

    report, _ = result
    buf = StringIO()
    render_report(report, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "0.0% [0.0%, 0.0%]" in text  # trained total_return
    assert "1.0 [1.0, 1.0]" in text  # buy_and_hold n_trades
    assert "✗ sharpe mean is NaN" in text and "✓ max_drawdown mean 0 < 0.1" in text
    assert text.rstrip().endswith("FAIL (1 of 2 gates)")


# ---------------------------------------------------------------------------------------------
# The checkpoint's config.yaml (optrader.checkpoints: tests/test_checkpoints.py)


def test_argv_rewrite():
    assert rewrite_argv(["-m", "agent.checkpoint=r", "episodes=8"]) == [
        "-m", "agent.checkpoint=r", "validation.episodes=8", "+env=validation",
        "data.split.use=validation"]
    assert rewrite_argv(["+env=training", "data.split.use=test", "validation.episodes=3"]) == [
        "+env=training", "data.split.use=test", "validation.episodes=3"]


def test_run_dir_config_makes_the_checkpoint_fit(flat_ckpt, tmp_path):
    # a run dir as optrader.train writes it: its config has window 4, the defaults have 32
    run_dir = tmp_path / "train_run"
    run_dir.mkdir()
    (run_dir / "policy.npz").write_bytes((flat_ckpt / "policy.npz").read_bytes())
    train_cfg = optrader.compose("training", SMALL)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(train_cfg, resolve=True))
    ov = [f"agent.checkpoint={run_dir}", "validation.episodes=3", "validation.bootstrap=100",
          "validation.episode_length=32", "execution.commission_bps=3"]
    report = validate(optrader.compose("validation", ov), out_dir=tmp_path / "out",
                      progress=False, overrides=ov)
    assert report["taken_from_checkpoint_config"]["groups"]["execution"] == [
        "execution.commission_bps"]
    assert report["start_range"] == [303, 567] and report["starts"] == [303, 435, 567]
    used = OmegaConf.load(tmp_path / "out" / "config.yaml")
    assert used.execution.commission_bps == 3 and used.execution.slippage_bps == 0
    with pytest.raises(ValueError, match=r"observation size expected 13 \(env\), got 9"):
        validate(optrader.compose("validation", [*ov, "observation.window=8"]),
                 progress=False, overrides=[*ov, "observation.window=8"])


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(ConfigError, match=r"agent.checkpoint: .*optrader.train"):
        validate(compose(), progress=False, overrides=SMALL)
    with pytest.raises(ConfigError, match="no such file or directory"):
        validate(compose(f"agent.checkpoint={tmp_path / 'nope'}"), progress=False)
    with pytest.raises(ConfigError, match="no policy.npz in that directory"):
        validate(compose(f"agent.checkpoint={tmp_path}"), progress=False)
    (tmp_path / "policy.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable policy.npz"):
        run(tmp_path)


def test_checkpoint_that_does_not_fit(flat_ckpt):
    with pytest.raises(ValueError, match="does not fit this env: observation size expected"):
        run(flat_ckpt, "observation.window=8")


def test_empty_or_short_validation_split_says_how_to_make_one(flat_ckpt):
    ov = [f"agent.checkpoint={flat_ckpt}", "observation.window=4", "data.n_bars=600",
          "data.split.train=1.0", "data.split.validation=0.0"]  # no validation bars
    with pytest.raises(ConfigError, match=r"split is empty.*data.split.validation=0.2"):
        validate(optrader.compose("validation", ov), progress=False, overrides=ov)
    with pytest.raises(ConfigError, match=r"too few.*data.split.train=0.8"):
        run(flat_ckpt, "validation.episode_length=400")


def test_unknown_gate_metric_and_too_many_episodes(flat_ckpt):
    with pytest.raises(ConfigError, match="validation.gates: expected one of"):
        run(flat_ckpt, '+validation.gates.profit=">1"')
    with pytest.raises(ConfigError, match="validation.episodes: expected at most 265"):
        run(flat_ckpt, "validation.episodes=300")


# ---------------------------------------------------------------------------------------------
# Command line


def cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "optrader.validate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end_exit_codes(flat_ckpt, tmp_path):
    base = [f"agent.checkpoint={flat_ckpt}", "episodes=4", *SMALL]
    ok = cli([*base, "~validation.gates", '+validation.gates={total_return: ">= 0"}',
              f"hydra.run.dir={tmp_path / 'ok'}"], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "✓ total_return mean 0 >= 0" in ok.stdout and "PASS" in ok.stdout
    out = tmp_path / "ok"
    assert {"episodes.parquet", "summary.parquet", "validation.json", "config.yaml"} <= \
        {p.name for p in out.iterdir()}
    saved = json.loads((out / "validation.json").read_text())
    assert saved["passed"] is True and saved["episodes"] == 4
    assert saved["data"]["split"]["use"] == "validation" and saved["mode"] == "validation"
    assert len(pd.read_parquet(out / "episodes.parquet")) == 3 * 4

    fail = cli([*base, f"hydra.run.dir={tmp_path / 'fail'}"], tmp_path)
    assert fail.returncode == 1, fail.stderr[-2000:]
    assert "✗ sharpe mean is NaN" in fail.stdout and "FAIL (1 of 2 gates)" in fail.stdout


def test_cli_usage_errors_exit_2_with_one_line(tmp_path):
    proc = cli(["episodes=4", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optrader.validate: agent.checkpoint: ")
    proc = cli(["validation.nope=1", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert proc.returncode == 2 and "validation.nope" in proc.stderr
