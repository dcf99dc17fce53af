"""Simulation mode: every env generates its own market bar by bar inside the fused step.

Each env draws from its own splitmix64 word (``kernels.rng``), so a path depends only on the
env's seed and parameters: not on the batch size, on the other envs or on threads. There is no
shared bar array; the caller keeps one row per env of the state below and an output row
``out_bar`` that the step reads like a bar of data.

Contract
--------
* State, struct-of-arrays, env on axis 0: ``close`` float64 (n, A) last close (currency);
  ``dev`` float64 (n, A) AR(1) deviation of the log return; ``h`` float64 (n, A) GARCH(1,1)
  conditional variance of the next bar's base shock (per bar, log units squared); ``regime``
  int64 (n,) in {0, 1}; ``bar_index`` int64 (n,) bars generated since the reset (the index of
  the next bar). ``rng`` uint64 (n,) splitmix64 words.
* Parameters, every rate PER BAR (conversion from annual figures belongs to the Python layer):
  ``drift``, ``vol``, ``garch_alpha``, ``garch_beta``, ``ar1``, ``init_price``, ``base_volume``
  float64 (A,); ``chol`` float64 (A, A) lower Cholesky factor of the asset correlation matrix
  (upper triangle never read); ``jump_intensity`` (probability of one jump per bar and asset),
  ``jump_mean``, ``jump_std`` (log jump size), ``intrabar_vol`` float scalars;
  ``regime_p_stay``, ``regime_vol_mult``, ``regime_drift_mult`` float64 (2,).
* Stress: ``crash_bar`` int64 (n,) (-1 = none), ``crash_size`` float (log gap, e.g.
  log(0.8)); ``vol_spike_start``, ``drought_start`` int64 (n,) (-1 = none) with scalar int
  ``*_len`` and float ``*_mult``.
* Output: ``out_bar`` float64 (n, 5, A); ``sim_next_bar_nb`` fully overwrites row i, indexed
  ``out_bar[i, BarField.X, a]``. Nothing is validated here (alpha, beta >= 0, alpha + beta < 1,
  |ar1| < 1, vol >= 0, p in [0, 1]): the Python layer checks inputs once.

Process (env i, asset a, bar t = bar_index[i]; the regime k is shared by the env's assets)
-----------------------------------------------------------------------------------------
::

    k_t     = k_{t-1} if u_regime < regime_p_stay[k_{t-1}] else 1 - k_{t-1}   (t >= 1; k_0 = 0)
    m_t     = regime_vol_mult[k_t] * (vol_spike_mult if t in the spike window else 1)
    sigma_t = sqrt(h_t) * m_t
    c_t     = drift * regime_drift_mult[k_t] - sigma_t**2 / 2 - log(1 + jump_intensity * kappa),
              kappa = exp(jump_mean + jump_std**2 / 2) - 1
    e_t     = (chol @ z_t)[a],                   z_t ~ N(0, I_A)
    dev_t   = ar1 * dev_{t-1} + sigma_t * e_t
    J_t     = jump_mean + jump_std * zj  if u_jump < jump_intensity else 0
    r_t     = c_t + dev_t + J_t                  log(close_t / open_t)
    G_t     = crash_size if t == crash_bar[i] else 0        (the same gap for every asset)
    open_t  = close_{t-1} * exp(G_t)             no gap except on the crash bar
    close_t = open_t * exp(r_t)
    h_{t+1} = omega + garch_alpha * eps_t**2 + garch_beta * h_t,
              eps_t = sqrt(h_t) * e_t,   omega = vol**2 * (1 - garch_alpha - garch_beta)

Drift convention (as ``kernels.markets``): the Ito term and the jump compensator live in c_t,
so with ar1 = 0, E[close_t / open_t | past] = exp(drift * regime_drift_mult[k_t]): ``drift`` is
the mean simple return per bar to first order and the mean log return per bar is
``drift - vol**2 / 2 - log(1 + jump_intensity * kappa)`` in regime 0 (E[h_t] = vol**2 at every
t, as h starts at vol**2). ``vol`` is the unconditional std of the AR(1) innovation, so the
unconditional std of r_t (regime 0, no jumps) is ``vol / sqrt(1 - ar1**2)``. With
garch_alpha = garch_beta = 0, h stays vol**2 exactly and the model is the GBM of
``kernels.markets``.

GARCH is driven by the base shock eps_t = sqrt(h_t) e_t, i.e. the realised diffusive shock
before the regime and vol-spike multipliers m_t, and not by jumps or the crash: feeding m_t in
would make the recursion explosive (alpha m**2 + beta >= 1) in a high-vol regime, and one crash
would multiply h by ~100. The multipliers scale volatility on top of a stationary GARCH whose
mean is vol**2 whatever the regime.

Reset (``sim_reset_env_nb``): close = init_price, h = vol**2 (its unconditional mean), regime 0,
bar_index 0 and dev_{-1} = vol * e / sqrt(1 - ar1**2) with e = chol @ z, the stationary law of
the AR(1) (exactly so when the assets share ar1; as in ``kernels.markets`` otherwise).

Wicks and volume follow ``kernels.markets``: a Brownian bridge in log space from log open to log
close with std ``s = intrabar_vol * sigma_t``, whose maximum exceeds the body by
``(sqrt(r_t**2 + 2 s**2 E) - |r_t|) / 2``, E ~ Exp(1), independent for the high and the low, so
``low <= min(open, close) <= max(open, close) <= high`` by construction (clamped against
rounding). Volume is lognormal around base_volume and rises with the bar's surprise::

    V = base_volume * exp(VOLUME_LOG_STD * (zv - VOLUME_LOG_STD / 2)
                          + VOLUME_SHOCK_BETA * (min(S, VOLUME_SURPRISE_CAP) - sqrt(2 / pi)))
        * (drought_mult if t in the drought window else 1)
    S = |sigma_t e_t + J_t + G_t| / vol    (|e_t m_t| when vol == 0 and nothing jumps, else cap)

so high-vol regimes, vol spikes, jumps and the crash bar trade more.

Stress windows: the vol spike multiplies sigma_t (hence the Ito term, the wicks and the
surprise) for ``vol_spike_start[i] <= t < vol_spike_start[i] + vol_spike_len``; the drought
multiplies V for ``drought_start[i] <= t < drought_start[i] + drought_len``; a start < 0 turns
the window off. Neither changes the random stream, so outside its window a path is identical to
the unstressed one.

Random numbers (per env, from its splitmix64 word, in this order per bar)
-------------------------------------------------------------------------
1. one uniform for the regime switch, only if t >= 1 and regime_p_stay[k_{t-1}] < 1;
2. for a = 0 .. A-1: one polar pair (z_t[a], zv[a]);
3. for a = 0 .. A-1: u_jump (only if jump_intensity > 0), zj (only if that asset jumps: the
   first of a polar pair), then E_high, E_low.

``uniform_nb`` = (top 52 bits + 0.5) * 2**-52: 2**52 equally likely values, symmetric about
1/2, strictly inside (0, 1) and exact (a 53-bit grid offset by half a step is not representable
in [1/2, 1), so a 53rd bit would round the largest value to 1.0). ``normal_pair_nb`` is
Marsaglia's polar method: v1, v2 = 2u - 1 (never 0), rejected until s = v1**2 + v2**2 < 1, then
(v1, v2) * sqrt(-2 log(s) / s) are two independent N(0, 1) (no trigonometry, 4/pi uniform pairs
per accepted pair on average). ``normal_nb`` returns the first of a pair. ``exponential_nb`` is
-log(u).
"""

