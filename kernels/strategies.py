"""Rule-based strategies as Numba policies: target weights per env from the market arrays, one
bar at a time, with O(1) state per env (rolling sums, EWMAs), so a grid of thousands of
parameter sets runs as one batch with no indicator tables.

Shapes: bars float64 (5, T, A) (``enums.BarField``); params float64 (n, N_STRATEGY_PARAM), the
meaning of each column per strategy below; state float64 (n, N_STRATEGY_STATE, A) scratch owned
by the strategy; out float64 (n, A) target weights in [-1, 1] (the env scales by max_leverage).

Causality: ``strategy_weights_nb(..., t, ...)`` reads bars <= t only (closes up to and including
bar t), so its weight is a decision at close t, like an agent's action.

Strategies (``StrategyId``) and params (p0, p1, p2, p3):

* BUY_AND_HOLD: weight 1 on every asset (split equally by the env's gross cap).
* SMA_CROSS (fast, slow, long_only): +1 when SMA_fast(close) > SMA_slow(close), else -1 (0 when
  long_only = 1). SMA_w at t = mean of closes t-w+1..t.
* EMA_CROSS (fast, slow, long_only): the same with EMAs, alpha = 2 / (w + 1), seeded with the
  close at the episode start.
* ZSCORE (lookback, entry_z, exit_z): z = (close - SMA) / std (population std over the window);
  enter short above entry_z, long below -entry_z, exit when |z| < exit_z; hold otherwise.
* BOLLINGER (lookback, k, _): long below SMA - k std, short above SMA + k std, flat when the
  close crosses back over the SMA; hold otherwise.
* MOMENTUM (lookback, long_only): sign of close_t / close_{t-lookback} - 1 (time-series
  momentum).
* RSI (period, lower, upper): Wilder RSI over `period`; long below `lower`, short above `upper`,
  flat when it crosses 50; hold otherwise.
* PAIRS (lookback, entry_z, exit_z): two assets, spread s = log close_0 - log close_1 and its
  rolling z-score; z > entry_z: short asset 0, long asset 1 (0.5 each); z < -entry_z the
  opposite; flat when |z| < exit_z.
* RANDOM (p_change, _, _, seed): every bar, with probability p_change, a new uniform weight in
  [-1, 1] per asset; uniforms are hashed from (seed, env, bar, asset), so a run is
  deterministic and independent of the batch.

Windows are whole bars >= 1; the caller guarantees lookback bars of history before the start
(``strategy_warmup``), and the Python layer validates the params.
"""

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from kernels.enums import BarField
from kernels.simulation import _mix_nb as _mix

_K0 = np.uint64(0x9E3779B97F4A7C15)
_K1 = np.uint64(0xBF58476D1CE4E5B9)
_K2 = np.uint64(0x94D049BB133111EB)
_K3 = np.uint64(0xD6E8FEB86659FD93)


class StrategyIdT(NamedTuple):
    BUY_AND_HOLD: int = 0
    SMA_CROSS: int = 1
    EMA_CROSS: int = 2
    ZSCORE: int = 3
    BOLLINGER: int = 4
    MOMENTUM: int = 5
    RSI: int = 6
    PAIRS: int = 7
    RANDOM: int = 8


StrategyId = StrategyIdT()
N_STRATEGY_PARAM = 4
N_STRATEGY_STATE = 4  # per asset: two running sums / EWMAs, and the held position


def strategy_warmup(kind: int, params: np.ndarray) -> int:
    """Bars of history a strategy needs before its first decision (the longest window)."""
    if kind in (StrategyId.SMA_CROSS, StrategyId.EMA_CROSS):
        return int(np.max(params[:, :2]))
    if kind in (StrategyId.ZSCORE, StrategyId.BOLLINGER, StrategyId.MOMENTUM, StrategyId.RSI,
                StrategyId.PAIRS):
        return int(np.max(params[:, 0])) + 1
    return 1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _window_sums(bars, t, w, a, log_spread):
    """Sum and sum of squares of the last w closes (or log spreads) ending at t."""
    s = 0.0
    s2 = 0.0
    for k in range(t - w + 1, t + 1):
        x = bars[BarField.CLOSE, k, a]
        if log_spread:
            x = math.log(bars[BarField.CLOSE, k, 0]) - math.log(bars[BarField.CLOSE, k, 1])
        s += x
        s2 += x * x
    return s, s2


