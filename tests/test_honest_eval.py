"""Honest evaluation by default: the synthetic default keeps validation and test bars, the quick
start's run directory validates and backtests on them with no other flag, and ``metrics.json``
says what each figure was evaluated on (in-sample bars, the validation split, fresh paths)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import optrader
from optrader.train import EVAL_BLOCKS, train

TINY = ["agent.num_envs=16", "agent.budget_steps=8192", "agent.eval_episodes=8"]


def run_cli(module, args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_synthetic_default_splits_are_disjoint_and_each_holds_an_episode():
    ranges = {}
    for use in ("train", "validation", "test"):
        env = optrader.make_vec(optrader.compose("training", [f"data.split.use={use}"]),
                                num_envs=1)
        n_bars, window = env.config.data.n_bars, env.config.observation.window
        ranges[use] = env.split_range
        lo, hi = env.start_range  # a start leaves the window before it and an episode after it
        assert hi >= lo, f"{use}: no room for window + episode, start range {(lo, hi)}"
        assert hi - lo + 1 >= 32, f"{use}: {hi - lo + 1} distinct starts, expected >= 32 " \
                                  f"(validation.episodes)"
        assert env.split_range[1] - env.split_range[0] >= window + env.config.env.episode_length
        env.close()
    assert ranges == {"train": (0, 14000), "validation": (14000, 17000),
                      "test": (17000, 20000)}, ranges
    bounds = [b for use in ("train", "validation", "test") for b in ranges[use]]
    assert bounds == sorted(bounds) and bounds[0] == 0 and bounds[-1] == n_bars  # disjoint, all


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """The quick start (+env=training on the embedded default) with a tiny budget."""
    run_dir = tmp_path_factory.mktemp("quick_start") / "run"
    metrics = train(optrader.compose("training", TINY), progress=False, out_dir=run_dir)
    return run_dir, metrics


def test_metrics_say_what_each_figure_was_evaluated_on(quick_start):
    run_dir, _ = quick_start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ev = metrics["eval"]
    assert set(ev) == {"episodes", "seed", *EVAL_BLOCKS}, sorted(ev)
    assert ev["episodes"] == 8
    assert ev["in_sample"]["evaluated_on"].startswith("in-sample: the train split, bars 0..13999")
    assert ev["in_sample"]["split_range"] == [0, 14000]
    assert ev["validation"]["split"] == "validation"
    assert ev["validation"]["split_range"] == [14000, 17000]
    assert "never sampled in training" in ev["validation"]["evaluated_on"]
    assert ev["fresh_path"]["data_seed"] == 8 and ev["fresh_path"]["split"] == "all"
    assert "fresh synthetic path" in ev["fresh_path"]["evaluated_on"]
    for block in EVAL_BLOCKS:
        for name in ("trained", "random", "buy_and_hold"):
            assert len(ev[block][name]["returns"]) == 8, (block, name)
    # nothing calls same-path episodes held-out or out-of-sample
    text = json.dumps(metrics).lower()
    assert "held-out" not in text and "held_out" not in text and "out-of-sample" not in text


def test_quick_start_run_validates_and_backtests_with_no_other_flag(quick_start, tmp_path):
    run_dir, _ = quick_start
    proc = run_cli("optrader.validate", [f"agent.checkpoint={run_dir}"], cwd=tmp_path)
    # 0: the gates passed, 1: a gate failed; 2 would be a usage/config error (an empty split)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    (report,) = tmp_path.glob("outputs/*/*/validation.json")
    report = json.loads(report.read_text())
    assert report["data"]["split"]["use"] == "validation", report["data"]
    assert report["data"]["split_range"] == [14000, 17000], report["data"]

    out = tmp_path / "bt"
    proc = run_cli("optrader.backtest", [f"agent.checkpoint={run_dir}", "data.split.use=test",
                                         f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "backtest.json").read_text())
    # the test split, bars 17000..19999: from the first decision bar (window 32) to the last
    assert summary["n_steps"] == 19999 - (17000 + 31), summary


def test_simulation_mode_evaluates_on_fresh_paths_only():
    metrics = train(optrader.compose("simulation", TINY), progress=False)
    ev = metrics["eval"]
    assert ev["in_sample"] is None and ev["validation"] is None
    assert ev["fresh_path"]["evaluated_on"].startswith("fresh synthetic paths (simulation mode")
    assert len(ev["fresh_path"]["trained"]["returns"]) == 8
