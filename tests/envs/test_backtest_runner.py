"""The fused backtest runner equals stepping the env from Python with the same strategy
weights, bit for bit; fills, frozen envs and parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

import optrader
from kernels.enums import BarField
from kernels.strategies import N_STRATEGY_STATE, StrategyId, strategy_init_nb, strategy_weights_nb
from optrader.backtest import run_strategy
from tests.envs.conftest import bars_frame


def make(n, overrides=(), n_bars=400, seed=0):
    cfg = optrader.compose("training", ["observation.window=2", "env.episode_length=50",
                                        "execution.record_fills=true", *overrides])
    return optrader.make_vec(cfg, num_envs=n, data=bars_frame(n_bars, seed=seed),
                             parallel=False)


def python_loop(env, kind, params, start, n_steps):
    """Reference: reset at `start`, then step from Python with weights from the same strategy
    kernel, collecting equity and fills."""
    n = env.num_envs
    env.reset(seed=0, options={"start_bars": np.full(n, start)})
    bars = env.market.bars
    state = np.zeros((n, N_STRATEGY_STATE, bars.shape[2]))
    for i in range(n):
        strategy_init_nb(kind, i, start, bars, params, state)
    w = np.zeros((n, bars.shape[2]))
    equity = [env.portfolio.acct[:, 1].copy()]
    fills = []
    for k in range(n_steps):
        t = start + k
        for i in range(n):
            strategy_weights_nb(kind, i, t, bars, params, state, w)
        env.step(w.astype(np.float32))
        equity.append(env.portfolio.acct[:, 1].copy())
        fills.append(env.drain_fills())
    return np.stack(equity, axis=1), np.concatenate(fills)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_runner_equals_python_stepping(fill):
    n = 6
    params = np.array([[3, 10, 0, 0], [5, 20, 0, 0], [2, 7, 1, 0], [4, 30, 0, 0],
                       [10, 40, 1, 0], [1, 2, 0, 0]], dtype=float)
    env = make(n, [f"execution.fill_price={fill}", "execution.commission_bps=2",
                   "data.split.use=all"])
    res = run_strategy(env, "sma_cross", params)
    n_steps = res.equity.shape[1] - 1
    assert res.start_bar == 40 and n_steps == 400 - 1 - 40
    # the Python reference needs an episode as long as the whole range
    ref_env = make(n, [f"execution.fill_price={fill}", "execution.commission_bps=2",
                       f"env.episode_length={n_steps}"])
    eq, fills = python_loop(ref_env, StrategyId.SMA_CROSS, params, res.start_bar, n_steps)
    np.testing.assert_array_equal(res.equity, eq)
    order = np.lexsort((fills["bar"], fills["env"]))
    for f in ("env", "bar", "asset", "qty", "price", "commission", "slippage", "reason"):
        np.testing.assert_array_equal(res.fills[f], fills[order][f])
    assert (res.steps == n_steps).all()
    assert len(res.fills) > 10


def test_a_bankrupt_env_stays_frozen_and_its_curve_flat():
    env = make(2, ["env.bankrupt_fraction=0.99", "env.max_leverage=3"], seed=3)
    res = run_strategy(env, "random", [[1.0, 0, 0, 1], [0.0, 0, 0, 1]])
    stopped = res.steps < res.equity.shape[1] - 1
    assert stopped[0] and not stopped[1]  # env 1 never trades (p_change 0 keeps weight 0)
    k = res.steps[0]
    assert (res.equity[0, k:] == res.equity[0, k]).all()
    assert res.equity[0, k] <= 0.99 * 100_000
    np.testing.assert_array_equal(res.equity[1], 100_000.0)


def test_parallel_runner_is_bit_identical_to_serial():
    params = np.column_stack([np.arange(1, 9), np.arange(1, 9) * 4, np.zeros(8), np.zeros(8)])
    a = run_strategy(make(8), "sma_cross", params, parallel=False)
    b = run_strategy(make(8), "sma_cross", params, parallel=True)
    np.testing.assert_array_equal(a.equity, b.equity)
    np.testing.assert_array_equal(a.fills, b.fills)


def test_bad_params_are_refused_before_any_work():
    env = make(2)
    with pytest.raises(ValueError, match="unknown name 'smacross'"):
        run_strategy(env, "smacross", [[1, 2, 0, 0]] * 2)
    with pytest.raises(ValueError, match=r"expected shape \(2, <= 4\)"):
        run_strategy(env, "sma_cross", np.ones((3, 4)))
    with pytest.raises(ValueError, match="fast.*whole bars"):
        run_strategy(env, "sma_cross", [[1.5, 4, 0, 0]] * 2)
    with pytest.raises(ValueError, match="pairs: expected at least 2 assets"):
        run_strategy(env, "pairs", [[10, 2, 0.5, 0]] * 2)
    with pytest.raises(ValueError, match="NaN"):
        run_strategy(env, "momentum", [[np.nan, 0, 0, 0]] * 2)


def test_buy_and_hold_equity_follows_the_close_without_costs():
    env = make(1, ["execution=zero_cost", "execution.fill_price=close"])
    res = run_strategy(env, "buy_and_hold", [0, 0, 0, 0])
    close = env.market.bars[BarField.CLOSE, res.start_bar:, 0]
    growth = res.equity[0] / res.equity[0, 0]
    np.testing.assert_allclose(growth[1:], close[1:] / close[0], rtol=1e-9)
