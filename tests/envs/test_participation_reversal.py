"""The participation cap (``execution.max_participation``) and reversal sizing
(``execution.reversal``) through the env, the lean backtest kernel and the config, against
hand computations (docs/execution_and_risk.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import optrader
from kernels.enums import CostParam, FillReason
from optrader.backtest import run_strategy
from optrader.config import ConfigError, load_spec
from tests.envs.conftest import bars_frame, make_env

START = 10  # the env stands at close START; its first order fills at open START + 1


def flat_bars(n_bars=60, price=100.0, volume=1e6) -> pd.DataFrame:
    """A constant price and volume (every bar open = high = low = close), to edit by hand."""
    ts = pd.date_range("2021-01-01", periods=n_bars, freq="h", tz="UTC")
    return pd.DataFrame({"open": price, "high": price, "low": price, "close": price,
                         "volume": volume}, index=ts)


def set_price(df, bar, price):
    df.iloc[bar:, :4] = price  # from `bar` on, every field of every bar


def env_on(df, overrides, n=1, **kw):
    env = make_env(n, ["execution=zero_cost", *overrides], data=df, **kw)
    env.reset(seed=0, options={"start_bars": np.full(n, START)})
    return env


def step(env, weights):
    return env.step(np.asarray(weights, dtype=np.float32).reshape(env.num_envs, -1))


# ---- participation cap ------------------------------------------------------------------------


def test_default_cap_is_one_bar_of_volume():
    """At the default config no fill exceeds the bar's volume (today's kernels skipped the cap at
    1.0: a 90,000-unit order filled against a bar that traded 1,261)."""
    df = flat_bars()
    df.iloc[START + 1, 4] = 1261.0
    cfg = optrader.compose("training")
    assert cfg.execution.max_participation == 1.0
    env = make_env(1, ["env.initial_cash=9e6", "execution.commission_bps=0",
                       "execution.slippage_bps=0", "execution.half_spread_bps=0"], data=df)
    assert env._cost_params[0, CostParam.MAX_PARTICIPATION] == 1.0
    env.reset(seed=0, options={"start_bars": np.array([START])})
    *_, info = step(env, [1.0])  # wants 90,000 units
    assert info["position"][0, 0] == 1261.0
    assert info["risk_events"][0, FillReason.PARTIAL] == 1
    *_, info = step(env, [1.0])  # the next bar (1e6 traded) fills the rest
    assert info["position"][0, 0] == pytest.approx(90_000.0, rel=1e-12)


@pytest.mark.parametrize("cap", ["1.0", "0.5"])
def test_a_bar_without_volume_never_fills_with_a_cap(cap):
    df = flat_bars()
    df.iloc[START + 1, 4] = 0.0
    env = env_on(df, [f"execution.max_participation={cap}"])
    *_, info = step(env, [1.0])
    assert info["position"][0, 0] == 0.0 and info["cash"][0] == 100_000.0
    assert info["risk_events"][0, FillReason.NO_VOLUME] == 1
    assert info["risk_events"][0, FillReason.PARTIAL] == 0
    *_, info = step(env, [1.0])  # the next bar traded: the order goes through, capped
    expected = min(1000.0, float(cap) * 1e6)
    assert info["position"][0, 0] == pytest.approx(expected, rel=1e-12)


def test_null_cap_ignores_volume():
    df = flat_bars()
    df.iloc[START + 1, 4] = 0.0
    env = env_on(df, ["execution.max_participation=null", "env.initial_cash=9e6"])
    assert env._cost_params[0, CostParam.MAX_PARTICIPATION] == np.inf
    *_, info = step(env, [1.0])
    assert info["position"][0, 0] == pytest.approx(90_000.0, rel=1e-12)
    assert "risk_events" not in info or not info["risk_events"].any()


def test_per_env_cap_with_inf_for_no_cap():
    df = flat_bars()
    df.iloc[START + 1, 4] = 500.0
    env = make_env(3, ["execution=zero_cost"], data=df,
                   per_env={"execution.max_participation": [1.0, 0.1, np.inf]})
    env.reset(seed=0, options={"start_bars": np.full(3, START)})
    *_, info = step(env, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(info["position"][:, 0], [500.0, 50.0, 1000.0], rtol=1e-12)
    np.testing.assert_array_equal(info["risk_events"][:, FillReason.PARTIAL], [1, 1, 0])


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1", "true", "'half'", ".nan"])
def test_bad_caps_are_rejected_naming_what_is_allowed(bad):
    with pytest.raises(ConfigError, match=r"max_participation: expected a fraction .*\(0, 1\], "
                                          r"or null for no cap"):
        load_spec(optrader.compose("training", [f"execution.max_participation={bad}"]))


def test_synthetic_default_never_meets_the_cap():
    """The synthetic default trades ~1,000 units (100,000 at ~100) against ~1e6 a bar, so the
    default cap must not change a training run: no cut and no empty bar in random trading."""
    env = optrader.make_vec(optrader.compose("training"), num_envs=8)
    volume = env.market.field("volume")
    assert volume.min() > 0.0
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(300):
        *_, info = env.step(rng.choice([-1.0, 1.0], size=(8, 1)).astype(np.float32))
    assert env._cost_params[0, CostParam.MAX_PARTICIPATION] == 1.0
    assert env.risk_events[:, FillReason.PARTIAL].sum() == 0
    assert env.risk_events[:, FillReason.NO_VOLUME].sum() == 0


@pytest.mark.parametrize("rebalance", ["every_bar", "on_change"])
def test_lean_backtest_caps_fills_and_retries_empty_bars(rebalance):
    """The lean kernel: no fill above m x the bar's volume, none on an empty bar (counted), and
    with every_bar it equals the fused step bit for bit."""
    df = bars_frame(400, seed=3)
    rng = np.random.default_rng(0)
    df["volume"] = rng.uniform(0.0, 3000.0, len(df))  # orders of ~2,000 units bind often
    df.iloc[rng.choice(len(df), 40, replace=False), 4] = 0.0
    over = ["observation.window=2", "data.split.use=all", "execution.record_fills=true",
            "execution.max_participation=0.5"]
    params = np.array([[3, 10, 0, 0], [5, 20, 0, 0]], dtype=float)

    def run(lean):
        env = optrader.make_vec(optrader.compose("training", over), num_envs=2, data=df,
                                parallel=False)
        res = run_strategy(env, "sma_cross", params, lean=lean, rebalance=rebalance)
        return env, res

    env, res = run(True)
    vol = env.market.field("volume")[res.fills["bar"], res.fills["asset"]]
    assert res.fills.size > 20
    assert (np.abs(res.fills["qty"]) <= 0.5 * vol).all()
    assert (vol > 0.0).all()
    assert env.risk_events[:, FillReason.NO_VOLUME].sum() > 0
    assert env.risk_events[:, FillReason.PARTIAL].sum() > 0
    if rebalance == "every_bar":
        env2, res2 = run(False)
        np.testing.assert_array_equal(res.equity, res2.equity)
        np.testing.assert_array_equal(res.fills, res2.fills)
        np.testing.assert_array_equal(env.risk_events[:, FillReason.NO_VOLUME],
                                      env2.risk_events[:, FillReason.NO_VOLUME])


# ---- reversal sizing --------------------------------------------------------------------------

C = 10e-4  # commission, a fraction of notional
S = 5e-4  # slippage, a fraction of the reference price
COSTS = ["execution.commission_bps=10", "execution.slippage_bps=5", "env.initial_cash=10000"]


@pytest.mark.parametrize("mode", ["equity", "cash"])
def test_long_to_short_reversal_by_hand(mode):
    """10,000 all long at 100, then all short at open 125, with 10 bps commission and 5 bps
    slippage."""
    df = flat_bars()
    set_price(df, START + 2, 125.0)
    env = env_on(df, [*COSTS, f"execution.reversal={mode}"])
    *_, info = step(env, [1.0])
    # the long: 100 units (w x 10,000 / 100) bought at 100 (1 + S)
    u1, px1 = 100.0, 100.0 * (1 + S)
    cash1 = 10_000.0 - u1 * px1 * (1 + C)
    assert info["position"][0, 0] == pytest.approx(u1, rel=1e-12)
    assert info["cash"][0] == pytest.approx(cash1, rel=1e-12)
    *_, info = step(env, [-1.0])
    p = 125.0
    equity_ref = cash1 + u1 * p  # 12,483.49..., before the reversal's costs
    if mode == "equity":
        units = -equity_ref / p
    else:  # closing the long: sell 100 at p (1 - S), commission C on that
        closing = u1 * p * S + u1 * p * (1 - S) * C
        units = -(equity_ref - closing) / p
    qty = units - u1
    cash2 = cash1 - qty * p * (1 - S) - abs(qty) * p * (1 - S) * C
    assert info["position"][0, 0] == pytest.approx(units, rel=1e-12)
    assert info["cash"][0] == pytest.approx(cash2, rel=1e-12)
    if mode == "cash":  # the short is worth what closing the long left (12,480.15...)
        assert -units * p == pytest.approx(u1 * p * (1 - S) * (1 - C) + cash1, rel=1e-12)


@pytest.mark.parametrize("mode", ["equity", "cash"])
def test_short_to_long_reversal_by_hand(mode):
    """Short first, then long: with 'cash' the long is sized from the equity left after buying
    the short back, so cash ends at minus the new side's own costs only."""
    df = flat_bars()
    set_price(df, START + 2, 80.0)
    env = env_on(df, [*COSTS, f"execution.reversal={mode}"])
    step(env, [-1.0])
    u1, px1 = -100.0, 100.0 * (1 - S)
    cash1 = 10_000.0 - u1 * px1 - abs(u1) * px1 * C
    *_, info = step(env, [1.0])
    p = 80.0
    equity_ref = cash1 + u1 * p
    if mode == "equity":
        units = equity_ref / p
    else:  # buying 100 back at p (1 + S), commission C on that
        units = (equity_ref - (abs(u1) * p * S + abs(u1) * p * (1 + S) * C)) / p
    qty = units - u1
    cash2 = cash1 - qty * p * (1 + S) - qty * p * (1 + S) * C
    assert info["position"][0, 0] == pytest.approx(units, rel=1e-12)
    assert info["cash"][0] == pytest.approx(cash2, rel=1e-12)
    new_side_costs = units * p * (S + (1 + S) * C)
    if mode == "cash":
        assert cash2 == pytest.approx(-new_side_costs, rel=1e-9)  # as an entry from flat
    else:
        old_side_costs = abs(u1) * p * (S + (1 + S) * C)  # borrowed too
        assert cash2 == pytest.approx(-(new_side_costs + old_side_costs), rel=1e-9)


