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
(``strategy_warmup``), and the Python layer validates the params (the parameter table,
``optrader.research_config.STRATEGY_SPECS``).

Rolling means (the SMAs, the band, z-score and pairs means) are pandas' ``rolling(w).mean()``
operation for operation: a running sum with separate Kahan compensations for the values added
and removed, accumulated from bar 0 of ``bars`` as pandas does over the whole close column, and
the mean of a window of identical values is that value. So each mean, and each decision on
means (the SMA cross, ``close`` against a band's mean; ties on prices quoted to fixed decimals
included), equals pandas' on that column bit for bit, where a plain running sum drifts by
rounding and turns an exact tie into "above". (A freshly summed window is not that answer
either: pandas itself decides ~1/6 of exact decimal ties "above", by its last bit, and that is
what pandas-based engines trade on.) Standard deviations are population (ddof=0) Welford with a
Kahan-compensated mean, exactly 0 over identical values; they agree with pandas'
``rolling(w).std(ddof=0)`` to ~1e-15 relative, not bit for bit (pandas' own algorithm differs
between versions). ``strategy_init_nb`` replays bars 0..t-1 once (O(t)); each later bar costs O(1)
with O(1) state.
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
N_STRATEGY_STATE = 11  # per asset: rolling sums and their compensations, run length, held
# state slots (per env and asset)
_FAST, _SLOW = 0, 3  # SMA_CROSS: sum, add compensation, remove compensation of each window
_SUM = 0  # bands and pairs: the mean's sum and its two compensations (slots 0-2)
_VMEAN = 3  # bands and pairs: Welford mean, sum of squared deviations, two compensations (3-6)
_RUN = 7  # length of the run of identical trailing values (closes or spreads)
_PREV = 8  # the last value (pandas' prev_value)
_NEG = 9  # pairs: negative spreads in the window (pandas' neg_ct)
_HELD = 10  # the held position (bands, RSI, pairs) or weight (RANDOM)


def strategy_warmup(kind: int, params: np.ndarray) -> int:
    """Bars of history a strategy needs before its first decision (the longest window)."""
    if kind in (StrategyId.SMA_CROSS, StrategyId.EMA_CROSS):
        return int(np.max(params[:, :2]))
    if kind in (StrategyId.ZSCORE, StrategyId.BOLLINGER, StrategyId.MOMENTUM, StrategyId.RSI,
                StrategyId.PAIRS):
        return int(np.max(params[:, 0])) + 1
    return 1


# ---- pandas' rolling algorithms (pandas/_libs/window/aggregations.pyx), one value at a time --
# Scalar-only inlined helpers (no array arguments, so no reference counting in the bar loops).
# The order of every operation is pandas': a reordering changes the last bit.


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _kahan(s, comp, x):
    """s + x with the running compensation comp (pandas' add_mean; remove_mean adds -x)."""
    y = x - comp
    t = s + y
    comp = t - s - y
    return t, comp


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _mean(s, w, run, prev):
    """pandas' calc_mean of a full window of w positive values."""
    return prev if run >= w else s / w


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _welford_add(x, inv_n, mean, ssq, comp):
    """Welford with a Kahan-compensated mean (pandas' add_var): x joins a window that then
    holds n values (inv_n = 1 / n: a multiplication keeps the division off the bar loop's
    dependency chain)."""
    prev_mean = mean - comp
    y = x - comp
    t = y - mean
    comp = t + mean - y
    mean = mean + t * inv_n
    ssq = ssq + (x - prev_mean) * (x - mean)
    return mean, ssq, comp


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _welford_remove(x, inv_n, mean, ssq, comp):
    """pandas' remove_var: x leaves a window that then holds n >= 1 values (inv_n = 1 / n)."""
    prev_mean = mean - comp
    y = x - comp
    t = y - mean
    comp = t + mean - y
    mean = mean - t * inv_n
    ssq = ssq - (x - prev_mean) * (x - mean)
    return mean, ssq, comp


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _std(ssq, w, run):
    """Population standard deviation of a full window of w >= 2 values; exactly 0 for a window
    of identical values (pandas 1.4-2.x's rule)."""
    var = 0.0 if run >= w else ssq / w
    return math.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _spread(bars, t):
    """log close_0 - log close_1 at bar t (the pairs spread)."""
    return math.log(bars[BarField.CLOSE, t, 0]) - math.log(bars[BarField.CLOSE, t, 1])


