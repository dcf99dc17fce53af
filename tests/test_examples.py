"""examples/ppo_native.py: the one-file PPO over the native VectorEnv runs end to end, logs its
throughput, and masks next-step-autoreset reset steps out of GAE and the update."""

import contextlib
import dataclasses
import importlib.util
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import optrader  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ppo_native.py"
TINY = ["env.episode_length=8"]  # episodes end inside a 16-step rollout: reset steps occur


@contextlib.contextmanager
def example_module():
    """examples/ppo_native.py as a module, registered while in use (so inspect finds the
    Config source); the benchmark loads it the same way."""
    spec = importlib.util.spec_from_file_location("ppo_native", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ppo_native"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("ppo_native", None)


@pytest.fixture(scope="module")
def ppo():
    with example_module() as module:
        yield module


def t(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype).T  # rows given per env -> (T, N)


def test_reset_step_mask_hand_made(ppo):
    # 3 envs, 5 steps; env 1 was done at the last step of the previous rollout
    dones = t([[0, 1, 0, 0, 1], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], torch.bool)
    valid = ppo.reset_step_mask(dones, torch.tensor([False, True, False]))
    expected = t([[1, 1, 0, 1, 1], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], torch.bool)
    assert torch.equal(valid, expected), f"expected\n{expected.T}\ngot\n{valid.T}"


def test_compute_gae_hand_computed(ppo):
    """gamma = lambda = 0.5, so every figure below is exact in float32.

    env 0: step 1 truncates, step 2 is its reset step (reward 99 and value 30 = V(final obs)),
    step 4 terminates. env 1: no done, bootstraps from next_value 2. env 2: row 0 is a reset step.
    """
    rewards = t([[1, 2, 99, 3, 4], [1, 1, 1, 1, 1], [5, 1, 1, 1, 1]])
    values = t([[10, 20, 30, 40, 50], [0, 0, 0, 0, 0], [9, 0, 0, 0, 0]])
    terms = t([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], torch.bool)
    dones = t([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], torch.bool)
    valid = ppo.reset_step_mask(dones, torch.tensor([False, False, True]))
    adv = ppo.compute_gae(rewards, values, terms, dones, valid, torch.tensor([7.0, 2.0, 2.0]),
                          gamma=0.5, gae_lambda=0.5)
    # env 0: A4 = 4 - 50 (terminal: no bootstrap from next_value 7); A3 = 3 + .5*50 - 40
    # + .25*A4; A2 = 0 (reset step); A1 = 2 + .5*30 - 20 (truncated: bootstraps from V(final
    # obs) = 30, nothing flows back from A2); A0 = 1 + .5*20 - 10 + .25*A1
    # env 1: A4 = 1 + .5*2 = 2, then A_t = 1 + .25*A_{t+1}; env 2: as env 1 from row 1, A0 = 0
    a1 = [2.0, 1.5, 1.375, 1.34375, 1.3359375][::-1]
    expected = t([[0.25, -3.0, 0.0, -23.5, -46.0], a1, [0.0, *a1[1:]]])
    assert torch.equal(adv, expected), f"expected\n{expected.T}\ngot\n{adv.T}"


def test_mask_matches_the_env_reset_steps(ppo):
    """Fully long on the real env (next-step autoreset, 3-bar episodes): the reward is exactly 0
    on the rows the mask drops, and nonzero on every transition."""
    envs = optrader.make_vec(optrader.compose("training", ["env.episode_length=3"]),
                             num_envs=4, parallel=False)
    envs.reset(seed=0)
    rewards, dones = torch.zeros(10, 4), torch.zeros(10, 4, dtype=torch.bool)
    for k in range(10):
        _, r, term, trunc, _ = envs.step(np.ones((4, 1), dtype=np.float32))
        rewards[k], dones[k] = torch.from_numpy(r), torch.from_numpy(term | trunc)
    envs.close()
    valid = ppo.reset_step_mask(dones, torch.zeros(4, dtype=torch.bool))
    assert (~valid).sum() == 8, f"expected 2 reset steps per env in 10 steps, got\n{valid.T}"
    assert torch.equal(rewards == 0, ~valid), \
        f"expected reward 0 exactly on the reset steps\nvalid\n{valid.T}\nrewards\n{rewards.T}"


def test_every_config_field_has_a_docstring_and_a_flag(ppo):
    names = [f.name for f in dataclasses.fields(ppo.Config)]
    docs = ppo.field_docs(ppo.Config)
    assert sorted(docs) == sorted(names), f"expected a docstring per field {names}, got {docs}"
    cfg = ppo.parse_args(["--num-envs", "64", "--no-anneal-lr", "--overrides", "a=1", "b=2",
                          "--split", "--target-kl", "0.02"])
    assert (cfg.num_envs, cfg.anneal_lr, cfg.overrides, cfg.split, cfg.target_kl) == \
        (64, False, ["a=1", "b=2"], [], 0.02), f"got {cfg}"


def test_main_trains_logs_throughput_and_evaluates(ppo, capsys):
    cfg = ppo.Config(num_envs=64, num_steps=16, total_timesteps=64 * 16 * 3, eval_episodes=64,
                     overrides=TINY)
    result = ppo.main(cfg)
    out = capsys.readouterr().out
    assert result["iterations"] == 3 and result["env_steps"] == 3 * 64 * 16, result
    assert result["env_steps_per_s"] > 0 and 0 < result["env_share"] < 1, result
    assert result["step_mean_us"] > 0 and result["step_p99_us"] >= result["step_mean_us"] * 0.5
    assert out.count("env-steps/s") >= 4 and "env.step" in out, out
    assert set(result["eval"]) == {"trained", "random", "buy_and_hold"}, result["eval"]
    for name, (mean, se) in result["eval"].items():
        assert np.isfinite(mean) and np.isfinite(se) and se >= 0, (name, mean, se)
    assert "validation split" in out and "+-" in out, out


def test_script_runs_from_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--num-envs", "64", "--num-steps", "16",
                                      "--total-timesteps", "1024", "--eval-episodes", "0",
                                      "--overrides", *TINY])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    assert "iter    1/1" in out and "env-steps/s end to end" in out, out
