"""Batched step throughput (default config: window 32, commission + slippage, full info) for
several batch sizes, the single env, a plain-Python env with the same rules for a ratio, memory
at 65,536 envs, and make_vec + first step in a fresh process with a warm Numba cache."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import psutil
import pytest

import optrader
from tests.reference import ReferenceEnv

STEPS_PER_ROUND = 50
PYTHON_STEPS_PER_S: list = []  # filled by the plain-Python benchmark, which runs first


@pytest.fixture(scope="module")
def cfg():
    return optrader.compose("training")


def test_plain_python_reference_step(benchmark, cfg):
    """The same rules in plain Python (tests/reference.py), one env, for the speed-up ratio."""
    env = optrader.make_vec(cfg, num_envs=1)
    bars = [env.market.bars[k].tolist() for k in range(5)]
    feats = env._features.astype(np.float64).tolist()
    c = env.config
    ref = ReferenceEnv(bars, feats, window=c.observation.window,
                       episode_length=c.env.episode_length,
                       commission_bps=c.execution.commission_bps,
                       slippage_bps=c.execution.slippage_bps,
                       half_spread_bps=c.execution.half_spread_bps)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (STEPS_PER_ROUND, 1)).tolist()

    def run():
        ref.reset(1000)
        for a in actions:
            ref.step(a)

    benchmark.pedantic(run, rounds=30, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / STEPS_PER_ROUND  # robust to VM hiccups
    benchmark.extra_info["us_per_step"] = round(per_step * 1e6, 2)
    benchmark.extra_info["env_steps_per_s"] = round(1 / per_step)
    PYTHON_STEPS_PER_S.append(1 / per_step)


@pytest.mark.parametrize("num_envs,copy", [(1, True), (64, True), (1024, True), (4096, True),
                                            (65536, True), (4096, False)])
def test_batched_step(benchmark, cfg, num_envs, copy):
    """Default config; copy=False returns the reused buffers (the fastest configuration)."""
    rss0 = psutil.Process().memory_info().rss
    env = optrader.make_vec(cfg, num_envs=num_envs, copy=copy)
    env.reset(seed=0)
    actions = env.action_space.sample().astype(np.float32)
    env.step(actions)  # compile / warm

    def run():
        for _ in range(STEPS_PER_ROUND):
            env.step(actions)

    benchmark.pedantic(run, rounds=10 if num_envs >= 4096 else 30, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / STEPS_PER_ROUND  # robust to VM hiccups
    info = benchmark.extra_info
    info["num_envs"] = num_envs
    info["copy"] = copy
    info["us_per_batched_step"] = round(per_step * 1e6, 2)
    info["env_steps_per_s"] = round(num_envs / per_step)
    if PYTHON_STEPS_PER_S:
        info["speedup_vs_plain_python"] = round(num_envs / per_step / PYTHON_STEPS_PER_S[0], 1)
    info["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    info["env_rss_delta_mb"] = round((psutil.Process().memory_info().rss - rss0) / 2**20, 1)
    env.close()


def test_single_env_step(benchmark):
    env = gym.make("optrader/Trading-v0").unwrapped
    env.reset(seed=0)
    action = env.action_space.sample()
    env.step(action)

    def run():
        for _ in range(STEPS_PER_ROUND):
            env.step(action)

    benchmark.pedantic(run, rounds=30, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / STEPS_PER_ROUND  # robust to VM hiccups
    benchmark.extra_info["us_per_step"] = round(per_step * 1e6, 2)
    benchmark.extra_info["env_steps_per_s"] = round(1 / per_step)


STARTUP = """
import time
t = time.perf_counter()
import numpy as np, gymnasium as gym, optrader
envs = gym.make_vec("optrader/Trading-v0", num_envs=1024, vectorization_mode="vector_entry_point")
envs.reset(seed=0)
envs.step(np.zeros(envs.action_space.shape, dtype=np.float32))
print(time.perf_counter() - t)
"""


def test_make_vec_and_first_step_warm_cache(benchmark):
    """Fresh interpreter, warm Numba cache: import + make_vec(1024) + reset + first step."""
    subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True)  # warm
    inner = []

    def run():
        out = subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True,
                             text=True)
        inner.append(float(out.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["seconds_import_make_vec_first_step"] = round(min(inner), 3)
    benchmark.extra_info["note"] = "mean time includes interpreter start-up"
