"""Everything on (square-root impact, latency 2, ATR stop + trailing stop, vol targeting,
drawdown breaker, daily loss, margin) vs the default step, 4,096 envs, measured in one run."""

import numpy as np
import pytest

import optrader

EVERYTHING_ON = [
    "execution.slippage_model=sqrt_impact", "execution.impact_coef=0.5",
    "execution.max_participation=0.1", "execution.min_commission=1", "execution.latency=2",
    "execution.borrow_bps_annual=50", "risk.sizing=vol_target", "risk.stop_loss.kind=atr",
    "risk.stop_loss.value=3", "risk.trailing_stop.kind=pct", "risk.trailing_stop.value=0.1",
    "risk.max_drawdown=0.3", "risk.max_daily_loss=0.05", "risk.maintenance_margin=0.1",
]
STEPS = 50
MEDIANS: dict = {}


@pytest.mark.parametrize("name,overrides", [("default", []), ("everything_on", EVERYTHING_ON)])
def test_step_4096(benchmark, name, overrides):
    env = optrader.make_vec(optrader.compose("training", overrides), num_envs=4096)
    env.reset(seed=0)
    actions = env.action_space.sample().astype(np.float32)
    env.step(actions)

    def run():
        for _ in range(STEPS):
            env.step(actions)

    benchmark.pedantic(run, rounds=10, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / STEPS
    MEDIANS[name] = per_step
    benchmark.extra_info["us_per_batched_step"] = round(per_step * 1e6, 1)
    benchmark.extra_info["env_steps_per_s"] = round(4096 / per_step)
    if "default" in MEDIANS and name != "default":
        benchmark.extra_info["cost_vs_default"] = round(per_step / MEDIANS["default"], 2)
