"""Simulation mode through the env (every env generating its own bars inside the fused step) at
4,096 and 65,536 envs, next to the data-mode default step measured in the same run.

Reported per row: microseconds per batched step and env-steps per second (extra_info), and for
65,536 envs the resident memory the env added.
"""

import numpy as np
import psutil
import pytest

import optrader

STEPS = 20
MEDIANS: dict = {}


@pytest.mark.parametrize("name,env_name,num_envs", [
    ("data_default_4096", "training", 4096),
    ("simulation_4096", "simulation", 4096),
    ("simulation_stressed_4096", "simulation", 4096),
    ("simulation_65536", "simulation", 65536),
])
def test_simulation_step(benchmark, name, env_name, num_envs):
    overrides = ["simulation=stressed", "data.regimes.enabled=true",
                 "data.jumps.intensity=5"] if "stressed" in name else []
    rss0 = psutil.Process().memory_info().rss
    env = optrader.make_vec(optrader.compose(env_name, overrides), num_envs=num_envs,
                            copy=False)
    env.reset(seed=0)
    added_mb = (psutil.Process().memory_info().rss - rss0) / 2**20
    actions = np.random.default_rng(0).uniform(-1, 1, env.action_space.shape)
    env.step(actions)

    def run():
        for _ in range(STEPS):
            env.step(actions)

    benchmark.pedantic(run, rounds=5 if num_envs > 10_000 else 10, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / STEPS
    MEDIANS[name] = per_step
    benchmark.extra_info["us_per_batched_step"] = round(per_step * 1e6, 1)
    benchmark.extra_info["env_steps_per_s"] = round(num_envs / per_step)
    benchmark.extra_info["env_added_rss_mb"] = round(added_mb, 1)
    if name != "data_default_4096" and "data_default_4096" in MEDIANS and num_envs == 4096:
        benchmark.extra_info["cost_vs_data_default"] = round(
            per_step / MEDIANS["data_default_4096"], 2)
    env.close()
