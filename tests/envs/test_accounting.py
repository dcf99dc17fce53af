"""Accounting invariants of the batched env, checked from its info after every step."""

import numpy as np
import pytest

from tests.envs.conftest import bars_frame, make_env

ZERO = ["execution=zero_cost"]


def closes(env):
    return env.market.field("close")


@pytest.mark.parametrize("overrides", [[], ZERO, ["execution.fill_price=close"],
                                       ["execution.min_commission=2.0", "execution.lot_size=1"],
                                       ["env.max_leverage=2.5"]])
@pytest.mark.parametrize("n_assets", [1, 3])
def test_equity_is_cash_plus_positions_and_costs_nonnegative(overrides, n_assets):
    data = bars_frame(n_assets=n_assets, seed=n_assets)
    env = make_env(8, overrides, data=data)
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape)
                                             .astype(np.float32))
        px = closes(env)[info["bar"]]
        np.testing.assert_allclose(info["equity"],
                                   info["cash"] + np.sum(info["position"] * px, axis=1),
                                   rtol=1e-12)
        assert np.all(info["cost"] >= 0.0)
        assert np.all(np.isfinite(r)) and r.dtype == np.float64


def test_zero_costs_held_position_pnl_is_position_times_price_change():
    env = make_env(4, ZERO)
    env.reset(seed=2)
    # a target weight is rebalanced as equity moves; weight 1 with no cash left is a fixed position
    hold = np.ones(env.action_space.shape, dtype=np.float32)
    _, _, _, _, info = env.step(hold)  # the first step opens the position
    for _ in range(15):
        prev_equity, prev_bar, prev_pos = info["equity"], info["bar"], info["position"][:, 0]
        _, _, term, trunc, info = env.step(hold)
        live = ~(term | trunc)
        assert np.all(info["position"][live, 0] == prev_pos[live])  # held: no trade at all
        c = closes(env)[:, 0]
        pnl = info["equity"] - prev_equity
        expected = prev_pos * (c[info["bar"]] - c[prev_bar])
        np.testing.assert_allclose(pnl[live], expected[live], rtol=1e-9, atol=1e-7)
        assert live.any()
        assert np.all(info["cost"] == 0.0)


def test_buy_and_hold_full_weight_ends_at_close_over_first_open():
    env = make_env(6, [*ZERO, "env.episode_length=30"])
    _, info = env.reset(seed=3)
    t0 = info["bar"].copy()
    ones = np.ones(env.action_space.shape, dtype=np.float32)
    for _ in range(30):
        _, _, term, trunc, info = env.step(ones)
    assert np.all(trunc) and not np.any(term)
    o, c = env.market.field("open")[:, 0], closes(env)[:, 0]
    expected = 100_000.0 * c[t0 + 30] / o[t0 + 1]
    np.testing.assert_allclose(info["equity"], expected, rtol=1e-12)


def test_costs_reduce_equity_exactly_by_cost_on_first_fill():
    """Opening from cash: equity at close = cash-only equity + position P&L - cost."""
    env = make_env(4, ["execution.commission_bps=10", "execution.slippage_bps=5",
                       "execution.min_commission=1"])
    _, info = env.reset(seed=4)
    _, _, _, _, info = env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
    o, c = env.market.field("open")[:, 0], closes(env)[:, 0]
    bar = info["bar"]
    pos = info["position"][:, 0]
    # bought at open*(1 + 5.5 bps); marked at close
    expected = 100_000.0 + pos * (c[bar] - o[bar]) - info["cost"]
    np.testing.assert_allclose(info["equity"], expected, rtol=1e-12)
    assert np.all(info["cost"] > 0)


def test_bankruptcy_terminates():
    """A leveraged short into a rally crosses the bankrupt threshold and terminates."""
    import pandas as pd

    n = 200
    close = 100.0 * 1.05 ** np.arange(n)
    df = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999,
                       "close": close, "volume": 1e6},
                      index=pd.date_range("2020", periods=n, freq="D"))
    env = make_env(2, ["env.max_leverage=3", "env.episode_length=50"], data=df)
    env.reset(seed=0)
    done_at = None
    for k in range(50):
        _, _, term, trunc, info = env.step(np.full((2, 1), -1.0, dtype=np.float32))
        if term.any():
            done_at = k
            assert np.all(info["equity"][term] <= 50_000.0) and not trunc[term].any()
            break
    assert done_at is not None


EVERYTHING = ["execution=realistic", "risk=guarded", "execution.order_type=limit",
              "execution.time_in_force=3", "execution.record_fills=true",
              "risk.take_profit.kind=pct", "env.max_leverage=2", "risk.max_weight=1.5"]


@pytest.mark.parametrize("n_assets", [1, 3])
def test_invariants_hold_with_everything_on(n_assets):
    env = make_env(16, EVERYTHING, data=bars_frame(n_assets=n_assets, seed=7, vol=0.02))
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    total_fees = np.zeros(16)
    for _ in range(80):
        _, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape)
                                           .astype(np.float32))
        px = env.market.field("close")[info["bar"]]
        np.testing.assert_allclose(info["equity"],
                                   info["cash"] + np.sum(info["position"] * px, axis=1),
                                   rtol=1e-12)
        assert np.all(info["cost"] >= 0.0) and np.all(np.isfinite(r))
        fills = env.drain_fills()
        assert np.all(fills["commission"] >= 0) and np.all(fills["slippage"] >= 0)
        np.add.at(total_fees, fills["env"], fills["commission"] + fills["slippage"])
    assert info["risk_events"].sum() > 0 and total_fees.sum() > 0
