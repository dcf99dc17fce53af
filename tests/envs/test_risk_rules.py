"""Risk rules inside the fused step, checked on hand-made bars where the answer is known."""

import numpy as np
import pandas as pd
import pytest

from kernels.enums import FillReason
from tests.envs.conftest import bars_frame, make_env

ZERO = ["execution=zero_cost"]


def frame(open_, high, low, close, freq="D"):
    n = len(close)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": np.full(n, 1e6)},
                        index=pd.date_range("2022-01-03", periods=n, freq=freq, tz="UTC"))


def flat_then(n_flat, moves, freq="D"):
    """Bars at 100 for n_flat bars, then (open, high, low, close) per move."""
    o = [100.0] * n_flat + [m[0] for m in moves]
    h = [100.5] * n_flat + [m[1] for m in moves]
    lo = [99.5] * n_flat + [m[2] for m in moves]
    c = [100.0] * n_flat + [m[3] for m in moves]
    tail = 30
    return frame(o + [c[-1]] * tail, [max(x, y) for x, y in zip(h + [c[-1]] * tail,
                                                                 o + [c[-1]] * tail, strict=True)],
                 lo + [c[-1]] * tail, c + [c[-1]] * tail, freq=freq)


def long_from(env, start):
    env.reset(seed=0, options={"start_bars": np.array([start] * env.num_envs)})
    return np.ones(env.action_space.shape, dtype=np.float32)


def test_stop_loss_caps_the_loss_inside_the_bar():
    # enter at open 100 of bar 11; bar 11 trades down to 90 and closes at 95
    df = flat_then(11, [(100.0, 100.5, 90.0, 95.0)])
    env = make_env(1, [*ZERO, "risk.stop_loss.kind=pct", "risk.stop_loss.value=0.02",
                       "observation.window=2", "env.episode_length=5"], data=df)
    a = long_from(env, 10)
    _, _, _, _, info = env.step(a)
    assert info["position"][0, 0] == 0.0
    assert info["equity"][0] == pytest.approx(100_000 * 0.98)  # exactly the 2 % stop
    assert info["risk_events"][0, FillReason.STOP_LOSS] == 1


def test_stop_loss_gap_exits_at_the_open():
    # held from bar 11; bar 12 gaps down to open 90 (below the 98 stop)
    df = flat_then(11, [(100.0, 100.5, 99.8, 100.0), (90.0, 91.0, 89.0, 90.5)])
    env = make_env(1, [*ZERO, "risk.stop_loss.kind=pct", "risk.stop_loss.value=0.02",
                       "observation.window=2", "env.episode_length=5"], data=df)
    a = long_from(env, 10)
    env.step(a)
    _, _, _, _, info = env.step(a)
    assert info["position"][0, 0] == 0.0
    assert info["equity"][0] == pytest.approx(100_000 * 0.90)  # the gap is the loss


def test_take_profit_and_trailing_stop():
    df = flat_then(11, [(100.0, 106.0, 99.9, 105.0), (105.0, 112.0, 104.0, 110.0),
                        (110.0, 110.5, 100.0, 101.0)])
    env = make_env(2, [*ZERO, "risk.trailing_stop.kind=pct", "risk.trailing_stop.value=0.05",
                       "observation.window=2", "env.episode_length=6"], data=df)
    a = long_from(env, 10)
    for _ in range(3):
        _, _, _, _, info = env.step(a)
        if info["position"][0, 0] == 0.0:
            break
    # the trail follows the best high (112) and exits at 112 x 0.95 = 106.4 in the drop bar
    assert info["risk_events"][0, FillReason.TRAILING_STOP] == 1
    assert info["equity"][0] == pytest.approx(100_000 * 1.064)
    env_tp = make_env(1, [*ZERO, "risk.take_profit.kind=pct", "risk.take_profit.value=0.05",
                          "observation.window=2", "env.episode_length=6"], data=df)
    a = long_from(env_tp, 10)
    _, _, _, _, info = env_tp.step(a)
    assert info["risk_events"][0, FillReason.TAKE_PROFIT] == 1
    assert info["equity"][0] == pytest.approx(100_000 * 1.05)


def test_daily_loss_limit_halts_and_resumes_next_day():
    # hourly bars: day 1 falls 1 % an hour from hour 5; day 2 is flat
    n = 24 * 3
    c = np.full(n, 100.0)
    c[5:24] = 100.0 * 0.99 ** np.arange(1, 20)
    c[24:] = c[23]
    o = np.r_[c[0], c[:-1]]
    df = frame(o, np.maximum(o, c) * 1.0001, np.minimum(o, c) * 0.9999, c, freq="h")
    env = make_env(1, [*ZERO, "risk.max_daily_loss=0.03", "observation.window=2",
                       "env.episode_length=40"], data=df)
    a = long_from(env, 2)
    held = []
    for _ in range(40):
        _, _, _, _, info = env.step(a)
        held.append((int(info["bar"][0]), info["position"][0, 0]))
    halted = [b for b, p in held if p == 0.0]
    assert halted and min(halted) < 24 <= max(b for b, p in held if p > 0.0)
    assert all(b < 24 for b in halted)  # trading resumed with the new day
    assert info["risk_events"][0, FillReason.DAILY_LOSS] == 1
    first_halt = min(halted)
    day_open_equity = 100_000.0
    # flattened at the first close whose loss exceeds 3 % of the day's opening equity
    loss_at = {b: 100_000 * c[b] / o[3] for b in range(3, 24)}
    crossed = min(b for b, e in loss_at.items() if e < day_open_equity * 0.97)
    assert first_halt == crossed


