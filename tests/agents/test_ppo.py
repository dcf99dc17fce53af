"""PPO (Stable-Baselines3) as an optrader agent: its config schema, the missing-extra error,
checkpoints that validate and backtest unchanged, and learning on unseen bars.

The tests that train need torch and stable-baselines3 (the ``rl`` extra); they skip without them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from omegaconf import OmegaConf

import optrader
from optrader.agents.es import evaluate_actor, evaluate_baselines
from optrader.agents.ppo import PPOCheckpoint
from optrader.backtest.cli import run_backtest
from optrader.checkpoints import checkpoint_actor, load_checkpoint_file
from optrader.config import ConfigError, PPOAgentConfig, load_spec, suggest_override
from optrader.report.cli import main as report_main
from optrader.train import EVAL_SEED_BASE, cli, train
from optrader.validate import validate


def with_agent(agent: dict) -> dict:
    """The default training config as a plain dict, with ``agent`` replaced."""
    return {**OmegaConf.to_container(optrader.compose("training"), resolve=True), "agent": agent}


# ---------------------------------------------------------------------------------------------
# Config


def test_ppo_config_composes_with_its_own_schema():
    spec = load_spec(optrader.compose("training", ["agent=ppo", "agent.n_steps=32",
                                                   "agent.batch_size=1024"]))
    assert isinstance(spec.agent, PPOAgentConfig)
    assert (spec.agent.name, spec.agent.n_steps, spec.agent.device) == ("ppo", 32, "cpu")
    assert spec.agent.net_arch == (64, 64)
    assert load_spec(optrader.compose("training")).agent.name == "es"  # ES stays the default


@pytest.mark.parametrize(("override", "message"), [
    ("agent.batch_size=1000",
     r"agent.batch_size: expected a divisor of n_steps x num_envs = 64 x 256 = 16384, got 1000"),
    ("agent.net_arch=[64,0]", r"agent.net_arch: expected integers >= 1, got \[64.0, 0.0\]"),
    ("agent.gamma=1.5", r"agent.gamma: expected a value in \[0.0, 1.0\], got 1.5"),
    ("agent.activation=gelu", r"agent.activation: expected one of \['tanh', 'relu'\], got 'gelu'"),
])
def test_ppo_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(optrader.compose("training", ["agent=ppo", override]))


def test_agent_keys_get_a_did_you_mean():
    assert suggest_override("agent.n_step=8") == \
        "unknown key 'agent.n_step'; did you mean 'agent.n_steps'?"
    assert suggest_override("agent.budget_step=8") == \
        "unknown key 'agent.budget_step'; did you mean 'agent.budget_steps'?"
    assert "did you mean 'agent=ppo'" in suggest_override("agent=ppp")
    with pytest.raises(ConfigError, match=r"agent.clip_rang: unknown key;.*did you mean "
                                          r"'clip_range'"):
        load_spec(with_agent({"name": "ppo", "clip_rang": 0.1}))
    with pytest.raises(ConfigError, match=r"agent.name: expected one of \['es', 'ppo'\], got "
                                          r"'ppo2'; did you mean 'ppo'\?"):
        load_spec(with_agent({"name": "ppo2"}))


# ---------------------------------------------------------------------------------------------
# Without the rl extra


def test_agent_ppo_without_the_rl_extra_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails as if absent
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli(["+env=training", "agent=ppo", f"hydra.run.dir={run_dir}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("optrader.train: agent=ppo needs torch and stable-baselines3")
    assert err.endswith('pip install torch==2.13.0 "optrader[rl]"'), err
    assert not run_dir.exists()  # nothing was built nor written


def test_importing_optrader_never_imports_torch():
    code = ("import sys, optrader, optrader.train, optrader.validate, optrader.checkpoints, "
            "optrader.backtest.cli, optrader.agents.ppo, optrader.report.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'stable_baselines3')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Checkpoints through validate, backtest and report

# a small market with validation and test bars, short episodes, a tiny PPO
SMALL = ["observation.window=4", "env.episode_length=32", "data.n_bars=1200",
         "data.split.train=0.6", "data.split.validation=0.2"]
TINY_PPO = ["agent=ppo", "agent.num_envs=8", "agent.n_steps=16", "agent.batch_size=64",
            "agent.n_epochs=2", "agent.net_arch=[16,16]", "agent.budget_steps=512",
            "agent.eval_episodes=8"]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A tiny PPO training run: (run dir, train()'s result)."""
    pytest.importorskip("stable_baselines3")
    run = tmp_path_factory.mktemp("ppo") / "train"
    result = train(optrader.compose("training", [*SMALL, *TINY_PPO]), progress=False,
                   out_dir=run)
    return run, result