@njit(cache=True, nogil=True, error_model="numpy")
def _replay_sma(i, t, bars, params, state):
    """SMA_CROSS state after bars 0..t-1 (pandas' rolling means of both windows from bar 0)."""
    f = int(params[i, 0])
    sl = int(params[i, 1])
    for a in range(bars.shape[2]):
        sf = cfa = cfr = ss = csa = csr = 0.0
        run = 0.0
        prev = bars[BarField.CLOSE, 0, a]
        for j in range(t):
            c = bars[BarField.CLOSE, j, a]
            if j >= f:
                sf, cfr = _kahan(sf, cfr, -bars[BarField.CLOSE, j - f, a])
            sf, cfa = _kahan(sf, cfa, c)
            if j >= sl:
                ss, csr = _kahan(ss, csr, -bars[BarField.CLOSE, j - sl, a])
            ss, csa = _kahan(ss, csa, c)
            run = run + 1.0 if c == prev else 1.0
            prev = c
        state[i, _FAST, a], state[i, _FAST + 1, a], state[i, _FAST + 2, a] = sf, cfa, cfr
        state[i, _SLOW, a], state[i, _SLOW + 1, a], state[i, _SLOW + 2, a] = ss, csa, csr
        state[i, _RUN, a] = run
        state[i, _PREV, a] = prev


@njit(cache=True, nogil=True, error_model="numpy")
def _replay_window(i, t, bars, params, state, pairs):
    """Bands / pairs state after bars 0..t-1: pandas' rolling mean and variance of the closes
    of each asset (pairs: of the log spread, in asset 0's slots) from bar 0."""
    w = int(params[i, 0])
    for a in range(1 if pairs else bars.shape[2]):
        s = ca = cr = mean = ssq = cva = cvr = 0.0
        run = 0.0
        neg = 0.0
        prev = _spread(bars, 0) if pairs else bars[BarField.CLOSE, 0, a]
        for j in range(t):
            x = _spread(bars, j) if pairs else bars[BarField.CLOSE, j, a]
            nobs = min(j, w)  # values in the window before x joins
            if j >= w:
                old = _spread(bars, j - w) if pairs else bars[BarField.CLOSE, j - w, a]
                s, cr = _kahan(s, cr, -old)
                mean, ssq, cvr = _welford_remove(old, 1.0 / (w - 1), mean, ssq, cvr)
                if math.copysign(1.0, old) < 0.0:
                    neg -= 1.0
                nobs = w - 1
            s, ca = _kahan(s, ca, x)
            mean, ssq, cva = _welford_add(x, 1.0 / (nobs + 1), mean, ssq, cva)
            if math.copysign(1.0, x) < 0.0:
                neg += 1.0
            run = run + 1.0 if x == prev else 1.0
            prev = x
        state[i, _SUM, a], state[i, _SUM + 1, a], state[i, _SUM + 2, a] = s, ca, cr
        state[i, _VMEAN, a], state[i, _VMEAN + 1, a] = mean, ssq
        state[i, _VMEAN + 2, a], state[i, _VMEAN + 3, a] = cva, cvr
        state[i, _RUN, a] = run
        state[i, _PREV, a] = prev
        state[i, _NEG, a] = neg


@njit(cache=True, nogil=True, error_model="numpy")
def strategy_init_nb(kind, i, t, bars, params, state):
    """Set env i's state for a first decision at bar t (reads bars <= t; the rolling statistics
    replay bars 0..t-1, O(t))."""
    n_assets = bars.shape[2]
    for k in range(state.shape[1]):
        for a in range(n_assets):
            state[i, k, a] = 0.0
    if kind == StrategyId.SMA_CROSS:
        _replay_sma(i, t, bars, params, state)
    elif kind == StrategyId.ZSCORE or kind == StrategyId.BOLLINGER:
        _replay_window(i, t, bars, params, state, False)
    elif kind == StrategyId.PAIRS:
        _replay_window(i, t, bars, params, state, True)
    for a in range(n_assets):
        c = bars[BarField.CLOSE, t, a]
        if kind == StrategyId.EMA_CROSS:
            state[i, 0, a] = c
            state[i, 1, a] = c
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
        sf, cfa, cfr = state[i, _FAST, a], state[i, _FAST + 1, a], state[i, _FAST + 2, a]
        ss, csa, csr = state[i, _SLOW, a], state[i, _SLOW + 1, a], state[i, _SLOW + 2, a]
        run = state[i, _RUN, a]
        prev = state[i, _PREV, a]
        for k in range(nb):
            t = t0 + k
            c = bars[BarField.CLOSE, t, a]
            sf, cfr = _kahan(sf, cfr, -bars[BarField.CLOSE, t - f, a])
            sf, cfa = _kahan(sf, cfa, c)
            ss, csr = _kahan(ss, csr, -bars[BarField.CLOSE, t - sl, a])
            ss, csa = _kahan(ss, csa, c)
            run = run + 1.0 if c == prev else 1.0
            prev = c
            up = _mean(sf, f, run, prev) > _mean(ss, sl, run, prev)
            out[row0 + k, a] = 1.0 if up else down
        state[i, _FAST, a], state[i, _FAST + 1, a], state[i, _FAST + 2, a] = sf, cfa, cfr
        state[i, _SLOW, a], state[i, _SLOW + 1, a], state[i, _SLOW + 2, a] = ss, csa, csr
        state[i, _RUN, a] = run
        state[i, _PREV, a] = prev


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
    inv_w = 1.0 / w
    inv_w1 = 1.0 / (w - 1)
    p1 = params[i, 1]
    p2 = params[i, 2]
    for a in range(bars.shape[2]):
        s, ca, cr = state[i, _SUM, a], state[i, _SUM + 1, a], state[i, _SUM + 2, a]
        vm, ssq = state[i, _VMEAN, a], state[i, _VMEAN + 1, a]
        cva, cvr = state[i, _VMEAN + 2, a], state[i, _VMEAN + 3, a]
        run = state[i, _RUN, a]
        prev = state[i, _PREV, a]
        held = state[i, _HELD, a]
        for k in range(nb):
            t = t0 + k
            c = bars[BarField.CLOSE, t, a]
            old = bars[BarField.CLOSE, t - w, a]
            s, cr = _kahan(s, cr, -old)
            s, ca = _kahan(s, ca, c)
            vm, ssq, cvr = _welford_remove(old, inv_w1, vm, ssq, cvr)
            vm, ssq, cva = _welford_add(c, inv_w, vm, ssq, cva)
            run = run + 1.0 if c == prev else 1.0
            prev = c
            sig = _band_signal(kind, c, _mean(s, w, run, prev), _std(ssq, w, run), p1, p2, held)
            if sig == sig:
                held = sig
            out[row0 + k, a] = held
        state[i, _SUM, a], state[i, _SUM + 1, a], state[i, _SUM + 2, a] = s, ca, cr
        state[i, _VMEAN, a], state[i, _VMEAN + 1, a] = vm, ssq
        state[i, _VMEAN + 2, a], state[i, _VMEAN + 3, a] = cva, cvr
        state[i, _RUN, a] = run
        state[i, _PREV, a] = prev
        state[i, _HELD, a] = held


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
        held = state[i, _HELD, a]
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
        state[i, _HELD, a] = held