def test_liquidation_exactly_when_equity_crosses_maintenance():
    df = bars_frame(n_bars=400, seed=11, vol=0.02)
    base = ["execution=zero_cost", "env.max_leverage=3", "observation.window=2",
            "env.episode_length=120", "env.bankrupt_fraction=0.01"]
    free = make_env(1, base, data=df)
    a = long_from(free, 5)
    ratios = []
    for _ in range(120):
        _, _, _, _, info = free.step(a)
        c = free.market.field("close")[info["bar"][0], 0]
        ratios.append(info["equity"][0] / (abs(info["position"][0, 0]) * c))
    maint = float(np.quantile(ratios, 0.2))
    first = int(np.argmax(np.array(ratios) < maint))
    env = make_env(1, [*base, f"risk.maintenance_margin={maint}"], data=df)
    long_from(env, 5)
    for k in range(first + 1):
        _, _, _, _, info = env.step(a)
        if k < first:
            assert info["risk_events"][0, FillReason.LIQUIDATION] == 0
    assert info["risk_events"][0, FillReason.LIQUIDATION] == 1
    assert info["position"][0, 0] == 0.0


@pytest.mark.parametrize("action", ["terminate", "halt"])
def test_drawdown_breaker(action):
    c = np.r_[np.full(12, 100.0), 100.0 * 0.97 ** np.arange(1, 20), np.full(30, 55.0)]
    o = np.r_[c[0], c[:-1]]
    df = frame(o, np.maximum(o, c), np.minimum(o, c), c)
    env = make_env(1, [*ZERO, "risk.max_drawdown=0.1", f"risk.drawdown_action={action}",
                       "observation.window=2", "env.episode_length=30"], data=df)
    a = long_from(env, 10)
    for _ in range(30):
        _, _, term, trunc, info = env.step(a)
        if info["risk_events"][0, FillReason.DRAWDOWN]:
            break
    assert info["position"][0, 0] == 0.0 and info["drawdown"][0] > 0.1
    if action == "terminate":
        assert term[0]
    else:
        assert not term[0]
        _, _, _, _, info = env.step(a)  # halted: the long is not re-entered
        assert info["position"][0, 0] == 0.0


def test_vol_targeting_scales_weights_inversely_with_vol():
    env = make_env(2, [*ZERO, "risk.sizing=vol_target", "risk.target_vol=0.1",
                       "risk.max_weight=5", "env.max_leverage=5"],
                   data=bars_frame(n_bars=400, seed=3, vol=0.01))
    env.reset(seed=0, options={"start_bars": np.array([100, 100])})
    _, _, _, _, info = env.step(np.array([[0.2], [0.1]], dtype=np.float32))
    sigma = env._series[1, 100, 0]  # SeriesField.SIGMA at the decision bar
    o = env.market.field("open")[101, 0]
    weights = info["position"][:, 0] * o / 100_000
    ppy = 365.25 * 24  # hourly 24/7 bars, inferred (data.periods_per_year: 0)
    assert env.market.periods_per_year == ppy
    expected = np.array([0.2, 0.1], dtype=np.float32).astype(float) * 5 * 0.1 / (sigma * np.sqrt(ppy))
    np.testing.assert_allclose(weights, np.minimum(expected, 5), rtol=1e-9)


def test_fill_records_describe_each_fill():
    env = make_env(2, ["execution.record_fills=true", "risk.stop_loss.kind=pct",
                       "risk.stop_loss.value=0.001"])
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([[0.5], [-0.5]], dtype=np.float32))
    fills = env.drain_fills()
    assert set(fills["env"]) <= {0, 1} and len(fills) >= 2
    first = fills[fills["reason"] == FillReason.SIGNAL]
    assert list(first["side"]) == [1, -1]
    assert np.all(first["commission"] > 0) and np.all(first["slippage"] > 0)
    assert np.all(first["bar"] == info["bar"])
    stops = fills[fills["reason"] == FillReason.STOP_LOSS]
    np.testing.assert_array_equal(np.sort(stops["env"]),
                                  np.nonzero(info["risk_events"][:, FillReason.STOP_LOSS])[0])
    assert len(env.drain_fills()) == 0  # drained


def test_drain_fills_needs_recording():
    env = make_env(1)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="record_fills"):
        env.drain_fills()
