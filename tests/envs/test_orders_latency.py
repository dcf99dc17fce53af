"""Latency ring and limit/stop orders through the env, on bars where the answer is known."""

import numpy as np
import pytest

from kernels.enums import FillReason, OrderType
from tests.envs.conftest import bars_frame, make_env
from tests.envs.test_risk_rules import frame

ZERO = ["execution=zero_cost", "execution.record_fills=true"]


def signal_fill_bars(latency, n_steps=12):
    env = make_env(1, [*ZERO, f"execution.latency={latency}"], data=bars_frame(seed=4))
    env.reset(seed=0, options={"start_bars": np.array([50])})
    bars = []
    for k in range(n_steps):
        env.step(np.array([[1.0 if k % 2 == 0 else -1.0]], dtype=np.float32))
        fills = env.drain_fills()
        bars.extend(fills["bar"][fills["reason"] == FillReason.SIGNAL].tolist())
    return bars


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_latency_shifts_every_fill_by_exactly_l_bars(latency):
    base = signal_fill_bars(0)
    late = signal_fill_bars(latency)
    assert late == [b + latency for b in base[: len(late)]]
    assert len(late) == len(base) - latency  # the first L steps have nothing to fill yet


def one_order(kind, bar1, offset_bps=100, tif=1, n_steps=1):
    """Decide at bar 10 (close 100) to go long with a ``kind`` order; bar 11 is ``bar1``."""
    o, h, lo, c = [100.0] * 11, [100.2] * 11, [99.8] * 11, [100.0] * 11
    o.append(bar1[0])
    h.append(bar1[1])
    lo.append(bar1[2])
    c.append(bar1[3])
    tail = 20
    o, h, lo, c = (x + [bar1[3]] * tail for x in (o, h, lo, c))
    df = frame(o, np.maximum(h, o), np.minimum(lo, o), c)
    env = make_env(1, [*ZERO, f"execution.order_type={kind}",
                       f"execution.order_offset_bps={offset_bps}",
                       f"execution.time_in_force={tif}", "observation.window=2",
                       "env.episode_length=8"], data=df)
    env.reset(seed=0, options={"start_bars": np.array([10])})
    infos, fills = [], []
    for _ in range(n_steps):
        *_, info = env.step(np.ones((1, 1), dtype=np.float32))
        infos.append(info)
        fills.append(env.drain_fills())
    return infos, fills


def test_limit_buy_not_reached_does_not_fill():
    infos, fills = one_order("limit", (100.0, 100.5, 99.5, 100.2))  # limit 99, low 99.5
    assert infos[0]["position"][0, 0] == 0.0 and len(fills[0]) == 0


def test_limit_buy_fills_at_the_limit_when_touched():
    infos, fills = one_order("limit", (99.8, 100.0, 98.5, 99.5))  # limit 99: touched
    f = fills[0]
    assert len(f) == 1 and f["price"][0] == pytest.approx(99.0)
    assert f["order_type"][0] == OrderType.LIMIT


def test_limit_buy_gap_down_fills_at_the_better_open():
    infos, fills = one_order("limit", (98.0, 98.5, 97.5, 98.2))
    assert fills[0]["price"][0] == pytest.approx(98.0)


def test_stop_buy_gap_up_fills_at_the_open():
    infos, fills = one_order("stop", (103.0, 104.0, 102.5, 103.5))  # stop at 101, gapped
    assert fills[0]["price"][0] == pytest.approx(103.0)
    infos, fills = one_order("stop", (100.0, 101.5, 99.9, 101.2))  # touched intrabar
    assert fills[0]["price"][0] == pytest.approx(101.0)


def test_unfilled_order_expires_after_time_in_force():
    o = [100.0] * 40
    df = frame(o, [100.2] * 40, [99.8] * 40, o)
    env = make_env(1, [*ZERO, "execution.order_type=limit", "execution.order_offset_bps=100",
                       "execution.time_in_force=3", "observation.window=2",
                       "env.episode_length=10", "action.order_types=[limit,market]"], data=df)
    env.reset(seed=0, options={"start_bars": np.array([10])})
    same = np.array([[1.0, -1.0]], dtype=np.float32)  # the same limit order each step
    for k in range(4):
        *_, info = env.step(same)
        assert info["risk_events"][0, FillReason.EXPIRED] == (1 if k == 3 else 0)
    assert info["position"][0, 0] == 0.0


def test_action_selects_the_order_type():
    env = make_env(2, [*ZERO, "action.order_types=[market,limit]",
                       "execution.order_offset_bps=1"])
    assert env.single_action_space.shape == (2,)
    env.reset(seed=0, options={"start_bars": np.array([30, 30])})
    *_, info = env.step(np.array([[1.0, -1.0], [1.0, 1.0]], dtype=np.float32))  # market, limit
    fills = env.drain_fills()
    by_env = {int(e): (int(t), float(p)) for e, t, p in fills[["env", "order_type", "price"]]}
    assert by_env[0][0] == OrderType.MARKET
    close = env.market.field("close")[30, 0]
    bar = env.market.bars[:, 31, 0]
    if bar[2] <= close * (1 - 1e-4):  # the limit was reached in the fill bar
        assert by_env[1] == (OrderType.LIMIT, pytest.approx(min(bar[0], close * (1 - 1e-4))))
    else:
        assert 1 not in by_env
    denv = make_env(2, ["action=discrete", "action.order_types=[market,stop]"])
    assert list(denv.single_action_space.nvec) == [3, 2]
    denv.reset(seed=0)
    denv.step(np.array([[2, 0], [2, 1]]))
    with pytest.raises(ValueError, match="expected indices below"):
        denv.step(np.array([[2, 2], [0, 0]]))
