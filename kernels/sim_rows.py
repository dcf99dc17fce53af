"""Simulation mode's rows: each env writes its own generated bars, features and series into a
private segment of the arrays the fused step reads, so the step runs unchanged on them.

Layout (n envs, A assets, F features, R = ``seg_rows`` rows per env): env i owns rows
[i R, (i + 1) R) of ``bars`` float64 (5, n R, A), ``series`` float64 (N_SERIES, n R, A),
``features`` float32 (n R A F,) (the C-order flattening of (n R, A, F), as in data mode) and
``day`` int64 (n R,). ``clock[i, Clock.BAR]`` is a row index in that segment, exactly as it is a
bar index into the shared arrays in data mode.

Advance (``sim_advance_nb``): the bar after the env's current row t is generated into row t + 1
by ``kernels.simulation.sim_next_bar_nb``; its features and series come from per-env recursions
``row_state`` float64 (n, N_ROW_STATE, A) (``kernels.enums.RowState``) that repeat, operation for
operation, ``compute_features_nb``, ``ewma_nb`` and ``compute_risk_series_nb`` over the env's
path, so a value at path bar p uses path bars <= p only and equals what the load-time kernels
give on the same path. When row t + 1 would leave the segment, the last ``keep`` rows (the
observation window, and the bars a latency-L order is priced from: keep >= max(window, L + 1))
move to the segment's start first: one copy of ``keep`` rows every R - keep bars.

Restart (``sim_restart_nb``): a fresh path from the env's splitmix64 word: the episode's stress
windows are drawn (each with its own probability: crash bar, spike start and drought start
uniform in the episode's path bars [warmup, warmup + episode_length - 1]), the generator is reset
(``sim_reset_env_nb``), and ``warmup`` bars (>= the window) are generated, so the episode starts
at path bar warmup - 1 with a full window and warmed-up normalisations. Returns the start row.

Trading days: ``day[row] = path bar // bars_per_day`` (the daily-loss limit's day boundary).
Path bars: the env's path bar of a row is ``row - clock[i, BAR] + sim_clock[i, BAR_INDEX] - 1``.
"""

import math

import numpy as np
from numba import njit