import numpy as np
from numba import njit, prange

from kernels.enums import BarField
from kernels.markets import (
    _ZE_F,
    _ZE_K,
    _ZE_R,
    _ZE_W,
    _ZN_F,
    _ZN_K,
    _ZN_R,
    _ZN_W,
    VOLUME_LOG_STD,
    VOLUME_SHOCK_BETA,
    VOLUME_SURPRISE_CAP,
)
from kernels.rng import next_u64_nb, randint_nb

_S3 = np.uint64(3)
_S12 = np.uint64(12)
_TWO_M52 = 2.0**-52
_MEAN_ABS_NORMAL = 0.7978845608028654  # E|N(0, 1)| = sqrt(2 / pi): centres the surprise term
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME = (
    BarField.OPEN, BarField.HIGH, BarField.LOW, BarField.CLOSE, BarField.VOLUME
)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def uniform_nb(state, i):
    """U(0, 1) for env i: the top 52 bits of one splitmix64 word, offset by half a step."""
    return (np.float64(next_u64_nb(state, i) >> _S12) + 0.5) * _TWO_M52


@njit(cache=True, nogil=True, error_model="numpy")
def _normal_slow_nb(state, i, idx, neg, x):
    """Finish a normal draw whose first candidate x (layer idx, sign neg) missed the fast path."""
    while True:
        if idx == 0:
            # Tail beyond R by Marsaglia's method: R + X, X ~ Exp(rate R) kept w.p. exp(-X^2/2).
            while True:
                xx = -np.log(uniform_nb(state, i)) / _ZN_R
                yy = -np.log(uniform_nb(state, i))
                if yy + yy > xx * xx:
                    return -(_ZN_R + xx) if neg else _ZN_R + xx
        # Wedge: accept if a uniform height inside the layer falls under the density.
        if _ZN_F[idx] + uniform_nb(state, i) * (_ZN_F[idx - 1] - _ZN_F[idx]) < np.exp(-0.5 * x * x):
            return -x if neg else x
        bits = np.int64(next_u64_nb(state, i) >> _S3)
        idx = bits & 0xFF
        neg = (bits >> 8) & 1
        mag = bits >> 9
        x = mag * _ZN_W[idx]
        if mag < _ZN_K[idx]:
            return -x if neg else x


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def normal_nb(state, i):
    """N(0, 1) for env i from the 256-layer ziggurat (one splitmix64 word 99% of the time)."""
    bits = np.int64(next_u64_nb(state, i) >> _S3)  # 61 bits: 8 layer + 1 sign + 52 magnitude
    idx = bits & 0xFF
    neg = (bits >> 8) & 1
    mag = bits >> 9
    x = mag * _ZN_W[idx]
    if mag < _ZN_K[idx]:
        return -x if neg else x
    return _normal_slow_nb(state, i, idx, neg, x)  # out of line: the inlined fast path stays small


