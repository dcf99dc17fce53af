"""Rolling statistics on prices quoted to fixed decimals: the strategy kernels decide exactly as
pandas' rolling means do (``kernels.strategies``' contract), exact ties included, on long series
where a plain running sum has drifted, from any start bar and in blocks as in the lean kernel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from kernels.strategies import (
    N_STRATEGY_STATE,
    StrategyId,
    strategy_block_nb,
    strategy_init_nb,
)
from tests.kernels.test_strategies import run_nb  # one bar per call (the fused step's way)


@njit(cache=True)
def block_weights_nb(kind, t0, bars, params, out):
    """Weights of every env at bars t0..T-1 into out (n, T, A), 256 bars per block call (the
    lean backtest kernel's way)."""
    n, n_bars = params.shape[0], bars.shape[1]
    state = np.zeros((n, N_STRATEGY_STATE, bars.shape[2]))
    buf = np.zeros((256, bars.shape[2]))
    for i in range(n):
        strategy_init_nb(kind, i, t0, bars, params, state)
        t = t0
        while t < n_bars:
            nb = min(256, n_bars - t)
            strategy_block_nb(kind, i, t, nb, bars, params, state, buf, 0)
            for k in range(nb):
                for a in range(bars.shape[2]):
                    out[i, t + k, a] = buf[k, a]
            t += nb


def weights(kind, close, params, t0, blocks=True):
    """float64 (n, T) weights of a one-asset close series from bar t0 (NaN before)."""
    bars = np.repeat(close[None, :, None], 5, axis=0)
    params = np.asarray(params, dtype=np.float64).reshape(-1, 4)
    out = np.full((params.shape[0], close.size, 1), np.nan)
    (block_weights_nb if blocks else run_nb)(kind, t0, bars, params, out)
    return out[:, :, 0]


def tick_walk(rng, n, start_ticks):
    """Integer ticks of a random walk (steps of -3..3 ticks), floored at 10% of the start."""
    return np.maximum(np.cumsum(rng.integers(-3, 4, n)) + start_ticks, start_ticks // 10)


def plant_sma_ties(ticks, fast, slow, every, rng):
    """Edit ticks in place so that the fast and slow means tie exactly at about every
    ``every``-th bar: the tick at t (in both windows) and one in the slow window only are set so
    that sum_fast * slow == sum_slow * fast in integers. Returns the tie bars."""
    g = slow - fast
    ties = []
    for t in range(slow + 1, ticks.size, every):
        t = int(t + rng.integers(0, every // 2))
        if t >= ticks.size:
            break
        for _ in range(g):  # nudge a tick only the slow window holds until it divides
            f_sum = int(ticks[t - fast + 1:t].sum())  # without bar t
            s_sum = int(ticks[t - slow + 1:t].sum())
            num = s_sum * fast - f_sum * slow  # d * (slow - fast) with d the tick at t
            if num % g == 0 and num // g > 0:
                ticks[t] = num // g
                ties.append(t)
                break
            ticks[t - fast] += 1
    ties = np.array(ties)
    f = pd.Series(ticks).rolling(fast).sum().to_numpy()[ties]
    s = pd.Series(ticks).rolling(slow).sum().to_numpy()[ties]
    assert (f * slow == s * fast).all()  # exact in integers: every planted bar is a tie
    return ties


def pandas_sma_signal(close, fast, slow, long_only):
    c = pd.Series(close)
    up = (c.rolling(fast).mean() > c.rolling(slow).mean()).to_numpy()
    return np.where(up, 1.0, 0.0 if long_only else -1.0)


@pytest.mark.parametrize("decimals, start, fast, slow", [
    (5, 1.10000, 3, 7),  # FX quoted to 5 decimals
    (5, 1.30000, 10, 50),
    (2, 100.00, 5, 20),  # equities in cents
    (2, 45.50, 4, 6),
])
def test_sma_cross_decides_planted_ties_as_pandas_on_100k_bars(decimals, start, fast, slow):
    rng = np.random.default_rng(decimals * 1000 + fast)
    q = 10 ** decimals
    ticks = tick_walk(rng, 100_000, int(round(start * q)))
    ties = plant_sma_ties(ticks, fast, slow, 97, rng)
    assert ties.size > 900
    close = ticks / q  # what a loader makes of the quoted text
    assert np.array_equal(np.round(close, decimals), close)
    t0 = slow
    got = weights(StrategyId.SMA_CROSS, close, [[fast, slow, 0, 0], [fast, slow, 1, 0]], t0)
    for row, long_only in ((0, False), (1, True)):
        want = pandas_sma_signal(close, fast, slow, long_only)
        np.testing.assert_array_equal(got[row, t0:], want[t0:])
    # the ties pandas sees as ties (equal means) are not "above"
    c = pd.Series(close)
    equal = (c.rolling(fast).mean() == c.rolling(slow).mean()).to_numpy()[ties]
    assert equal.mean() > 0.5
    assert (got[0, ties[equal]] == -1.0).all()


def test_sma_cross_from_a_late_start_equals_pandas_over_the_whole_column():
    """The rolling sums are replayed from bar 0, as pandas sums the whole column: a first
    decision at bar 60,000 (a test split) decides as pandas over the full series."""
    rng = np.random.default_rng(5)
    ticks = tick_walk(rng, 80_000, 130_000)
    plant_sma_ties(ticks, 2, 3, 11, rng)
    close = ticks / 1e5
    t0 = 60_000
    got = weights(StrategyId.SMA_CROSS, close, [2, 3, 0, 0], t0)
    np.testing.assert_array_equal(got[0, t0:], pandas_sma_signal(close, 2, 3, False)[t0:])
    # the per-bar kernel (the fused step) gives the same weights
    step = weights(StrategyId.SMA_CROSS, close, [2, 3, 0, 0], t0, blocks=False)
    np.testing.assert_array_equal(step[0, t0:], got[0, t0:])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), fast=st.integers(1, 30), extra=st.integers(1, 60),
       decimals=st.sampled_from([None, 2, 4, 5]), start=st.integers(0, 500))
def test_sma_cross_equals_pandas_on_random_series(seed, fast, extra, decimals, start):
    """No tolerance: every bar, near ties included, on continuous or quoted prices."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.002, 3000)))
    if decimals is not None:
        close = np.round(close, decimals)
    slow = fast + extra
    t0 = slow + start
    got = weights(StrategyId.SMA_CROSS, close, [fast, slow, 0, 0], t0)
    np.testing.assert_array_equal(got[0, t0:], pandas_sma_signal(close, fast, slow, False)[t0:])


def pandas_band_decisions(close, w, p1, p2, kind, t0, held):
    """ZSCORE / BOLLINGER position at each bar >= t0 from pandas' rolling mean and population
    std, given the position ``held`` at the bar before (float64 (T,)), and a mask of the bars
    whose close is within 1e-9 of a band edge (mean +- p1 std, or |z| at a threshold): the std
    agrees with pandas' to ~1e-9 relative only (pandas' own std is that far off on quoted
    prices with exact integer tick deviations), so those are not ties of means."""
    c = pd.Series(close)
    mean = c.rolling(w).mean().to_numpy()
    sd = c.rolling(w).std(ddof=0).to_numpy()
    out = np.full(close.size, np.nan)
    near = np.zeros(close.size, dtype=bool)
    for t in range(t0, close.size):
        x, m, s, pos = close[t], mean[t], sd[t], held[t - 1] if t > t0 else 0.0
        sig = None
        if kind == StrategyId.ZSCORE:
            z = (x - m) / s if s > 0 else 0.0
            edges = (p1, p2) if p2 > 0 else (p1,)  # |z| < 0 is never true: no edge
            near[t] = s > 1e-9 * x and min(abs(abs(z) - e) for e in edges) < 1e-6
            sig = -1.0 if z > p1 else 1.0 if z < -p1 else 0.0 if abs(z) < p2 else None
        else:
            edge = min(abs(x - (m - p1 * s)), abs(x - (m + p1 * s)))
            near[t] = edge < 1e-9 * x and s > 1e-9 * x  # a flat window's tiny std is no edge
            if x < m - p1 * s:
                sig = 1.0
            elif x > m + p1 * s:
                sig = -1.0
            elif (pos > 0 and x >= m) or (pos < 0 and x <= m):
                sig = 0.0
        out[t] = pos if sig is None else sig
    return out, near


def quoted_with_flats_and_swings(rng, n, decimals, start):
    """Quoted prices with flat stretches (identical closes, the std is 0 and the close equals
    the mean) and two-value swings (the close returns exactly to the mean)."""
    q = 10 ** decimals
    ticks = tick_walk(rng, n, int(start * q))
    for t in range(100, n - 80, 400):
        ticks[t:t + int(rng.integers(20, 70))] = ticks[t]
    for t in range(300, n - 40, 400):
        a, b = ticks[t], ticks[t] + int(rng.integers(1, 9))
        ticks[t:t + 30:2], ticks[t + 1:t + 30:2] = a, b
    return ticks / q


@pytest.mark.parametrize("kind, p1, p2", [(StrategyId.BOLLINGER, 2.0, 0.0),
                                          (StrategyId.BOLLINGER, 0.5, 0.0),
                                          (StrategyId.ZSCORE, 1.5, 0.25),
                                          (StrategyId.ZSCORE, 1.2, 0.0)])
@pytest.mark.parametrize("decimals, start", [(5, 1.2), (2, 80.0)])
def test_bands_decide_as_pandas_on_quoted_prices_with_flat_windows(kind, p1, p2, decimals,
                                                                   start):
    rng = np.random.default_rng(decimals + int(10 * p1))
    close = quoted_with_flats_and_swings(rng, 100_000, decimals, start)
    for w in (2, 10, 20):
        t0 = w + 1
        got = weights(kind, close, [w, p1, p2, 0], t0)[0]
        want, near = pandas_band_decisions(close, w, p1, p2, kind, t0, got)
        assert near.mean() < 0.1  # exact band-edge ties of quoted prices: some, not most
        np.testing.assert_array_equal(got[t0:][~near[t0:]], want[t0:][~near[t0:]])


@pytest.mark.parametrize("seed", range(6))
def test_flat_window_has_zero_deviation_and_no_band_entry(seed):
    """Identical closes after a long quoted history: the mean is the close and the std 0, so a
    zero-width band is not crossed (Bollinger: flat, the close is back at the mean) and z is 0
    (z-score with entry 0: hold). A drifted mean 1 ulp off the close was a spurious entry."""
    rng = np.random.default_rng(seed)
    close = tick_walk(rng, 20_000, 110_000) / 1e5
    close[-50:] = close[-51]
    got = weights(StrategyId.BOLLINGER, close, [10, 0.0, 0, 0], 19_000)
    assert (got[0, -40:] == 0.0).all()
    z = weights(StrategyId.ZSCORE, close, [10, 0.0, 0.0, 0], 19_000)
    assert (z[0, -40:] == z[0, -41]).all()
