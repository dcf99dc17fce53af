"""Strategy kernels vs plain-Python references that recompute each indicator from scratch at
every bar (pandas where it has the indicator), on random walks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from kernels.enums import BarField
from kernels.portfolio import target_weights_nb, target_weights_rows_nb
from kernels.strategies import (
    N_STRATEGY_PARAM,
    N_STRATEGY_STATE,
    StrategyId,
    strategy_block_nb,
    strategy_init_nb,
    strategy_warmup,
    strategy_weights_nb,
)


@njit(cache=True)
def run_nb(kind, t0, bars, params, out):
    """Weights of every env at bars t0..T-1 into out (n, T, A)."""
    n = params.shape[0]
    state = np.zeros((n, N_STRATEGY_STATE, bars.shape[2]))
    w = np.zeros((n, bars.shape[2]))
    for i in range(n):
        strategy_init_nb(kind, i, t0, bars, params, state)
    for t in range(t0, bars.shape[1]):
        for i in range(n):
            strategy_weights_nb(kind, i, t, bars, params, state, w)
            for a in range(bars.shape[2]):
                out[i, t, a] = w[i, a]


def walk(seed, n_bars=300, n_assets=1):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, n_assets)), axis=0))
    bars = np.empty((5, n_bars, n_assets))
    bars[BarField.OPEN] = np.vstack([close[:1], close[:-1]])
    bars[BarField.HIGH] = np.maximum(bars[BarField.OPEN], close) * 1.01
    bars[BarField.LOW] = np.minimum(bars[BarField.OPEN], close) * 0.99
    bars[BarField.CLOSE] = close
    bars[BarField.VOLUME] = 1e6
    return bars


def run(kind, bars, params):
    params = np.asarray(params, dtype=np.float64).reshape(-1, N_STRATEGY_PARAM)
    t0 = strategy_warmup(kind, params)
    out = np.full((params.shape[0], bars.shape[1], bars.shape[2]), np.nan)
    run_nb(kind, t0, bars, params, out)
    return t0, out


def held(signals):
    """Forward-fill a signal list where None means 'keep the last position' (start flat)."""
    pos, out = 0.0, []
    for s in signals:
        if s is not None:
            pos = s
        out.append(pos)
    return np.array(out)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fast=st.integers(1, 20), extra=st.integers(1, 30),
       long_only=st.booleans())
def test_sma_cross_matches_pandas_rolling_means(seed, fast, extra, long_only):
    bars = walk(seed)
    slow = fast + extra
    t0, out = run(StrategyId.SMA_CROSS, bars, [fast, slow, float(long_only), 0])
    c = pd.Series(bars[BarField.CLOSE, :, 0])
    up = (c.rolling(fast).mean() > c.rolling(slow).mean()).to_numpy()
    want = np.where(up, 1.0, 0.0 if long_only else -1.0)
    # the kernel's means are pandas' bit for bit: no tolerance (ties: test_strategy_ties.py)
    np.testing.assert_array_equal(out[0, t0:, 0], want[t0:])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fast=st.integers(2, 20), extra=st.integers(1, 30))
def test_ema_cross_matches_pandas_ewm(seed, fast, extra):
    bars = walk(seed)
    slow = fast + extra
    t0, out = run(StrategyId.EMA_CROSS, bars, [fast, slow, 0, 0])
    c = pd.Series(bars[BarField.CLOSE, t0:, 0])
    ef = c.ewm(span=fast, adjust=False).mean().to_numpy()
    es = c.ewm(span=slow, adjust=False).mean().to_numpy()
    want = np.where(ef > es, 1.0, -1.0)
    ok = np.abs(ef - es) > 1e-9 * c.to_numpy()
    np.testing.assert_array_equal(out[0, t0:, 0][ok], want[ok])


def ref_zscore(close, t0, w, entry, exit_, bollinger=False, k=2.0):
    sig = []
    pos = 0.0
    for t in range(t0, len(close)):
        win = close[t - w + 1:t + 1]
        m, sd = win.mean(), win.std()
        c = close[t]
        s = None
        if bollinger:
            if c < m - k * sd:
                s = 1.0
            elif c > m + k * sd:
                s = -1.0
            elif (pos > 0 and c >= m) or (pos < 0 and c <= m):
                s = 0.0
        else:
            z = (c - m) / sd if sd > 0 else 0.0
            if z > entry:
                s = -1.0
            elif z < -entry:
                s = 1.0
            elif abs(z) < exit_:
                s = 0.0
        if s is not None:
            pos = s
        sig.append(pos)
    return np.array(sig)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), w=st.integers(2, 40), entry=st.floats(0.5, 2.5),
       exit_=st.floats(0.0, 0.5))
def test_zscore_and_bollinger_match_a_from_scratch_reference(seed, w, entry, exit_):
    bars = walk(seed)
    close = bars[BarField.CLOSE, :, 0]
    t0, out = run(StrategyId.ZSCORE, bars, [w, entry, exit_, 0])
    np.testing.assert_array_equal(out[0, t0:, 0], ref_zscore(close, t0, w, entry, exit_))
    t0, out = run(StrategyId.BOLLINGER, bars, [w, entry, 0, 0])
    np.testing.assert_array_equal(out[0, t0:, 0],
                                  ref_zscore(close, t0, w, 0, 0, bollinger=True, k=entry))


@pytest.mark.parametrize("long_only", [0.0, 1.0])
def test_momentum_is_the_sign_of_the_lookback_return(long_only):
    bars = walk(3)
    t0, out = run(StrategyId.MOMENTUM, bars, [20, long_only, 0, 0])
    r = pd.Series(bars[BarField.CLOSE, :, 0]).pct_change(20).to_numpy()
    want = np.where(r > 0, 1.0, 0.0 if long_only else -1.0)
    np.testing.assert_array_equal(out[0, t0:, 0], want[t0:])


def test_rsi_matches_wilders_recursion_and_its_rules():
    bars = walk(5)
    close = bars[BarField.CLOSE, :, 0]
    n, lower, upper = 14, 30.0, 70.0
    t0, out = run(StrategyId.RSI, bars, [n, lower, upper, 0])
    d = np.diff(close)
    gain = np.mean(np.maximum(d[t0 - n - 1:t0 - 1], 0))
    loss = np.mean(np.maximum(-d[t0 - n - 1:t0 - 1], 0))
    signals = []
    pos = 0.0
    for t in range(t0, len(close)):
        gain = (gain * (n - 1) + max(d[t - 1], 0)) / n
        loss = (loss * (n - 1) + max(-d[t - 1], 0)) / n
        rsi = 100.0 if loss == 0 else 100 - 100 / (1 + gain / loss)
        s = None
        if rsi < lower:
            s = 1.0
        elif rsi > upper:
            s = -1.0
        elif (pos > 0 and rsi >= 50) or (pos < 0 and rsi <= 50):
            s = 0.0
        signals.append(s)
        pos = s if s is not None else pos
    np.testing.assert_allclose(out[0, t0:, 0], held(signals))


def test_pairs_trades_the_spread_zscore_on_two_assets():
    bars = walk(7, n_assets=3)
    t0, out = run(StrategyId.PAIRS, bars, [30, 1.5, 0.25, 0])
    spread = np.log(bars[BarField.CLOSE, :, 0]) - np.log(bars[BarField.CLOSE, :, 1])
    pos = ref_zscore(spread, t0, 30, 1.5, 0.25)
    np.testing.assert_allclose(out[0, t0:, 0], 0.5 * pos)
    np.testing.assert_allclose(out[0, t0:, 1], -0.5 * pos)
    assert (out[0, t0:, 2] == 0).all()
    assert (pos != 0).any()  # the test exercises entries


def test_random_is_deterministic_and_independent_of_the_batch():
    bars = walk(9, n_assets=2)
    params = np.array([[0.1, 0, 0, 42], [0.1, 0, 0, 42], [0.5, 0, 0, 7]])
    t0, out = run(StrategyId.RANDOM, bars, params)
    _, again = run(StrategyId.RANDOM, bars, params)
    np.testing.assert_array_equal(out, again)
    assert np.abs(out[:, t0:]).max() <= 1.0
    # env 1 has other draws than env 0 (env index in the hash) but the same change rate
    assert not np.array_equal(out[0], out[1])
    changes = np.mean(np.diff(out[2, t0:, 0]) != 0)
    assert 0.35 < changes < 0.65
    # alone in a batch of one, env 0 (same params, index 0) gives the same weights
    _, alone = run(StrategyId.RANDOM, bars, params[:1])
    np.testing.assert_array_equal(alone[0], out[0])


def test_buy_and_hold_is_always_fully_long():
    bars = walk(1, n_assets=2)
    t0, out = run(StrategyId.BUY_AND_HOLD, bars, [0, 0, 0, 0])
    assert (out[0, t0:] == 1.0).all()


@pytest.mark.parametrize("kind", [StrategyId.SMA_CROSS, StrategyId.ZSCORE, StrategyId.RSI,
                                  StrategyId.MOMENTUM])
def test_weights_use_no_future_bar(kind):
    """Changing every bar after t leaves the weights up to t unchanged."""
    bars = walk(11)
    params = {StrategyId.SMA_CROSS: [5, 20, 0, 0], StrategyId.ZSCORE: [20, 1.0, 0.2, 0],
              StrategyId.RSI: [14, 30, 70, 0], StrategyId.MOMENTUM: [10, 0, 0, 0]}[kind]
    t0, out = run(kind, bars, params)
    cut = 150
    future = bars.copy()
    future[:, cut + 1:] *= np.exp(np.random.default_rng(0).normal(0, 0.1, (300 - cut - 1, 1)))
    _, out2 = run(kind, future, params)
    np.testing.assert_array_equal(out[0, t0:cut + 1], out2[0, t0:cut + 1])


BLOCK_PARAMS = {
    StrategyId.BUY_AND_HOLD: [0, 0, 0, 0], StrategyId.SMA_CROSS: [3, 11, 0, 0],
    StrategyId.EMA_CROSS: [4, 12, 1, 0], StrategyId.ZSCORE: [15, 1.0, 0.3, 0],
    StrategyId.BOLLINGER: [15, 1.5, 0, 0], StrategyId.MOMENTUM: [7, 0, 0, 0],
    StrategyId.RSI: [9, 35, 65, 0], StrategyId.PAIRS: [12, 1.0, 0.2, 0],
    StrategyId.RANDOM: [0.2, 0, 0, 7],
}


@pytest.mark.parametrize("kind", list(BLOCK_PARAMS))
def test_a_block_of_bars_equals_single_bar_calls(kind):
    """strategy_block_nb over blocks of random sizes gives the single-bar weights bit for bit
    and leaves the same state (the lean backtest kernel runs blocks, the fused step single
    bars)."""
    bars = walk(5, n_assets=3)
    params = np.array([BLOCK_PARAMS[kind]] * 2, dtype=np.float64)
    t0, single = run(kind, bars, params)
    state = np.zeros((2, N_STRATEGY_STATE, 3))
    block = np.full_like(single, np.nan)
    rng = np.random.default_rng(kind)
    for i in range(2):
        strategy_init_nb(kind, i, t0, bars, params, state)
        t = t0
        while t < bars.shape[1]:
            nb = int(min(rng.integers(1, 40), bars.shape[1] - t))
            buf = np.full((50, 3), np.nan)
            strategy_block_nb(kind, i, t, nb, bars, params, state, buf, 3)
            block[i, t:t + nb] = buf[3:3 + nb]
            t += nb
    np.testing.assert_array_equal(block[:, t0:], single[:, t0:])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_assets=st.integers(1, 5),
       lev=st.sampled_from([0.5, 1.0, 2.0]))
def test_target_weights_rows_equal_the_per_row_kernel(seed, n_assets, lev):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1.0, (17, n_assets))
    want = np.empty_like(w)
    for r in range(w.shape[0]):
        target_weights_nb(w, r, lev, want)
    got = w.copy()
    target_weights_rows_nb(got, 12, lev)
    np.testing.assert_array_equal(got[:12], want[:12])
    np.testing.assert_array_equal(got[12:], w[12:])  # rows past n_rows untouched