@njit(cache=True, nogil=True, error_model="numpy")
def _exponential_slow_nb(state, i, idx, x):
    """Finish an exponential draw whose first candidate x (layer idx) missed the fast path."""
    while True:
        if idx == 0:
            return _ZE_R - np.log(uniform_nb(state, i))  # the tail beyond R is R + Exp(1)
        if _ZE_F[idx] + uniform_nb(state, i) * (_ZE_F[idx - 1] - _ZE_F[idx]) < np.exp(-x):
            return x
        bits = np.int64(next_u64_nb(state, i) >> _S3)
        idx = bits & 0xFF
        mag = bits >> 8
        x = mag * _ZE_W[idx]
        if mag < _ZE_K[idx]:
            return x


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exponential_nb(state, i):
    """Exp(1) for env i from the 256-layer ziggurat (one splitmix64 word 99% of the time)."""
    bits = np.int64(next_u64_nb(state, i) >> _S3)  # 61 bits: 8 layer + 53 magnitude
    idx = bits & 0xFF
    mag = bits >> 8
    x = mag * _ZE_W[idx]
    if mag < _ZE_K[idx]:
        return x
    return _exponential_slow_nb(state, i, idx, x)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def draw_crash_bar_nb(state, i, lo, hi):
    """Bar index uniform in [lo, hi] (inclusive) for env i's crash (or a stress window start)."""
    return randint_nb(state, i, lo, hi)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sim_reset_env_nb(i, rng, init_price, vol, ar1, chol, close, dev, h, regime, bar_index):
    """Reset env i: close = init_price, h = vol**2, dev from its stationary law, regime 0, bar 0.

    Draws A normals (one polar pair each, first kept) from rng[i]."""
    n_assets = close.shape[1]
    for a in range(n_assets):
        dev[i, a] = normal_nb(rng, i)  # z, as scratch
    # Backwards, so each slot is overwritten only after the larger assets have read it
    # (chol is lower-triangular: asset a reads z_0 .. z_a).
    for a in range(n_assets - 1, -1, -1):
        e = 0.0
        for j in range(a + 1):
            e += chol[a, j] * dev[i, j]
        dev[i, a] = vol[a] * e / np.sqrt(1.0 - ar1[a] * ar1[a])
    for a in range(n_assets):
        close[i, a] = init_price[a]
        h[i, a] = vol[a] * vol[a]
    regime[i] = 0
    bar_index[i] = 0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sim_next_bar_nb(
    i, rng, drift, vol, chol, garch_alpha, garch_beta, ar1,
    jump_intensity, jump_mean, jump_std, regime_p_stay, regime_vol_mult, regime_drift_mult,
    intrabar_vol, base_volume,
    crash_bar, crash_size, vol_spike_start, vol_spike_len, vol_spike_mult,
    drought_start, drought_len, drought_mult,
    close, dev, h, regime, bar_index, out_bar,
):
    """Write env i's next bar into out_bar[i] (5, A) and advance its state by one bar."""
    n_assets = close.shape[1]
    t = bar_index[i]
    k = regime[i]
    if t > 0 and regime_p_stay[k] < 1.0:
        if uniform_nb(rng, i) >= regime_p_stay[k]:
            k = 1 - k
    vm = regime_vol_mult[k]
    dm = regime_drift_mult[k]
    if vol_spike_start[i] >= 0 and vol_spike_start[i] <= t < vol_spike_start[i] + vol_spike_len:
        vm *= vol_spike_mult
    v_mult = 1.0
    if drought_start[i] >= 0 and drought_start[i] <= t < drought_start[i] + drought_len:
        v_mult = drought_mult
    gap = 0.0
    gap_factor = 1.0
    if t == crash_bar[i]:
        gap = crash_size
        gap_factor = np.exp(crash_size)
    log_jump_comp = 0.0
    draw_jumps = jump_intensity > 0.0
    if draw_jumps:
        kappa = np.exp(jump_mean + 0.5 * jump_std * jump_std) - 1.0
        log_jump_comp = np.log1p(jump_intensity * kappa)

    # The HIGH and VOLUME slots of the output row hold z and zv until the bar is written: no
    # scratch allocation in the step.
    for a in range(n_assets):
        out_bar[i, _HIGH, a] = normal_nb(rng, i)
        out_bar[i, _VOLUME, a] = normal_nb(rng, i)
    # e = chol @ z in place, backwards (asset a reads z_0 .. z_a only).
    for a in range(n_assets - 1, -1, -1):
        e = 0.0
        for j in range(a + 1):
            e += chol[a, j] * out_bar[i, _HIGH, j]
        out_bar[i, _HIGH, a] = e

    for a in range(n_assets):
        e = out_bar[i, _HIGH, a]
        zv = out_bar[i, _VOLUME, a]
        h_t = h[i, a]
        ga = garch_alpha[a]
        gb = garch_beta[a]
        # Without GARCH h == vol**2 exactly and sqrt(vol**2) == vol in IEEE arithmetic: skip it.
        sd = vol[a] if ga == 0.0 and gb == 0.0 else np.sqrt(h_t)
        sigma = sd * vm
        shock = sigma * e
        d = ar1[a] * dev[i, a] + shock
        c = drift[a] * dm - 0.5 * sigma * sigma - log_jump_comp
        jump = 0.0
        if draw_jumps:
            if uniform_nb(rng, i) < jump_intensity:
                jump = jump_mean + jump_std * normal_nb(rng, i)
        r = c + d + jump
        px_open = close[i, a] * gap_factor
        px_close = px_open * np.exp(r)

        # Brownian-bridge excess of the high / low over the body, in log units (see markets).
        s_bar = intrabar_vol * sigma
        two_s2 = 2.0 * s_bar * s_bar
        r2 = r * r
        abs_r = abs(r)
        x_high = 0.5 * (np.sqrt(r2 + two_s2 * exponential_nb(rng, i)) - abs_r)
        x_low = 0.5 * (np.sqrt(r2 + two_s2 * exponential_nb(rng, i)) - abs_r)
        body_high = px_close if px_close > px_open else px_open
        body_low = px_open if px_close > px_open else px_close
        px_high = body_high * np.exp(x_high)
        px_low = body_low * np.exp(-x_low)

        move = jump + gap
        if vol[a] > 0.0:
            surprise = abs(shock + move) / vol[a]
        else:
            surprise = abs(e * vm) if move == 0.0 else VOLUME_SURPRISE_CAP
        if surprise > VOLUME_SURPRISE_CAP:
            surprise = VOLUME_SURPRISE_CAP
        log_v = VOLUME_LOG_STD * (zv - 0.5 * VOLUME_LOG_STD) + VOLUME_SHOCK_BETA * (
            surprise - _MEAN_ABS_NORMAL
        )

        out_bar[i, _OPEN, a] = px_open
        out_bar[i, _HIGH, a] = px_high if px_high > body_high else body_high
        out_bar[i, _LOW, a] = px_low if px_low < body_low else body_low
        out_bar[i, _CLOSE, a] = px_close
        out_bar[i, _VOLUME, a] = base_volume[a] * np.exp(log_v) * v_mult

        h[i, a] = vol[a] * vol[a] * (1.0 - ga - gb) + (ga * e * e + gb) * h_t
        dev[i, a] = d
        close[i, a] = px_close
    regime[i] = k
    bar_index[i] = t + 1


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def sim_step_all_nb(
    rng, drift, vol, chol, garch_alpha, garch_beta, ar1,
    jump_intensity, jump_mean, jump_std, regime_p_stay, regime_vol_mult, regime_drift_mult,
    intrabar_vol, base_volume,
    crash_bar, crash_size, vol_spike_start, vol_spike_len, vol_spike_mult,
    drought_start, drought_len, drought_mult,
    close, dev, h, regime, bar_index, out_bar,
):
    """Every env's next bar into out_bar (n, 5, A), envs in parallel (prange)."""
    for i in prange(close.shape[0]):
        sim_next_bar_nb(
            i, rng, drift, vol, chol, garch_alpha, garch_beta, ar1,
            jump_intensity, jump_mean, jump_std, regime_p_stay, regime_vol_mult,
            regime_drift_mult, intrabar_vol, base_volume,
            crash_bar, crash_size, vol_spike_start, vol_spike_len, vol_spike_mult,
            drought_start, drought_len, drought_mult,
            close, dev, h, regime, bar_index, out_bar,
        )