@njit(cache=True, nogil=True, error_model="numpy")
def strategy_init_nb(kind, i, t, bars, params, state):
    """Set env i's state for a first decision at bar t (reads bars <= t)."""
    n_assets = bars.shape[2]
    for k in range(state.shape[1]):
        for a in range(n_assets):
            state[i, k, a] = 0.0
    for a in range(n_assets):
        c = bars[BarField.CLOSE, t, a]
        if kind == StrategyId.SMA_CROSS:
            # sums of the windows ending at t - 1; the step adds bar t
            state[i, 0, a], _ = _window_sums(bars, t - 1, int(params[i, 0]), a, False)
            state[i, 1, a], _ = _window_sums(bars, t - 1, int(params[i, 1]), a, False)
        elif kind == StrategyId.EMA_CROSS:
            state[i, 0, a] = c
            state[i, 1, a] = c
        elif kind in (StrategyId.ZSCORE, StrategyId.BOLLINGER):
            state[i, 0, a], state[i, 1, a] = _window_sums(bars, t - 1, int(params[i, 0]), a,
                                                          False)
        elif kind == StrategyId.RSI:
            n = int(params[i, 0])
            gain = 0.0
            loss = 0.0
            for k in range(t - n, t):  # Wilder's seed: plain means of the first n changes
                d = bars[BarField.CLOSE, k, a] - bars[BarField.CLOSE, k - 1, a]
                gain += max(d, 0.0)
                loss += max(-d, 0.0)
            state[i, 0, a] = gain / n
            state[i, 1, a] = loss / n
    if kind == StrategyId.PAIRS:
        state[i, 0, 0], state[i, 1, 0] = _window_sums(bars, t - 1, int(params[i, 0]), 0, True)


# ---- weights, a block of bars at a time ---------------------------------------------------------
# One plain (not inlined) function per strategy, each a tight loop over bars with its state in
# local variables: called once per block, the dispatch on ``kind`` and Numba's reference counting
# of the array arguments (which an inlined function with loops keeps around every call) cost once
# per block instead of once per bar.


@njit(cache=True, nogil=True, error_model="numpy")
def _buy_and_hold_block(i, t0, nb, bars, params, state, out, row0):
    for k in range(nb):
        for a in range(bars.shape[2]):
            out[row0 + k, a] = 1.0


@njit(cache=True, nogil=True, error_model="numpy")
def _sma_cross_block(i, t0, nb, bars, params, state, out, row0):
    f = int(params[i, 0])
    sl = int(params[i, 1])
    down = 0.0 if params[i, 2] > 0.0 else -1.0
    for a in range(bars.shape[2]):
        sf = state[i, 0, a]
        ss = state[i, 1, a]
        for k in range(nb):
            t = t0 + k
            c = bars[BarField.CLOSE, t, a]
            sf = sf + c - bars[BarField.CLOSE, t - f, a]
            ss = ss + c - bars[BarField.CLOSE, t - sl, a]
            out[row0 + k, a] = 1.0 if sf / f > ss / sl else down
        state[i, 0, a] = sf
        state[i, 1, a] = ss


@njit(cache=True, nogil=True, error_model="numpy")
def _ema_cross_block(i, t0, nb, bars, params, state, out, row0):
    af = 2.0 / (params[i, 0] + 1.0)
    asl = 2.0 / (params[i, 1] + 1.0)
    down = 0.0 if params[i, 2] > 0.0 else -1.0
    for a in range(bars.shape[2]):
        ef = state[i, 0, a]
        es = state[i, 1, a]
        for k in range(nb):
            c = bars[BarField.CLOSE, t0 + k, a]
            ef = ef + af * (c - ef)
            es = es + asl * (c - es)
            out[row0 + k, a] = 1.0 if ef > es else down
        state[i, 0, a] = ef
        state[i, 1, a] = es


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _band_signal(kind, c, mean, sd, p1, p2, held):
    """ZSCORE / BOLLINGER signal at one bar: +1, -1, 0, or NaN to hold (scalars only)."""
    if kind == StrategyId.ZSCORE:
        z = (c - mean) / sd if sd > 0.0 else 0.0
        if z > p1:
            return -1.0
        if z < -p1:
            return 1.0
        if abs(z) < p2:
            return 0.0
        return np.nan
    if c < mean - p1 * sd:
        return 1.0
    if c > mean + p1 * sd:
        return -1.0
    if (held > 0.0 and c >= mean) or (held < 0.0 and c <= mean):
        return 0.0
    return np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def _band_block(kind, i, t0, nb, bars, params, state, out, row0):
    w = int(params[i, 0])
    p1 = params[i, 1]
    p2 = params[i, 2]
    for a in range(bars.shape[2]):
        s = state[i, 0, a]
        s2 = state[i, 1, a]
        held = state[i, 3, a]
        for k in range(nb):
            t = t0 + k
            c = bars[BarField.CLOSE, t, a]
            old = bars[BarField.CLOSE, t - w, a]
            s = s + c - old
            s2 = s2 + c * c - old * old
            mean = s / w
            sd = math.sqrt(max(s2 / w - mean * mean, 0.0))
            sig = _band_signal(kind, c, mean, sd, p1, p2, held)
            if sig == sig:
                held = sig
            out[row0 + k, a] = held
        state[i, 0, a] = s
        state[i, 1, a] = s2
        state[i, 3, a] = held