@pytest.mark.parametrize("mode", ["equity", "cash"])
def test_limit_order_reversal_by_hand(mode):
    """A working limit order that flips the position is sized at its fill price, less (cash)
    the commission of closing the old side there (limit orders pay no slippage)."""
    df = flat_bars()
    df.iloc[START + 1, df.columns.get_loc("low")] = 99.0  # the buy limit 99.9 is touched
    df.iloc[START + 2, df.columns.get_loc("high")] = 101.0  # the sell limit 100.1 is touched
    env = env_on(df, [*COSTS, f"execution.reversal={mode}", "execution.order_type=limit",
                      "execution.order_offset_bps=10"])
    *_, info = step(env, [1.0])
    px1 = 100.0 * (1 - 1e-3)
    u1 = 10_000.0 / px1
    cash1 = 10_000.0 - u1 * px1 * (1 + C)
    assert info["position"][0, 0] == pytest.approx(u1, rel=1e-12)
    *_, info = step(env, [-1.0])
    px = 100.0 * (1 + 1e-3)
    equity_px = cash1 + u1 * px
    closing = u1 * px * C if mode == "cash" else 0.0
    units = -(equity_px - closing) / px
    assert info["position"][0, 0] == pytest.approx(units, rel=1e-12)
    qty = units - u1
    assert info["cash"][0] == pytest.approx(cash1 - qty * px - abs(qty) * px * C, rel=1e-12)