def test_ppo_train_writes_its_run_dir(ppo_run):
    run, result = ppo_run
    assert {"config.yaml", "policy.zip", "metrics.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    # 8 envs x 16 steps = 128 env-steps a rollout: 4 rollouts reach 512
    assert metrics["env_steps"] == 512 and metrics["rollouts"] == len(metrics["history"]) == 4
    assert [h["env_steps"] for h in metrics["history"]] == [128, 256, 384, 512]
    assert metrics["policy"]["kind"] == "ppo_mlp"
    assert metrics["policy"]["net_arch"] == [16, 16]
    assert metrics["policy"]["n_params"] == result["policy"].n_params
    assert OmegaConf.load(run / "config.yaml").agent.name == "ppo"


def test_same_seed_same_ppo_policy(ppo_run):
    _, result = ppo_run
    cfg = optrader.compose("training", [*SMALL, *TINY_PPO])
    again = train(cfg, progress=False)
    other = train(optrader.compose("training", [*SMALL, *TINY_PPO, "seed=1"]), progress=False)
    env = optrader.make_vec(optrader.compose("training", SMALL), num_envs=16)
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(again["policy"].act(obs), result["policy"].act(obs))
    assert again["history"] == [{**h, "seconds": g["seconds"]}
                                for h, g in zip(result["history"], again["history"], strict=True)]
    assert not np.array_equal(other["policy"].act(obs), result["policy"].act(obs))


def test_ppo_checkpoint_round_trip(ppo_run):
    from stable_baselines3 import PPO

    run, result = ppo_run
    env = optrader.make_vec(optrader.compose("training", SMALL), num_envs=16)
    ckpt = load_checkpoint_file(run / "policy.zip", env)
    assert isinstance(ckpt, PPOCheckpoint)
    assert ckpt.observation_names == tuple(env.observation_names)
    obs, _ = env.reset(seed=3)
    got = checkpoint_actor(env, ckpt)(obs)
    want = result["policy"].act(obs)
    assert got.dtype == np.float32 and got.shape == (16, 1)
    assert np.abs(got).max() <= 1.0
    np.testing.assert_array_equal(got, want)
    # the file is SB3's own: PPO.load reads it and acts the same
    np.testing.assert_array_equal(PPO.load(run / "policy.zip").predict(obs, deterministic=True)[0],
                                  want)


@pytest.mark.parametrize("action", [["action=discrete"],
                                    ["action=discrete", "data.n_assets=2"],
                                    ["data.n_assets=2"]], ids=["discrete", "multi", "box2"])
def test_ppo_trains_and_reloads_every_action_space(tmp_path, action):
    pytest.importorskip("stable_baselines3")
    cfg = optrader.compose("training", [*SMALL, *TINY_PPO, *action, "agent.budget_steps=128"])
    result = train(cfg, progress=False, out_dir=tmp_path)
    env = optrader.make_vec(optrader.compose("training", [*SMALL, *action]), num_envs=8)
    ckpt = load_checkpoint_file(tmp_path / "policy.zip", env)
    obs, _ = env.reset(seed=5)
    got = checkpoint_actor(env, ckpt)(obs)
    np.testing.assert_array_equal(got, result["policy"].act(obs))
    assert env.action_space.contains(got), (env.action_space, got)


def test_ppo_run_dir_validates_backtests_and_reports(ppo_run, tmp_path):
    run, _ = ppo_run
    ov = [f"agent.checkpoint={run}", "validation.episodes=4", "validation.episode_length=32",
          "validation.bootstrap=200"]
    report = validate(optrader.compose("validation", ov), out_dir=tmp_path / "val",
                      progress=False, overrides=ov)
    assert report["policy"]["kind"] == "ppo_mlp"
    assert report["checkpoint"] == str(run / "policy.zip")
    assert report["data"]["split"]["use"] == "validation"
    assert set(report["tables"]["episodes"]["policy"]) >= {"trained", "random"}

    ov = [f"agent.checkpoint={run}", "data.split.use=test"]
    out = run_backtest(optrader.compose("backtest", ov), out_dir=tmp_path / "bt", progress=False,
                       show=False, overrides=ov)
    lo, hi = 960, 1199  # the test split of the run's 1200 bars
    assert out["result"].start_bar == lo + 3  # the first decision bar: window 4
    assert out["summary"]["n_steps"] == hi - (lo + 3)
    assert report_main([str(tmp_path / "bt"), "--format", "html"]) == 0
    assert (tmp_path / "bt" / "report.html").stat().st_size > 0


def test_a_ppo_checkpoint_that_does_not_fit_is_refused(ppo_run):
    run, _ = ppo_run
    discrete = optrader.make_vec(optrader.compose("training", [*SMALL, "action=discrete"]))
    with pytest.raises(ValueError, match=r"does not fit this env: action space expected "
                                         r"Discrete\(\d+\) \(env\), got Box\(.*\) \(checkpoint\)"):
        load_checkpoint_file(run / "policy.zip", discrete)
    wider = optrader.make_vec(optrader.compose("training", [*SMALL, "observation.window=8"]))
    with pytest.raises(ValueError, match=r"observation size expected \d+ \(env\), got \d+ "
                                         r"\(checkpoint\)"):
        load_checkpoint_file(run / "policy.zip", wider)


def test_non_finite_ppo_weights_are_named(ppo_run, tmp_path):
    import torch

    run, _ = ppo_run
    bad = tmp_path / "policy.zip"
    with zipfile.ZipFile(run / "policy.zip") as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "policy.pth":
                state = torch.load(io.BytesIO(data), weights_only=True)
                key = next(k for k in state if k.endswith("weight"))
                state[key].view(-1)[0] = float("nan")
                buf = io.BytesIO()
                torch.save(state, buf)
                data = buf.getvalue()
            dst.writestr(name, data)
    with pytest.raises(ValueError, match=rf"agent\.checkpoint: .*policy\.zip: the policy weights "
                                         rf"'{key}' hold 1 non-finite value"):
        load_checkpoint_file(bad, None)


# ---------------------------------------------------------------------------------------------
# Learning


def test_ppo_learns_ar1_signal_on_a_path_it_never_saw():
    """Daily log returns with AR(1) coefficient 0.1 (20% annual vol, default costs) carry a weak
    momentum signal; buy-and-hold and random actions cannot trade it. Train SB3's PPO for ~1M
    env-steps on the train split of a 60,000-bar path (more bars than the default, so the MLP
    learns the signal rather than the path), then evaluate on another path (data.seed=1234)
    with reset seeds outside the training range: trained, random and buy-and-hold on the same
    512 episodes, paired differences above 3 standard errors."""
    pytest.importorskip("stable_baselines3")
    t0 = time.perf_counter()
    market = ["data.ar1=0.1", "data.n_bars=60000"]
    overrides = [*market, "agent=ppo", "agent.num_envs=256", "agent.n_steps=64",
                 "agent.batch_size=4096", "agent.learning_rate=0.001",
                 "agent.budget_steps=1000000", "agent.eval_episodes=16"]
    result = train(optrader.compose("training", overrides), progress=False)
    assert result["env_steps"] >= 1_000_000
    # mean return of the last 100 episodes, None until the first episodes end (rollout 4)
    returns = [h["mean_return"] for h in result["history"] if h["mean_return"] is not None]
    early, late = np.mean(returns[:3]), np.mean(returns[-3:])
    assert late > early + 0.05  # the in-sample return rises

    held_out = optrader.make_vec(optrader.compose("training", [*market, "data.seed=1234"]),
                                 num_envs=256, parallel=False)
    seed = EVAL_SEED_BASE + 99
    trained = evaluate_actor(held_out, result["policy"].act, 512, seed)
    base = evaluate_baselines(held_out, 512, seed)
    for name in ("random", "buy_and_hold"):
        diff = trained - base[name]  # paired: the same 512 episodes
        stderr = diff.std(ddof=1) / np.sqrt(diff.size)
        assert diff.mean() > 3 * stderr, (name, trained.mean(), base[name].mean(), stderr)
    assert time.perf_counter() - t0 < 180
