"""``python -m optrader.train``: end to end in a subprocess, and the missing-mode message."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
from omegaconf import OmegaConf

import optrader
from optrader.agents.es import load_checkpoint


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "optrader.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_and_writes_outputs(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["+env=training", "agent.budget_steps=20000", "agent.num_envs=16",
                    "agent.eval_episodes=8", "env.episode_length=64",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"config.yaml", "policy.npz", "metrics.json"} <= {p.name for p in run_dir.iterdir()}

    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.env.mode == "training"
    assert cfg.agent.budget_steps == 20000 and cfg.agent.num_envs == 16
    assert "hydra" not in cfg

    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 16 envs x 64 steps = 1024 env-steps a generation: 20 generations reach 20000
    assert metrics["env_steps"] == 20 * 1024
    assert metrics["generations"] == len(metrics["history"]) == 20
    assert [h["env_steps"] for h in metrics["history"]] == [1024 * g for g in range(1, 21)]
    assert metrics["env_steps_per_second"] > 0 and metrics["wall_seconds"] > 0
    assert math.isfinite(metrics["final_mean_return"])
    assert metrics["final_mean_return"] == metrics["history"][-1]["mean_return"]
    assert metrics["eval"]["episodes"] == 8
    assert metrics["eval"]["fresh_path"]["data_seed"] == cfg.data.seed + 1
    blocks = [metrics["eval"][b] for b in ("in_sample", "validation", "fresh_path")]
    # the printed summary: one line per block, led by what it was evaluated on
    lines = proc.stdout.splitlines()
    lines = lines[next(i for i, x in enumerate(lines) if x.startswith("optrader.train: ")):]
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "in-sample", "the validation split, bars 14000..16999, never sampled in training",
        f"a fresh synthetic path (data.seed={cfg.data.seed + 1}, all 20000 bars) never seen "
        f"in training"], proc.stdout
    for res in [ev[name] for ev in blocks for name in ("trained", "random", "buy_and_hold")]:
        assert len(res["returns"]) == 8 and all(math.isfinite(x) for x in res["returns"])
        assert abs(res["mean"] - np.mean(res["returns"])) < 1e-5  # returns are rounded

    env = optrader.make_vec(cfg, num_envs=2)  # the saved config rebuilds the same env
    ckpt = load_checkpoint(run_dir / "policy.npz", env)
    assert ckpt.policy.kind == metrics["policy"]["kind"] == cfg.agent.policy
    assert ckpt.params.shape == (metrics["policy"]["n_params"],)
    assert np.isfinite(ckpt.params).all() and ckpt.params.any()


def test_cli_without_mode_says_how_to_choose_one(tmp_path):
    proc = run_cli([f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("optrader.train: choose a mode with +env=training (known: ")
    assert "training" in lines[0].split("known:")[1]
    assert not (tmp_path / "run" / "metrics.json").exists()
