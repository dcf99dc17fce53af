"""The batched step beside other work: 4,096 envs, default config, random trading actions (a
fresh pre-drawn action per step, so every env trades), per-step mean / p50 / p90 / p99, measured
quiet and with one busy process pinned to a core of its own (what a learner does to the env).

Each row runs in a fresh interpreter (``python benchmarks/bench_threading.py MODE``), because the
OpenMP wait policy and Numba's threading layer are read once, when the threading runtime starts.
Modes (``MODES``: the environment the process starts with): ``threaded`` (the package's default:
Numba's OpenMP layer with the runtime's own wait policy), ``threaded_spin`` (workers spin at the
barrier, ``OMP_WAIT_POLICY=ACTIVE``), ``threaded_passive`` (workers sleep), ``threaded_workqueue``
(Numba's own thread pool) and ``serial`` (``parallel=False``). Issue 12 asks for a busy mean
<= 1.3x the quiet mean and a p99 <= 3x the mean; the rows say where each mechanism stands.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

NUM_ENVS, STEPS, WARMUP = 4096, 600, 50
# mode -> the environment its process starts with (None: the variable is unset)
MODES = {"threaded": {}, "threaded_spin": {"OMP_WAIT_POLICY": "ACTIVE"},
         "threaded_passive": {"OMP_WAIT_POLICY": "PASSIVE"},
         "threaded_workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
         "serial": {}}


def measure(mode: str) -> dict:
    """Step times (s) of the default env at NUM_ENVS in this process."""
    import optrader

    env = optrader.make_vec(optrader.compose("training"), num_envs=NUM_ENVS,
                            parallel=mode != "serial")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (64, *env.action_space.shape)).astype(np.float32)
    for k in range(WARMUP):
        env.step(actions[k % 64])
    times = np.empty(STEPS)
    for k in range(STEPS):
        a = actions[k % 64]
        t0 = time.perf_counter()
        env.step(a)
        times[k] = time.perf_counter() - t0
    us = times * 1e6
    return {"mode": mode, "mean_us": float(us.mean()), "p50_us": float(np.percentile(us, 50)),
            "p90_us": float(np.percentile(us, 90)), "p99_us": float(np.percentile(us, 99)),
            "env_steps_per_s": float(NUM_ENVS / times.mean()),
            "threading_layer": _layer(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def _layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region ran (serial)
        return "none"


def _busy_process():
    """A process that keeps one core busy (pinned to the last core), as a learner would."""
    core = os.cpu_count() - 1
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def run_row(mode: str, busy: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")}
    env.update(MODES[mode])
    hog = _busy_process() if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, mode], env=env, check=True,
                             capture_output=True, text=True, timeout=600)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["busy"] = busy
    return row


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy"])
@pytest.mark.parametrize("mode", MODES)
def test_step_beside_a_busy_process(benchmark, mode, busy):
    rows = []
    benchmark.pedantic(lambda: rows.append(run_row(mode, busy)), rounds=1, warmup_rounds=0)
    benchmark.extra_info.update({k: (round(v, 1) if isinstance(v, float) else v)
                                 for k, v in rows[-1].items()})


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