@njit(cache=True, nogil=True, error_model="numpy")
def _momentum_block(i, t0, nb, bars, params, state, out, row0):
    lb = int(params[i, 0])
    long_only = params[i, 1] > 0.0
    for a in range(bars.shape[2]):
        for k in range(nb):
            t = t0 + k
            r = bars[BarField.CLOSE, t, a] / bars[BarField.CLOSE, t - lb, a] - 1.0
            out[row0 + k, a] = 1.0 if r > 0.0 else (0.0 if long_only or r == 0.0 else -1.0)


@njit(cache=True, nogil=True, error_model="numpy")
def _rsi_block(i, t0, nb, bars, params, state, out, row0):
    n = params[i, 0]
    lower = params[i, 1]
    upper = params[i, 2]
    for a in range(bars.shape[2]):
        g = state[i, 0, a]
        lo = state[i, 1, a]
        held = state[i, 3, a]
        for k in range(nb):
            t = t0 + k
            c = bars[BarField.CLOSE, t, a]
            d = c - bars[BarField.CLOSE, t - 1, a]
            g = (g * (n - 1.0) + max(d, 0.0)) / n
            lo = (lo * (n - 1.0) + max(-d, 0.0)) / n
            rsi = 100.0 if lo == 0.0 else 100.0 - 100.0 / (1.0 + g / lo)
            if rsi < lower:
                held = 1.0
            elif rsi > upper:
                held = -1.0
            elif (held > 0.0 and rsi >= 50.0) or (held < 0.0 and rsi <= 50.0):
                held = 0.0
            out[row0 + k, a] = held
        state[i, 0, a] = g
        state[i, 1, a] = lo
        state[i, 3, a] = held


@njit(cache=True, nogil=True, error_model="numpy")
def _pairs_block(i, t0, nb, bars, params, state, out, row0):
    w = int(params[i, 0])
    entry = params[i, 1]
    exit_ = params[i, 2]
    s = state[i, 0, 0]
    s2 = state[i, 1, 0]
    held = state[i, 3, 0]
    for k in range(nb):
        t = t0 + k
        x = math.log(bars[BarField.CLOSE, t, 0]) - math.log(bars[BarField.CLOSE, t, 1])
        old = math.log(bars[BarField.CLOSE, t - w, 0]) - math.log(bars[BarField.CLOSE, t - w, 1])
        s = s + x - old
        s2 = s2 + x * x - old * old
        mean = s / w
        var = max(s2 / w - mean * mean, 0.0)
        z = (x - mean) / math.sqrt(var) if var > 0.0 else 0.0
        if z > entry:
            held = -1.0
        elif z < -entry:
            held = 1.0
        elif abs(z) < exit_:
            held = 0.0
        out[row0 + k, 0] = 0.5 * held
        out[row0 + k, 1] = -0.5 * held
        for a in range(2, bars.shape[2]):
            out[row0 + k, a] = 0.0
    state[i, 0, 0] = s
    state[i, 1, 0] = s2
    state[i, 3, 0] = held


@njit(cache=True, nogil=True, error_model="numpy")
def _random_block(i, t0, nb, bars, params, state, out, row0):
    # counter-based: uniforms hashed from (seed, env, bar, asset), so no stream to carry
    seed = np.uint64(np.int64(params[i, 3]))
    p = params[i, 0]
    for a in range(bars.shape[2]):
        w = state[i, 3, a]
        for k in range(nb):
            t = t0 + k
            key = (seed * _K0 + np.uint64(i) * _K1 + np.uint64(t) * _K2 + np.uint64(a) * _K3)
            u = float(_mix(key) >> np.uint64(11)) * 2.0**-53
            v = float(_mix(key + _K0) >> np.uint64(11)) * 2.0**-53
            if u < p:
                w = 2.0 * v - 1.0
            out[row0 + k, a] = w
        state[i, 3, a] = w


@njit(cache=True, nogil=True, error_model="numpy")
def strategy_block_nb(kind, i, t0, nb, bars, params, state, out, row0):
    """Env i's target weights at closes t0..t0+nb-1 into out[row0 + k] (k < nb, out float64
    (rows, A)); advances its state by those bars, exactly as nb single-bar calls would."""
    if kind == StrategyId.BUY_AND_HOLD:
        _buy_and_hold_block(i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.SMA_CROSS:
        _sma_cross_block(i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.EMA_CROSS:
        _ema_cross_block(i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.ZSCORE or kind == StrategyId.BOLLINGER:
        _band_block(kind, i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.MOMENTUM:
        _momentum_block(i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.RSI:
        _rsi_block(i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.PAIRS:
        _pairs_block(i, t0, nb, bars, params, state, out, row0)
    elif kind == StrategyId.RANDOM:
        _random_block(i, t0, nb, bars, params, state, out, row0)


@njit(cache=True, nogil=True, error_model="numpy")
def strategy_weights_nb(kind, i, t, bars, params, state, out):
    """Env i's target weights at close t into out[i] (out float64 (n, A)); advances its state by
    bar t."""
    strategy_block_nb(kind, i, t, 1, bars, params, state, out, i)
