"""Issue-3 execution options through the env: carry, impact, participation, shorting."""

import numpy as np
import pytest

from tests.envs.conftest import make_env

ZERO = ["execution=zero_cost"]


def step_const(env, weight, n=1):
    a = np.full(env.action_space.shape, weight, dtype=np.float32)
    for _ in range(n):
        out = env.step(a)
    return out


def test_borrow_cost_accrues_only_on_shorts():
    # hourly 24/7 bars: periods_per_year is inferred as 8,766, so this is 10 bps a bar
    env = make_env(3, [*ZERO, "execution.borrow_bps_annual=87660"])
    assert env.market.periods_per_year == 8766.0
    env.reset(seed=0, options={"start_bars": np.array([10, 10, 10])})
    _, _, _, _, info = env.step(np.array([[-1.0], [0.0], [1.0]], dtype=np.float32))
    c = env.market.field("close")[info["bar"], 0]
    borrow = -np.minimum(info["position"][:, 0], 0.0) * c * 10e-4
    np.testing.assert_allclose(info["cost"], borrow, rtol=1e-9)
    assert info["cost"][0] > 0 and info["cost"][1] == 0 and info["cost"][2] == 0


def test_cash_interest_credits_positive_cash():
    env = make_env(1, [*ZERO, "execution.cash_rate_annual=0.05"])
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros((1, 1), dtype=np.float32))
    per_bar = 1.05 ** (1 / 8766) - 1  # hourly 24/7 bars: 365.25 x 24 a year (inferred)
    assert info["equity"][0] == pytest.approx(100_000 * (1 + per_bar), rel=1e-12)


@pytest.mark.parametrize("model", ["linear_impact", "sqrt_impact"])
def test_impact_cost_grows_with_order_size(model):
    costs = []
    for w in (0.1, 0.4, 0.9):
        env = make_env(1, [*ZERO, f"execution.slippage_model={model}",
                           "execution.impact_coef=0.5", "env.initial_cash=1e8"])
        env.reset(seed=0, options={"start_bars": np.array([40])})
        _, _, _, _, info = step_const(env, w)
        costs.append(info["cost"][0] / w)  # cost per unit of weight
    assert costs[0] < costs[1] < costs[2]  # impact per unit rises with size


def test_participation_cap_gives_partial_fills():
    env = make_env(1, [*ZERO, "execution.max_participation=0.0001", "env.initial_cash=1e9"])
    env.reset(seed=0, options={"start_bars": np.array([40])})
    _, _, _, _, info = step_const(env, 1.0)
    bar = info["bar"][0]
    vol = env.market.field("volume")[bar, 0]
    assert info["position"][0, 0] == pytest.approx(1e-4 * vol)
    _, _, _, _, info2 = step_const(env, 1.0)  # the rest keeps filling bar by bar
    assert info2["position"][0, 0] > info["position"][0, 0]


def test_shorting_disabled_blocks_short_targets():
    env = make_env(2, [*ZERO, "execution.allow_short=false"])
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([[-1.0], [0.5]], dtype=np.float32))
    assert info["position"][0, 0] == 0.0 and info["position"][1, 0] > 0


def test_min_trade_value_skips_dust():
    env = make_env(1, [*ZERO, "execution.min_trade_value=20000"])
    env.reset(seed=0)
    _, _, _, _, info = step_const(env, 0.1)  # 10,000 of notional: skipped
    assert info["position"][0, 0] == 0.0
    _, _, _, _, info = step_const(env, 0.3)
    assert info["position"][0, 0] > 0.0


def test_spread_column_model_needs_the_column():
    with pytest.raises(ValueError, match="spread_column: the data has no 'spread' column"):
        make_env(1, ["execution.slippage_model=spread_column"])


def test_spread_column_sets_the_half_spread_cost():
    from tests.envs.conftest import bars_frame

    df = bars_frame()
    df["Spread"] = 8.0  # bps, any case
    env = make_env(1, [*ZERO, "execution.slippage_model=spread_column"], data=df)
    env.reset(seed=0)
    _, _, _, _, info = step_const(env, 1.0)
    o = env.market.field("open")[info["bar"][0], 0]
    notional = info["position"][0, 0] * o * (1 + 4e-4)
    assert info["cost"][0] == pytest.approx(notional * 4e-4 / (1 + 4e-4), rel=1e-9)


@pytest.mark.parametrize("order_type", ["market", "limit"])
def test_blocked_shorts_are_counted_for_every_order_type(order_type):
    env = make_env(1, [*ZERO, "execution.allow_short=false", f"execution.order_type={order_type}"])
    env.reset(seed=0)
    *_, info = env.step(np.array([[-1.0]], dtype=np.float32))
    assert info["position"][0, 0] == 0.0
    assert info["risk_events"][0, 9] == 1  # FillReason.SHORT_BLOCKED