def test_reversal_mode_changes_nothing_but_flips():
    """Entries, exits and re-sizing on the same side are sized alike in both modes."""
    df = bars_frame(200, seed=5)
    out = []
    for mode in ("equity", "cash"):
        env = make_env(1, ["execution.commission_bps=10", f"execution.reversal={mode}"], data=df)
        env.reset(seed=0, options={"start_bars": np.array([START])})
        rows = []
        for w in (0.5, 1.0, 0.3, 0.0, -0.4, -0.9, 0.0):
            *_, info = step(env, [w])
            rows.append((info["cash"][0], info["position"][0, 0]))
        out.append(rows)
    assert out[0] == out[1]


def test_reversal_cash_in_the_lean_kernel_equals_the_fused_step():
    df = bars_frame(400, seed=2)
    over = ["observation.window=2", "data.split.use=all", "execution.record_fills=true",
            "execution.commission_bps=10", "execution.slippage_bps=5", "execution.reversal=cash"]
    params = np.array([[3, 10, 0, 0], [5, 20, 0, 0], [2, 7, 0, 0]], dtype=float)
    res = []
    for lean in (True, False):
        env = optrader.make_vec(optrader.compose("training", over), num_envs=3, data=df,
                                parallel=False)
        res.append(run_strategy(env, "sma_cross", params, lean=lean, rebalance="every_bar"))
    np.testing.assert_array_equal(res[0].equity, res[1].equity)
    np.testing.assert_array_equal(res[0].fills, res[1].fills)
    fills = res[0].fills
    flips = 0
    for i in range(3):
        mine = fills[fills["env"] == i]["qty"]
        position = np.cumsum(mine)
        flips += int(np.sum(position[1:] * position[:-1] < 0))
    assert flips > 10


def test_unknown_reversal_is_rejected_naming_the_allowed_values():
    with pytest.raises(ConfigError, match=r"execution\.reversal: expected one of "
                                          r"\['equity', 'cash'\], got 'margin'"):
        load_spec(optrader.compose("training", ["execution.reversal=margin"]))
