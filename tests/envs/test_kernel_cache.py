"""Custom-reward step kernels are cached on disk under a digest of the reward
(``optrader.envs.kernel_cache.reward_fingerprint``), so a new process loads them instead of
compiling them again; the digest changes with anything that changes the compiled code."""

from __future__ import annotations

import numpy as np
from numba import njit

from optrader.envs.kernel_cache import kernels, reward_fingerprint

SCALE = 2.0


@njit
def penalty(equity_prev, equity, cost, drawdown, gross, step):
    return -gross


@njit
def penalty_b(equity_prev, equity, cost, drawdown, gross, step):
    return -2.0 * gross


@njit
def scaled(equity_prev, equity, cost, drawdown, gross, step):
    return SCALE * penalty(equity_prev, equity, cost, drawdown, gross, step)


def closure_over(value):
    @njit
    def reward(equity_prev, equity, cost, drawdown, gross, step):
        return value[0] * gross if not isinstance(value, float) else value * gross
    return reward


def test_the_fingerprint_follows_code_weights_constants_and_callees():
    base = reward_fingerprint(((penalty, 1.0),))
    assert base is not None and base == reward_fingerprint(((penalty, 1.0),))
    assert len({base, reward_fingerprint(((penalty, 0.5),)),
                reward_fingerprint(((penalty_b, 1.0),)),
                reward_fingerprint(((penalty, 1.0), (penalty_b, 1.0))),
                reward_fingerprint(((penalty_b, 1.0), (penalty, 1.0)))}) == 5
    assert reward_fingerprint(((closure_over(1.0), 1.0),)) != \
        reward_fingerprint(((closure_over(3.0), 1.0),))
    before = reward_fingerprint(((scaled, 1.0),))
    globals()["SCALE"] = 3.0  # a global Numba would freeze into the build
    try:
        assert reward_fingerprint(((scaled, 1.0),)) != before
    finally:
        globals()["SCALE"] = 2.0
    # an array closed over cannot be digested: compiled per process instead of a wrong hit
    assert reward_fingerprint(((closure_over(np.ones(1)), 1.0),)) is None


def test_a_custom_reward_build_uses_the_disk_cache():
    step, _ = kernels(((penalty, 0.25),), parallel=False)
    assert type(step._cache).__name__ == "FunctionCache"  # not NullCache: cached on disk
    assert reward_fingerprint(((penalty, 0.25),)) in step.__name__
    # an undigestable reward still builds, uncached
    step2, _ = kernels(((closure_over(np.ones(1)), 1.0),), parallel=False)
    assert type(step2._cache).__name__ == "NullCache"