@njit(cache=True, nogil=True, error_model="numpy")
def _pairs_block(i, t0, nb, bars, params, state, out, row0):
    w = int(params[i, 0])
    inv_w = 1.0 / w
    inv_w1 = 1.0 / (w - 1)
    entry = params[i, 1]
    exit_ = params[i, 2]
    s, ca, cr = state[i, _SUM, 0], state[i, _SUM + 1, 0], state[i, _SUM + 2, 0]
    vm, ssq = state[i, _VMEAN, 0], state[i, _VMEAN + 1, 0]
    cva, cvr = state[i, _VMEAN + 2, 0], state[i, _VMEAN + 3, 0]
    run = state[i, _RUN, 0]
    prev = state[i, _PREV, 0]
    neg = state[i, _NEG, 0]
    held = state[i, _HELD, 0]
    for k in range(nb):
        t = t0 + k
        x = _spread(bars, t)
        old = _spread(bars, t - w)
        s, cr = _kahan(s, cr, -old)
        s, ca = _kahan(s, ca, x)
        vm, ssq, cvr = _welford_remove(old, inv_w1, vm, ssq, cvr)
        vm, ssq, cva = _welford_add(x, inv_w, vm, ssq, cva)
        if math.copysign(1.0, old) < 0.0:
            neg -= 1.0
        if math.copysign(1.0, x) < 0.0:
            neg += 1.0
        run = run + 1.0 if x == prev else 1.0
        prev = x
        # pandas' calc_mean: a window of identical values has that mean; the sign of a mean
        # follows the signs of its values
        mean = s / w
        if run >= w:
            mean = prev
        elif neg == 0.0 and mean < 0.0:
            mean = 0.0
        elif neg == w and mean > 0.0:
            mean = 0.0
        sd = _std(ssq, w, run)
        z = (x - mean) / sd if sd > 0.0 else 0.0
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
    state[i, _SUM, 0], state[i, _SUM + 1, 0], state[i, _SUM + 2, 0] = s, ca, cr
    state[i, _VMEAN, 0], state[i, _VMEAN + 1, 0] = vm, ssq
    state[i, _VMEAN + 2, 0], state[i, _VMEAN + 3, 0] = cva, cvr
    state[i, _RUN, 0] = run
    state[i, _PREV, 0] = prev
    state[i, _NEG, 0] = neg
    state[i, _HELD, 0] = held


@njit(cache=True, nogil=True, error_model="numpy")
def _random_block(i, t0, nb, bars, params, state, out, row0):
    # counter-based: uniforms hashed from (seed, env, bar, asset), so no stream to carry
    seed = np.uint64(np.int64(params[i, 3]))
    p = params[i, 0]
    for a in range(bars.shape[2]):
        w = state[i, _HELD, a]
        for k in range(nb):
            t = t0 + k
            key = (seed * _K0 + np.uint64(i) * _K1 + np.uint64(t) * _K2 + np.uint64(a) * _K3)
            u = float(_mix(key) >> np.uint64(11)) * 2.0**-53
            v = float(_mix(key + _K0) >> np.uint64(11)) * 2.0**-53
            if u < p:
                w = 2.0 * v - 1.0
            out[row0 + k, a] = w
        state[i, _HELD, a] = w


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
