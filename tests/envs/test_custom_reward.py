"""A user reward registered by name is fused into the step kernel and selectable from config."""

import numpy as np
import pytest
from numba import njit

import optrader
from optrader.registry import registry
from tests.envs.conftest import make_env


@njit
def exposure_penalty(equity_prev, equity, cost, drawdown, gross_exposure, step):
    """-gross exposure (a toy reward)."""
    return -gross_exposure


@njit
def equity_ratio(equity_prev, equity, cost, drawdown, gross_exposure, step):
    return equity / equity_prev - 1.0


@pytest.fixture(scope="module", autouse=True)
def registered():
    optrader.register_reward("exposure_penalty", exposure_penalty, overwrite=True)
    optrader.register_reward("equity_ratio", equity_ratio, overwrite=True)
    yield


def test_custom_reward_is_fused_and_weighted():
    env = make_env(3, ["+reward.components.exposure_penalty=2.0", "reward.components.log_return=0",
                       "+reward.components.equity_ratio=1.0"])
    env.reset(seed=0)
    a = np.array([[0.5], [-0.25], [0.0]], dtype=np.float32)
    prev = np.full(3, 100_000.0)
    _, r, _, _, info = env.step(a)
    expected = -2.0 * np.abs(a[:, 0]).astype(np.float64) + (info["equity"] / prev - 1.0)
    np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-9)
    assert "exposure_penalty" in registry.list("reward")


def test_register_reward_rejects_bad_functions():
    with pytest.raises(TypeError, match="numba.njit"):
        optrader.register_reward("plain", lambda *a: 0.0)

    @njit
    def wrong_arity(x):
        return x

    with pytest.raises(TypeError, match="equity_prev, equity"):
        optrader.register_reward("wrong_arity", wrong_arity)
    with pytest.raises(ValueError, match="built-in"):
        optrader.register_reward("log_return", exposure_penalty)


def test_unknown_reward_lists_known():
    with pytest.raises(ValueError, match="known: .*log_return"):
        make_env(2, ["+reward.components.no_such_reward=1.0"])
