"""End-to-end PPO (examples/ppo_native.py: env + torch learner) on the default training config:
env-steps/s over a few iterations, the share of wall time in env.step, policy and update, and the
mean and p99 of the batched env step inside the loop. The serial env kernel and one torch thread
(the example's defaults) at 256 and 1,024 envs, and the threaded kernel at 1,024 for contrast.
The 1-minute load average at the start says what else was running. Skipped without torch."""

import os

import pytest

pytest.importorskip("torch")

from tests.test_examples import example_module  # noqa: E402

ITERATIONS = 3
NUM_STEPS = 128  # the example's default rollout length


@pytest.fixture(scope="module")
def ppo():
    with example_module() as module:
        # compile / load the kernels (serial and threaded) and warm torch before timing
        for parallel in (False, True):
            module.main(module.Config(num_envs=64, num_steps=8, total_timesteps=512,
                                      eval_episodes=0, split=[], parallel=parallel))
        yield module


@pytest.mark.parametrize("num_envs,parallel", [(256, False), (1024, False), (1024, True)])
def test_ppo_loop(benchmark, ppo, num_envs, parallel):
    cfg = ppo.Config(num_envs=num_envs, num_steps=NUM_STEPS, eval_episodes=0, split=[],
                     total_timesteps=ITERATIONS * num_envs * NUM_STEPS, parallel=parallel,
                     log_every=ITERATIONS)
    load = os.getloadavg()[0]
    result = benchmark.pedantic(ppo.main, args=(cfg,), rounds=1, iterations=1)
    info = benchmark.extra_info
    info.update(num_envs=num_envs, num_steps=NUM_STEPS, iterations=ITERATIONS,
                parallel=parallel, torch_threads=cfg.torch_threads, loadavg_1min_before=load)
    info["env_steps_per_s"] = round(result["env_steps_per_s"])
    info["env_share_of_wall"] = round(result["env_share"], 4)
    info["policy_share_of_wall"] = round(result["policy_share"], 4)
    info["update_share_of_wall"] = round(result["update_share"], 4)
    info["env_only_steps_per_s"] = round(result["env_only_steps_per_s"])
    info["env_step_mean_us"] = round(result["step_mean_us"], 1)
    info["env_step_p99_us"] = round(result["step_p99_us"], 1)
