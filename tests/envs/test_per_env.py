"""Parameters that differ per env: a parameter sweep as one batch."""

import numpy as np
import pytest

from tests.envs.conftest import make_env


def test_per_env_commission_gives_each_env_its_cost():
    bps = np.array([0.0, 5.0, 20.0])
    env = make_env(3, ["execution=zero_cost"], per_env={"execution.commission_bps": bps})
    env.reset(seed=0, options={"start_bars": np.array([30, 30, 30])})
    _, _, _, _, info = env.step(np.full((3, 1), 0.5, dtype=np.float32))
    notional = np.abs(info["position"][:, 0]) * env.market.field("open")[31, 0]
    np.testing.assert_allclose(info["cost"], notional * bps * 1e-4, rtol=1e-9)


def test_per_env_latency_and_stops():
    env = make_env(2, ["execution=zero_cost", "execution.latency=2",
                       "risk.stop_loss.kind=pct"],
                   per_env={"execution.latency": [0, 2], "risk.stop_loss.value": [0.5, 0.5]})
    env.reset(seed=0, options={"start_bars": np.array([30, 30])})
    _, _, _, _, info = env.step(np.ones((2, 1), dtype=np.float32))
    assert info["position"][0, 0] > 0 and info["position"][1, 0] == 0  # env 1 waits 2 bars
    env.step(np.ones((2, 1), dtype=np.float32))
    _, _, _, _, info = env.step(np.ones((2, 1), dtype=np.float32))
    assert info["position"][1, 0] > 0


@pytest.mark.parametrize("per_env,match", [
    ({"execution.comission_bps": [1, 2]}, "unknown key 'execution.comission_bps'"),
    ({"execution.commission_bps": [1, 2, 3]}, r"expected a scalar or shape \(2,\)"),
    ({"execution.commission_bps": [1, -2]}, r"execution\.commission_bps: expected >= 0"),
    ({"execution.max_participation": [0.5, 1.5]}, r"execution\.max_participation"),
    ({"risk.stop_loss.value": [0.1, 0.0]}, r"risk\.stop_loss\.value: expected > 0"),
    ({"execution.latency": [0, 3]}, r"up to execution\.latency=0"),
])
def test_per_env_bad_values(per_env, match):
    with pytest.raises(ValueError, match=match):
        make_env(2, per_env=per_env)
