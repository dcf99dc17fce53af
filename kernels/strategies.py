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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _hold(state, i, a, signal):
    """Keep the held position unless the signal says otherwise (NaN: hold)."""
    if signal == signal:
        state[i, 3, a] = signal
    return state[i, 3, a]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def strategy_weights_nb(kind, i, t, bars, params, state, out):
    """Env i's target weights at close t into out[i]; advances its state by bar t."""
    n_assets = bars.shape[2]
    if kind == StrategyId.BUY_AND_HOLD:
        for a in range(n_assets):
            out[i, a] = 1.0
        return
    if kind == StrategyId.PAIRS:
        w = int(params[i, 0])
        x = math.log(bars[BarField.CLOSE, t, 0]) - math.log(bars[BarField.CLOSE, t, 1])
        old = math.log(bars[BarField.CLOSE, t - w, 0]) - math.log(bars[BarField.CLOSE, t - w, 1])
        s = state[i, 0, 0] + x - old
        s2 = state[i, 1, 0] + x * x - old * old
        state[i, 0, 0] = s
        state[i, 1, 0] = s2
        mean = s / w
        var = max(s2 / w - mean * mean, 0.0)
        z = (x - mean) / math.sqrt(var) if var > 0.0 else 0.0
        sig = np.nan
        if z > params[i, 1]:
            sig = -1.0
        elif z < -params[i, 1]:
            sig = 1.0
        elif abs(z) < params[i, 2]:
            sig = 0.0
        pos = _hold(state, i, 0, sig)
        out[i, 0] = 0.5 * pos
        out[i, 1] = -0.5 * pos
        for a in range(2, n_assets):
            out[i, a] = 0.0
        return
    if kind == StrategyId.RANDOM:
        # counter-based: uniforms hashed from (seed, env, bar, asset), so no stream to carry
        seed = np.uint64(np.int64(params[i, 3]))
        for a in range(n_assets):
            key = (seed * _K0 + np.uint64(i) * _K1 + np.uint64(t) * _K2 + np.uint64(a) * _K3)
            u = float(_mix(key) >> np.uint64(11)) * 2.0**-53
            v = float(_mix(key + _K0) >> np.uint64(11)) * 2.0**-53
            if u < params[i, 0]:
                state[i, 3, a] = 2.0 * v - 1.0
            out[i, a] = state[i, 3, a]
        return
    for a in range(n_assets):
        c = bars[BarField.CLOSE, t, a]
        weight = 0.0
        if kind == StrategyId.SMA_CROSS:
            f = int(params[i, 0])
            sl = int(params[i, 1])
            sf = state[i, 0, a] + c - bars[BarField.CLOSE, t - f, a]
            ss = state[i, 1, a] + c - bars[BarField.CLOSE, t - sl, a]
            state[i, 0, a] = sf
            state[i, 1, a] = ss
            up = sf / f > ss / sl
            weight = 1.0 if up else (0.0 if params[i, 2] > 0.0 else -1.0)
        elif kind == StrategyId.EMA_CROSS:
            af = 2.0 / (params[i, 0] + 1.0)
            asl = 2.0 / (params[i, 1] + 1.0)
            ef = state[i, 0, a] + af * (c - state[i, 0, a])
            es = state[i, 1, a] + asl * (c - state[i, 1, a])
            state[i, 0, a] = ef
            state[i, 1, a] = es
            weight = 1.0 if ef > es else (0.0 if params[i, 2] > 0.0 else -1.0)
        elif kind == StrategyId.ZSCORE or kind == StrategyId.BOLLINGER:
            w = int(params[i, 0])
            old = bars[BarField.CLOSE, t - w, a]
            s = state[i, 0, a] + c - old
            s2 = state[i, 1, a] + c * c - old * old
            state[i, 0, a] = s
            state[i, 1, a] = s2
            mean = s / w
            sd = math.sqrt(max(s2 / w - mean * mean, 0.0))
            sig = np.nan
            if kind == StrategyId.ZSCORE:
                z = (c - mean) / sd if sd > 0.0 else 0.0
                if z > params[i, 1]:
                    sig = -1.0
                elif z < -params[i, 1]:
                    sig = 1.0
                elif abs(z) < params[i, 2]:
                    sig = 0.0
            else:
                held = state[i, 3, a]
                if c < mean - params[i, 1] * sd:
                    sig = 1.0
                elif c > mean + params[i, 1] * sd:
                    sig = -1.0
                elif (held > 0.0 and c >= mean) or (held < 0.0 and c <= mean):
                    sig = 0.0
            weight = _hold(state, i, a, sig)
        elif kind == StrategyId.MOMENTUM:
            r = c / bars[BarField.CLOSE, t - int(params[i, 0]), a] - 1.0
            weight = 1.0 if r > 0.0 else (0.0 if params[i, 1] > 0.0 or r == 0.0 else -1.0)
        elif kind == StrategyId.RSI:
            n = params[i, 0]
            d = c - bars[BarField.CLOSE, t - 1, a]
            g = (state[i, 0, a] * (n - 1.0) + max(d, 0.0)) / n
            lo = (state[i, 1, a] * (n - 1.0) + max(-d, 0.0)) / n
            state[i, 0, a] = g
            state[i, 1, a] = lo
            rsi = 100.0 if lo == 0.0 else 100.0 - 100.0 / (1.0 + g / lo)
            held = state[i, 3, a]
            sig = np.nan
            if rsi < params[i, 1]:
                sig = 1.0
            elif rsi > params[i, 2]:
                sig = -1.0
            elif (held > 0.0 and rsi >= 50.0) or (held < 0.0 and rsi <= 50.0):
                sig = 0.0
            weight = _hold(state, i, a, sig)
        out[i, a] = weight