from kernels.enums import (
    BarField,
    Clock,
    RowState,
    SeriesField,
    SimClock,
    SimEnv,
    SimStress,
)
from kernels.features import feature_value_nb
from kernels.risk import wilder_atr_step_nb
from kernels.rng import randint_nb
from kernels.simulation import sim_next_bar_nb, sim_reset_env_nb, uniform_nb


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def ewma_alpha_nb(halflife):
    """The EWMA weight of a new value for a half-life in bars (as the load-time kernels)."""
    return 1.0 - math.exp(math.log(0.5) / halflife)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def row_update_nb(i, r, path_t, bars, series, features, feature_ids, clip, f_alpha, av_alpha,
                  r_alpha, atr_period, row_state):
    """Features and series of env i's bar just written at row r (path bar path_t; the previous
    path bar is row r - 1 when path_t > 0), advancing the env's recursions."""
    n_assets = bars.shape[2]
    n_feat = feature_ids.shape[0]
    row_size = n_assets * n_feat
    for a in range(n_assets):
        c = bars[BarField.CLOSE, r, a]
        high = bars[BarField.HIGH, r, a]
        low = bars[BarField.LOW, r, a]
        volume = bars[BarField.VOLUME, r, a]
        prev = bars[BarField.CLOSE, r - 1, a] if path_t > 0 else c
        ret = 0.0 if path_t == 0 else math.log(c / prev)

        # features, as compute_features_nb
        rng = math.log(high / low)
        lv = math.log(max(volume, 1e-12))
        m_ret2 = (1.0 - f_alpha) * row_state[i, RowState.F_RET2, a] + f_alpha * ret * ret
        m_rng = (1.0 - f_alpha) * row_state[i, RowState.F_RNG, a] + f_alpha * rng
        m_vol = (1.0 - f_alpha) * row_state[i, RowState.F_VOL, a] + f_alpha * lv
        m_vol2 = (1.0 - f_alpha) * row_state[i, RowState.F_VOL2, a] + f_alpha * lv * lv
        w = (1.0 - f_alpha) * row_state[i, RowState.F_W, a] + f_alpha
        row_state[i, RowState.F_RET2, a] = m_ret2
        row_state[i, RowState.F_RNG, a] = m_rng
        row_state[i, RowState.F_VOL, a] = m_vol
        row_state[i, RowState.F_VOL2, a] = m_vol2
        row_state[i, RowState.F_W, a] = w
        base = r * row_size + a * n_feat
        for j in range(n_feat):
            features[base + j] = feature_value_nb(feature_ids[j], ret, rng, lv, m_ret2, m_rng,
                                                  m_vol, m_vol2, w, clip)

        # average volume, as ewma_nb
        av_m = (1.0 - av_alpha) * row_state[i, RowState.AV_M, a] + av_alpha * volume
        av_w = (1.0 - av_alpha) * row_state[i, RowState.AV_W, a] + av_alpha
        row_state[i, RowState.AV_M, a] = av_m
        row_state[i, RowState.AV_W, a] = av_w
        series[SeriesField.AVG_VOLUME, r, a] = av_m / av_w

        # risk series, as compute_risk_series_nb
        atr = row_state[i, RowState.ATR, a]
        if path_t == 0:
            series[SeriesField.SIGMA, r, a] = 0.0
            series[SeriesField.RET_MEAN, r, a] = 0.0
            tr = high - low
        else:
            m1 = (1.0 - r_alpha) * row_state[i, RowState.R_M1, a] + r_alpha * ret
            m2 = (1.0 - r_alpha) * row_state[i, RowState.R_M2, a] + r_alpha * ret * ret
            rw = (1.0 - r_alpha) * row_state[i, RowState.R_W, a] + r_alpha
            row_state[i, RowState.R_M1, a] = m1
            row_state[i, RowState.R_M2, a] = m2
            row_state[i, RowState.R_W, a] = rw
            series[SeriesField.SIGMA, r, a] = math.sqrt(m2 / rw)
            series[SeriesField.RET_MEAN, r, a] = m1 / rw
            tr = max(high - low, abs(high - prev), abs(low - prev))
        atr = wilder_atr_step_nb(atr, tr, path_t, atr_period)
        row_state[i, RowState.ATR, a] = atr
        series[SeriesField.ATR, r, a] = atr
        series[SeriesField.SPREAD_BPS, r, a] = np.nan


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _move_row(src, dst, bars, series, features, day, row_size):
    for k in range(bars.shape[0]):
        for a in range(bars.shape[2]):
            bars[k, dst, a] = bars[k, src, a]
    for k in range(series.shape[0]):
        for a in range(series.shape[2]):
            series[k, dst, a] = series[k, src, a]
    for k in range(row_size):
        features[dst * row_size + k] = features[src * row_size + k]
    day[dst] = day[src]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sim_advance_nb(i, clock, rng, bars, series, features, day, sim_asset, sim_env, chol,
                   regime_table, stress, sim_state, sim_clock, row_state, seg_rows, keep,
                   bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha, atr_period):
    """Generate env i's next bar into the row after clock[i, BAR] (moving the last ``keep`` rows
    to the segment's start first when the segment is full)."""
    base = i * seg_rows
    t = clock[i, Clock.BAR]
    if t + 1 == base + seg_rows:
        shift = t + 1 - keep - base
        row_size = feature_ids.shape[0] * bars.shape[2]
        for k in range(keep):
            _move_row(base + shift + k, base + k, bars, series, features, day, row_size)
        t -= shift
        clock[i, Clock.BAR] = t
        clock[i, Clock.START] -= shift
    f = t + 1
    path_t = sim_clock[i, SimClock.BAR_INDEX]
    sim_next_bar_nb(i, f, rng, sim_asset, sim_env, chol, regime_table, stress, sim_state,
                    sim_clock, bars)
    row_update_nb(i, f, path_t, bars, series, features, feature_ids, clip, f_alpha, av_alpha,
                  r_alpha, atr_period, row_state)
    # Every array is used once more here, so all die in this last block: Numba can then prune
    # the reference counting of the ~15 arrays out of the caller's env loop (measured: 31
    # increfs and ~70 ns more per env-bar without this line; see kernels/simulation.py, Cost).
    alive = (rng.shape[0] + sim_asset.shape[0] + sim_env.shape[0] + chol.shape[0]
             + regime_table.shape[0] + stress.shape[0] + sim_state.shape[0]
             + sim_clock.shape[0] + clock.shape[0])
    day[f] = path_t // bars_per_day + 0 * alive


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _stress_start(rng, i, prob, lo, hi):
    """A window start in [lo, hi] with probability prob, else -1 (one uniform drawn only when
    0 < prob < 1)."""
    if prob <= 0.0:
        return -1
    if prob < 1.0 and uniform_nb(rng, i) >= prob:
        return -1
    return randint_nb(rng, i, lo, hi)


# Not inlined: restarts are rare, and one compiled copy keeps the step's compile time down.
@njit(cache=True, nogil=True, error_model="numpy")
def sim_restart_nb(i, clock, rng, bars, series, features, day, sim_asset, sim_env, chol,
                   regime_table, stress, sim_state, sim_clock, row_state, seg_rows, keep,
                   bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha, atr_period,
                   warmup, episode_length):
    """A fresh path for env i: draw the episode's stresses, reset the generator, generate
    ``warmup`` bars; returns the start row (the last warm-up bar)."""
    lo = warmup
    hi = warmup + episode_length - 1
    stress[i, SimStress.CRASH_BAR] = _stress_start(rng, i, sim_env[i, SimEnv.CRASH_PROB], lo, hi)
    stress[i, SimStress.SPIKE_START] = _stress_start(rng, i, sim_env[i, SimEnv.SPIKE_PROB], lo,
                                                     hi)
    stress[i, SimStress.DROUGHT_START] = _stress_start(rng, i, sim_env[i, SimEnv.DROUGHT_PROB],
                                                       lo, hi)
    sim_reset_env_nb(i, rng, sim_asset, chol, sim_state, sim_clock)
    for k in range(row_state.shape[1]):
        for a in range(row_state.shape[2]):
            row_state[i, k, a] = 0.0
    clock[i, Clock.BAR] = i * seg_rows - 1  # the first bar goes to the segment's first row
    for _ in range(warmup):
        sim_advance_nb(i, clock, rng, bars, series, features, day, sim_asset, sim_env, chol,
                       regime_table, stress, sim_state, sim_clock, row_state, seg_rows, keep,
                       bars_per_day, feature_ids, clip, f_alpha, av_alpha, r_alpha, atr_period)
        clock[i, Clock.BAR] += 1  # the bar just generated is the env's current one
    return clock[i, Clock.BAR]
