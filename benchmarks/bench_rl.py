"""The Stable-Baselines3 adapter's step (optrader.rl.sb3.SB3VecEnv) against the native step it
wraps, at 1,024 envs (default config, SAME_STEP autoreset; the threaded kernel, the default at
this size, and the serial one the training CLI runs), with random trading actions pre-drawn
outside the timed region (a fresh array every step). Rows report the mean and p99 per step; the
interleaved rows alternate blocks of both envs so the ratio compares them under the same machine
load, and the last row times the adapter's own work alone (over a stub env that returns stored
step results), which machine load barely moves. Target: the adapter adds <= 25 % to the raw
step."""

import time

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from gymnasium.vector import AutoresetMode, VectorEnv  # noqa: E402

import optrader  # noqa: E402
from optrader.rl.sb3 import SB3VecEnv  # noqa: E402

NUM_ENVS = 1024
BLOCK = 64  # steps per round (and per block in the interleaved row)
ROUNDS = 30
N_ACTIONS = 97  # pre-drawn action arrays, cycled (prime: not in step with episode ends)


@pytest.fixture(scope="module", params=["threaded", "serial"])
def setup(request):
    cfg = optrader.compose("training")
    kw = {"autoreset_mode": "SameStep", "parallel": request.param == "threaded"}
    raw = optrader.make_vec(cfg, num_envs=NUM_ENVS, **kw)
    sb3 = SB3VecEnv(optrader.make_vec(cfg, num_envs=NUM_ENVS, **kw))
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (N_ACTIONS, *raw.action_space.shape)).astype(np.float32)
    raw.reset(seed=0)
    sb3.seed(0)
    sb3.reset()
    for k in range(300):  # compile, fill the observation pools, pass an episode end
        raw.step(actions[k % N_ACTIONS])
        sb3.step(actions[k % N_ACTIONS])
    yield raw, sb3, actions, request.param
    raw.close()
    sb3.close()


def _block(step, actions, start: int, out: list) -> int:
    """BLOCK steps of ``step`` with fresh actions; appends each step's seconds to out."""
    clock = time.perf_counter
    for k in range(start, start + BLOCK):
        a = actions[k % N_ACTIONS]
        t = clock()
        step(a)
        out.append(clock() - t)
    return start + BLOCK


def _stats(times: list) -> dict:
    t = np.asarray(times) * 1e6
    return {"mean_us": round(float(t.mean()), 2), "p99_us": round(float(np.percentile(t, 99)), 2),
            "median_us": round(float(np.median(t)), 2)}


@pytest.mark.parametrize("which", ["raw", "sb3"])
def test_step_1024_envs(benchmark, setup, which):
    raw, sb3, actions, kernel = setup
    step = raw.step if which == "raw" else sb3.step
    times, cursor = [], [0]

    def run():
        cursor[0] = _block(step, actions, cursor[0], times)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    info = benchmark.extra_info
    info.update(env=which, kernel=kernel, num_envs=NUM_ENVS, **_stats(times))
    info["env_steps_per_s"] = round(NUM_ENVS / (info["mean_us"] * 1e-6))


def test_adapter_overhead_interleaved(benchmark, setup):
    """Blocks of raw and adapter steps alternate; the overhead is adapter mean / raw mean - 1."""
    raw, sb3, actions, kernel = setup
    t_raw, t_sb3, cursor = [], [], [0, 0]

    def run():
        cursor[0] = _block(raw.step, actions, cursor[0], t_raw)
        cursor[1] = _block(sb3.step, actions, cursor[1], t_sb3)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    r, s = _stats(t_raw), _stats(t_sb3)
    info = benchmark.extra_info
    info.update(kernel=kernel, num_envs=NUM_ENVS, steps_each=len(t_raw),
                raw_mean_us=r["mean_us"], raw_p99_us=r["p99_us"],
                sb3_mean_us=s["mean_us"], sb3_p99_us=s["p99_us"],
                overhead_mean=round(s["mean_us"] / r["mean_us"] - 1.0, 3),
                overhead_median=round(s["median_us"] / r["median_us"] - 1.0, 3))


class _Replay(VectorEnv):
    """A stub SAME_STEP vector env that returns stored step results: the adapter's own work."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env, results):
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self._results, self._k = results, 0

    def reset(self, *, seed=None, options=None):
        return self._results[0][0], {}

    def step(self, actions):
        self._k += 1
        return self._results[self._k % len(self._results)]


@pytest.mark.parametrize("ends", [0, NUM_ENVS])
def test_adapter_own_cost(benchmark, ends):
    """The adapter over stored results of a real 1,024-env step: steps where no env ends, and
    an episode-end step where every env ends (the default config ends all at once every
    env.episode_length steps). Compare with the raw step rows."""
    cfg = optrader.compose("training")
    env = optrader.make_vec(cfg, num_envs=NUM_ENVS, autoreset_mode="SameStep", parallel=False)
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape, dtype=np.float32)
    k = 0
    while True:
        result = env.step(a)
        k += 1
        if int((result[2] | result[3]).sum()) == ends or k > 2 * env.config.env.episode_length:
            break
    assert int((result[2] | result[3]).sum()) == ends
    sb3 = SB3VecEnv(_Replay(env, [result]))
    sb3.reset()
    times = []

    def run():
        _block(sb3.step, np.broadcast_to(a, (N_ACTIONS, *a.shape)), 0, times)

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(num_envs=NUM_ENVS, envs_ending_per_step=ends, **_stats(times))
    env.close()
