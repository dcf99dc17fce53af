"""The fused backtest runner equals stepping the env from Python with the same strategy
weights, bit for bit; fills, frozen envs and parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

import optrader
from kernels.enums import BarField
from kernels.strategies import N_STRATEGY_STATE, StrategyId, strategy_init_nb, strategy_weights_nb
from optrader.backtest import BacktestResult, run_strategy
from optrader.backtest.runner import backtest_metrics
from optrader.metrics import compute_metrics
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


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fused_step"])
@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_runner_equals_python_stepping(fill, lean):
    n = 6
    params = np.array([[3, 10, 0, 0], [5, 20, 0, 0], [2, 7, 1, 0], [4, 30, 0, 0],
                       [10, 40, 1, 0], [1, 2, 0, 0]], dtype=float)
    env = make(n, [f"execution.fill_price={fill}", "execution.commission_bps=2",
                   "data.split.use=all"])
    res = run_strategy(env, "sma_cross", params, lean=lean, rebalance="every_bar")
    n_steps = res.equity.shape[1] - 1
    assert res.start_bar == 40 and n_steps == 400 - 1 - 40
    # the Python reference needs an episode as long as the whole range
    ref_env = make(n, [f"execution.fill_price={fill}", "execution.commission_bps=2",
                       f"env.episode_length={n_steps}", "data.split.use=all"])
    eq, fills = python_loop(ref_env, StrategyId.SMA_CROSS, params, res.start_bar, n_steps)
    np.testing.assert_array_equal(res.equity, eq)
    order = np.lexsort((fills["bar"], fills["env"]))
    for f in ("env", "bar", "asset", "qty", "price", "commission", "slippage", "reason"):
        np.testing.assert_array_equal(res.fills[f], fills[order][f])
    assert (res.steps == n_steps).all()
    assert len(res.fills) > 10


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fused_step"])
def test_a_bankrupt_env_stops_and_its_curve_ends(lean):
    env = make(2, ["env.bankrupt_fraction=0.99", "env.max_leverage=3"], seed=3)
    res = run_strategy(env, "random", [[1.0, 0, 0, 1], [0.0, 0, 0, 1]], lean=lean,
                       rebalance="every_bar")
    stopped = res.steps < res.equity.shape[1] - 1
    assert stopped[0] and not stopped[1]  # env 1 never trades (p_change 0 keeps weight 0)
    k = res.steps[0]
    assert np.isnan(res.equity[0, k + 1:]).all() and np.isfinite(res.equity[0, :k + 1]).all()
    assert res.equity[0, k] <= 0.99 * 100_000 < res.equity[0, k - 1]
    np.testing.assert_array_equal(res.equity[1], 100_000.0)
    assert res.fills["bar"].max() <= res.start_bar + k


def test_lean_and_fused_kernels_agree_on_random_costs_and_strategies():
    """Bit-identical equity, fills, exposure and traded notional across strategies, costs,
    slippage models, lots, shorting rules, carry and both fill prices."""
    rng = np.random.default_rng(5)
    cases = [("sma_cross", [[3, 12, 0, 0], [5, 9, 1, 0], [2, 30, 0, 0]]),
             ("zscore", [[10, 1.0, 0.2, 0], [20, 1.5, 0.0, 0], [5, 0.5, 0.1, 0]]),
             ("random", [[0.3, 0, 0, 1], [0.05, 0, 0, 2], [1.0, 0, 0, 3]]),
             ("rsi", [[5, 30, 70, 0], [14, 40, 60, 0], [3, 20, 80, 0]])]
    for k, (name, params) in enumerate(cases):
        over = [f"execution.fill_price={rng.choice(['next_open', 'close'])}",
                f"execution.commission_bps={rng.uniform(0, 20):.3f}",
                f"execution.slippage_model={rng.choice(['fixed', 'linear_impact', 'sqrt_impact'])}",
                f"execution.lot_size={rng.choice([0, 1, 10])}",
                f"execution.allow_short={bool(rng.integers(2))}",
                f"execution.borrow_bps_annual={rng.uniform(0, 300):.2f}",
                f"execution.cash_rate_annual={rng.uniform(0, 0.05):.4f}",
                f"execution.min_trade_value={rng.choice([0, 500])}",
                f"env.max_leverage={rng.uniform(0.5, 2):.3f}", "data.split.use=all"]
        a = run_strategy(make(3, over, seed=k), name, params, lean=True, rebalance="every_bar")
        b = run_strategy(make(3, over, seed=k), name, params, lean=False, rebalance="every_bar")
        for field in BacktestResult._fields:
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
        assert len(a.fills) > 3, over


@pytest.mark.parametrize("slippage", ["fixed", "sqrt_impact"])
def test_single_asset_envs_equal_one_asset_envs_on_that_column(slippage, monkeypatch):
    from optrader.backtest import runner

    monkeypatch.setattr(runner, "ASSET_BATCH", 2)  # batches {0, 1}, {2}; one shared fill pool
    frame = bars_frame(300, seed=4, n_assets=3)
    cfg = optrader.compose("training", ["observation.window=2", "env.episode_length=50",
                                        "execution.commission_bps=3", "data.split.use=all",
                                        "execution.record_fills=true",
                                        f"execution.slippage_model={slippage}"])
    multi = optrader.make_vec(cfg, num_envs=6, data=frame, parallel=False)
    params = np.array([[3, 10, 0, 0], [5, 20, 1, 0]] * 3, dtype=float)
    assets = np.repeat(np.arange(3), 2)
    res = run_strategy(multi, "sma_cross", params, assets=assets, rebalance="every_bar")
    symbols = multi.market.symbols
    for a in range(3):
        one = optrader.make_vec(cfg, num_envs=2, data=frame[frame["symbol"] == symbols[a]],
                                parallel=False)
        ref = run_strategy(one, "sma_cross", params[2 * a:2 * a + 2], lean=False,
                           rebalance="every_bar")
        np.testing.assert_array_equal(res.equity[2 * a:2 * a + 2], ref.equity)
        mine = res.fills[np.isin(res.fills["env"], [2 * a, 2 * a + 1])]
        np.testing.assert_array_equal(mine["price"], ref.fills["price"])
        np.testing.assert_array_equal(mine["qty"], ref.fills["qty"])
        np.testing.assert_array_equal(mine["slippage"], ref.fills["slippage"])
        assert (mine["asset"] == a).all()
    if slippage == "sqrt_impact":  # the model reads the asset's volume and volatility series
        assert len(np.unique(np.round(res.fills["slippage"] / np.abs(res.fills["qty"])
                                      / res.fills["price"], 12))) > 10
    with pytest.raises(ValueError, match="lean kernel"):
        run_strategy(optrader.make_vec(optrader.compose("training", [
            "observation.window=2", "env.episode_length=50", "risk.max_drawdown=0.5"]),
            num_envs=6, data=frame, parallel=False), "sma_cross", params, assets=assets)


def test_memory_budget_is_checked_before_any_allocation():
    env = make(4)
    with pytest.raises(ValueError, match=r"over the budget of 0.01 MB.*backtest.memory_budget_mb"):
        run_strategy(env, "sma_cross", [[3, 10, 0, 0]] * 4, memory_budget_mb=0.01)


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
    env = make(1, ["execution=zero_cost", "execution.fill_price=close", "data.split.use=all"])
    res = run_strategy(env, "buy_and_hold", [0, 0, 0, 0])
    close = env.market.bars[BarField.CLOSE, res.start_bar:, 0]
    growth = res.equity[0] / res.equity[0, 0]
    np.testing.assert_allclose(growth[1:], close[1:] / close[0], rtol=1e-9)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fused_step"])
def test_exposure_and_turnover_equal_per_bar_notionals(lean):
    """backtest_metrics' exposure/turnover from the run's sums equal compute_metrics fed with
    per-bar gross and traded notionals rebuilt in Python from the env stepped bar by bar."""
    n = 3
    params = np.array([[3, 10, 1, 0], [5, 20, 0, 0], [2, 7, 1, 0]], dtype=float)
    over = ["execution.commission_bps=2", "data.split.use=all"]
    res = run_strategy(make(n, over), "sma_cross", params, lean=lean, rebalance="every_bar")
    n_steps = res.equity.shape[1] - 1
    ref = make(n, [*over, f"env.episode_length={n_steps}"])
    ref.reset(seed=0, options={"start_bars": np.full(n, res.start_bar)})
    bars = ref.market.bars
    state = np.zeros((n, N_STRATEGY_STATE, 1))
    for i in range(n):
        strategy_init_nb(StrategyId.SMA_CROSS, i, res.start_bar, bars, params, state)
    w = np.zeros((n, 1))
    gross = np.zeros((n, n_steps))
    traded = np.zeros((n, n_steps))
    for k in range(n_steps):
        for i in range(n):
            strategy_weights_nb(StrategyId.SMA_CROSS, i, res.start_bar + k, bars, params, state, w)
        ref.step(w.astype(np.float32))
        gross[:, k] = np.abs(ref.portfolio.position[:, 0]) * bars[BarField.CLOSE,
                                                                  res.start_bar + k + 1, 0]
        f = ref.drain_fills()
        np.add.at(traded[:, k], f["env"], np.abs(f["qty"] * f["price"]))
    frame, _ = backtest_metrics(ref, res, periods_per_year=252)
    expect = compute_metrics(res.equity, periods_per_year=252, gross_notional=gross,
                             traded_notional=traded)
    np.testing.assert_allclose(frame["exposure"], expect["exposure"], rtol=0, atol=0)
    np.testing.assert_allclose(frame["turnover"], expect["turnover"], rtol=1e-12)
    assert 0 < frame["exposure"].min() < 1 and frame["turnover"].min() > 0


def test_on_change_trades_only_when_the_signal_changes():
    """rebalance='on_change': one fill per change of the SMA signal (computed here with pandas),
    and between fills the units stay fixed, so equity = cash + units x close exactly."""
    import pandas as pd

    env = make(2, ["execution.fill_price=close", "execution.commission_bps=5",
                   "data.split.use=all"], n_bars=600)
    params = np.array([[3, 12, 1, 0], [5, 20, 0, 0]], dtype=float)
    res = run_strategy(env, "sma_cross", params)
    close = pd.Series(env.market.bars[BarField.CLOSE, :, 0])
    for i, (fast, slow, long_only, _) in enumerate(params):
        up = close.rolling(int(fast)).mean() > close.rolling(int(slow)).mean()
        signal = np.where(up, 1.0, 0.0 if long_only else -1.0)[res.start_bar:-1]
        changed = signal != np.r_[0.0, signal[:-1]]  # from flat, then every signal change
        mine = res.fills[res.fills["env"] == i]
        np.testing.assert_array_equal(mine["bar"], res.start_bar + np.flatnonzero(changed))
        units = np.r_[0.0, np.cumsum(mine["qty"])]
        cash = env.config.env.initial_cash - np.r_[0.0, np.cumsum(mine["qty"] * mine["price"]
                                                                 + mine["commission"])]
        k = np.searchsorted(mine["bar"], np.arange(res.start_bar, res.start_bar + len(signal)),
                            side="right")
        c = close.to_numpy()[res.start_bar + 1:res.start_bar + 1 + len(signal)]
        np.testing.assert_allclose(res.equity[i, 1:], cash[k] + units[k] * c, rtol=1e-12)
    every = run_strategy(make(2, ["execution.fill_price=close", "execution.commission_bps=5",
                                  "data.split.use=all"], n_bars=600), "sma_cross", params,
                         rebalance="every_bar")
    assert len(every.fills) > 3 * len(res.fills)  # rebalancing to the weight trades every bar


def test_envs_that_fill_the_default_buffer_run_again_with_room(monkeypatch):
    from optrader.backtest import runner

    params = np.array([[2, 5, 0, 0], [50, 300, 1, 0], [3, 7, 0, 0]], dtype=float)
    over = ["execution.commission_bps=1", "data.split.use=all"]
    roomy = run_strategy(make(3, over, n_bars=1500), "sma_cross", params, fill_cap=3000)
    monkeypatch.setattr(runner, "FILL_BUFFER_BYTES", 1)  # the minimum cap: 16 records per env
    small = run_strategy(make(3, over, n_bars=1500), "sma_cross", params)
    # env 0 overflows its share of the pool and runs again with room for exactly its fills
    assert roomy.fill_count[0] > 16 * 4 and roomy.fill_count[1] < 16
    for field in BacktestResult._fields:
        np.testing.assert_array_equal(getattr(small, field), getattr(roomy, field),
                                      err_msg=field)


def test_interleaved_single_asset_envs_and_small_pools_keep_every_record(monkeypatch):
    """Envs of one asset that are not consecutive rows, batches of assets, and a fill pool too
    small for some envs: the result equals a roomy run of the same envs in asset-major order
    (one batch, records compacted in place)."""
    from optrader.backtest import runner

    frame = bars_frame(500, seed=9, n_assets=3)
    cfg = optrader.compose("training", ["observation.window=2", "execution.commission_bps=1",
                                        "data.split.use=all"])
    params = np.array([[2, 5, 0, 0], [20, 60, 1, 0], [3, 9, 0, 0]] * 3, dtype=float)
    assets = np.array([2, 0, 1, 1, 2, 0, 0, 1, 2])
    order = np.argsort(assets, kind="stable")
    roomy = run_strategy(optrader.make_vec(cfg, num_envs=9, data=frame, parallel=False),
                         "sma_cross", params[order], assets=assets[order], fill_cap=2000,
                         parallel=True)
    monkeypatch.setattr(runner, "FILL_BUFFER_BYTES", 1)
    monkeypatch.setattr(runner, "ASSET_BATCH", 2)  # two kernel calls: assets {0, 1}, {2}
    tight = run_strategy(optrader.make_vec(cfg, num_envs=9, data=frame, parallel=False),
                         "sma_cross", params, assets=assets, parallel=True)
    back = np.argsort(order)  # row of env i of `tight` in `roomy`
    np.testing.assert_array_equal(tight.equity, roomy.equity[back])
    np.testing.assert_array_equal(tight.fill_count, roomy.fill_count[back])
    assert tight.fill_count.max() > 16  # some envs overflowed the 16-record share
    for i in range(9):
        mine = tight.fills[tight.fills["env"] == i]
        ref = roomy.fills[roomy.fills["env"] == back[i]]
        for field in ("bar", "asset", "qty", "price", "commission", "slippage"):
            np.testing.assert_array_equal(mine[field], ref[field], err_msg=field)
    assert (np.diff(tight.fills["env"]) >= 0).all()  # env-major


def test_a_fill_cap_below_an_envs_fills_is_refused():
    params = np.array([[2, 5, 0, 0], [50, 300, 1, 0]], dtype=float)
    with pytest.raises(RuntimeError, match=r"env 0 made \d+ fills, over the fill_cap of 10"):
        run_strategy(make(2, ["data.split.use=all"], n_bars=600), "sma_cross", params,
                     fill_cap=10)


def test_a_backtest_never_computes_the_observation_features():
    from kernels.features import compute_features_nb

    env = make(2, ["data.split.use=all"], n_bars=300)
    run_strategy(env, "sma_cross", np.array([[3, 10, 0, 0], [5, 20, 1, 0]], dtype=float))
    assert env._feature_cache is None  # lean run: no observations, so no features
    env.reset(seed=0)
    want = np.empty_like(env._features)
    spec = env.config
    compute_features_nb(env.market.bars, env._feature_args[0], spec.observation.ewma_halflife,
                        spec.observation.clip, want)
    np.testing.assert_array_equal(env._features, want)
