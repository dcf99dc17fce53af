"""Synthetic OHLCV market: correlated GBM with AR(1) returns, Merton jumps and two regimes.

Contract
--------
* Outputs ``out_open``, ``out_high``, ``out_low``, ``out_close``, ``out_volume`` are float64
  ``(T, A)`` (bars x assets), C-contiguous, preallocated by the caller and fully overwritten.
* Per-asset parameters ``drift``, ``vol``, ``ar1``, ``init_price``, ``base_volume`` are float64
  ``(A,)``; ``chol`` is the float64 ``(A, A)`` lower Cholesky factor of the asset correlation
  matrix (its upper triangle is never read); ``regime_*`` are float64 ``(2,)``.
* Every rate is PER BAR: ``drift`` = mu*dt, ``vol`` = sigma*sqrt(dt), ``jump_intensity`` =
  lambda*dt is the probability of one jump in a bar (in [0, 1]). Conversion from annual figures
  belongs to ``optrader.data.synthetic``, not here. Prices are in currency units, volume in
  shares. Nothing is validated here: the Python layer checks inputs once.

Process (asset i, bar t; the regime k_t is shared by all assets, k_0 = 0)
-------------------------------------------------------------------------
::

    k_t     = k_{t-1} if u_regime[t] < regime_p_stay[k_{t-1}] else 1 - k_{t-1}      (t >= 1)
    sigma_t = vol[i] * regime_vol_mult[k_t]
    mu_t    = drift[i] * regime_drift_mult[k_t]
    c_t     = mu_t - sigma_t**2 / 2 - log(1 + jump_intensity * kappa),
              kappa = exp(jump_mean + jump_std**2 / 2) - 1
    eps_t   = (chol @ z_t)[i],                      z_t ~ N(0, I_A)
    dev_t   = ar1[i] * dev_{t-1} + sigma_t * eps_t   (dev_0 = sigma_0 eps_0 / sqrt(1 - ar1**2):
                                                      the AR(1) starts in its stationary law)
    J_t     = jump_mean + jump_std * zj_t if u_jump_t < jump_intensity else 0
    r_t     = c_t + dev_t + J_t                     close-to-close log return
    open_t  = close_{t-1}  (open_0 = init_price[i]) no gap: consecutive bars share a price
    close_t = open_t * exp(r_t)

Drift convention: the Ito term ``sigma_t**2 / 2`` and the jump compensator live in ``c_t``, so
with ``ar1 = 0`` in a fixed regime ``E[close_t / open_t] = exp(mu_t)`` exactly: ``drift`` is the
mean simple return per bar to first order, and the mean LOG return per bar is ``c_t``. ``vol`` is
the std of the AR(1) innovation, so the unconditional std of ``r_t`` (fixed regime, no jumps) is
``vol / sqrt(1 - ar1**2)``. Jumps are independent across assets and do not feed the AR(1) state.

Wicks: in log space a bar is a Brownian bridge from log(open) to log(close) with std
``s = intrabar_vol * sigma_t`` over the bar. Its maximum exceeds max(log open, log close) by
``e = (sqrt(r_t**2 + q) - |r_t|) / 2`` with ``q = 2 s**2 E``, ``E ~ Exp(1)`` (exact inversion of
P(max > m) = exp(-2 (m - a)(m - b) / s**2) for a bridge from a to b), so::

    high_t = max(open_t, close_t) * exp(e_high),   low_t = min(open_t, close_t) * exp(-e_low)

with independent E for the high and the low (their marginals are exact, the joint law is not).
``e >= 0`` gives ``low <= min(open, close) <= max(open, close) <= high`` by construction; the
result is still clamped so that rounding can never break it.

Volume: ``V = base_volume * exp(VOLUME_LOG_STD * zv - VOLUME_LOG_STD**2 / 2
+ VOLUME_SHOCK_BETA * (min(surprise, VOLUME_SURPRISE_CAP) - sqrt(2/pi)))`` with
``surprise = |sigma_t eps_t + J_t| / vol[i] = |eps_t regime_vol_mult[k_t] + J_t / vol[i]|`` (the
cap when ``vol[i] == 0`` and the asset jumps): lognormal around ``base_volume`` and rising with
the bar's return surprise, measured in units of the asset's base per-bar vol so that high-vol
regimes and jump bars trade more.

Randomness: ``simulate_market_nb`` seeds Numba's internal (per-thread) Mersenne Twister with
``np.random.seed(seed)`` and then draws, per bar, in this order: one uniform for the regime
switch (only when ``t >= 1`` and ``regime_p_stay[k_{t-1}] < 1``); for each asset i the pair
``z_t[i]``, ``zv[i]``; then for each asset i a uniform ``u_jump`` (only when
``jump_intensity > 0``), a normal ``zj`` (only when that asset jumps), and ``E_high``, ``E_low``.
Normals and exponentials come from 256-layer ziggurats (Marsaglia & Tsang 2000) fed by
``np.random.randint``: Numba's ``np.random.standard_normal`` (~40 ns) and ``-log(u)`` would cost
more than the rest of the bar. Seeding resets the calling thread's Numba RNG, so later Numba
draws in that thread continue this stream. Scratch is O(256 x A), allocated once per call.

``build_ohlcv_nb`` runs the same process on pre-drawn noise (``z``, ``u_jump``, ``z_jump``,
``e_high``, ``e_low``, ``z_volume`` float64 (T, A) and ``u_regime`` float64 (T,), entry 0
unused) so that the model can be checked against a scalar reference; ``simulate_market_nb`` is
exactly ``build_ohlcv_nb`` fed with the draws above, in that order.
"""

import numpy as np
from numba import njit

VOLUME_LOG_STD = 0.25
"""Std of the idiosyncratic log-volume noise."""
VOLUME_SHOCK_BETA = 0.3
"""Log-volume increase per unit of return surprise (surprise in units of the asset's base vol)."""
VOLUME_SURPRISE_CAP = 8.0
"""Cap on the surprise, so a huge jump multiplies volume by at most exp(0.3 * 7.2) ~ 8.7."""
_MEAN_ABS_NORMAL = 0.7978845608028654  # E|N(0, 1)| = sqrt(2 / pi): centres the surprise term

# ---------------------------------------------------------------------------------------------
# Ziggurat tables (built once at import; Numba freezes module-level arrays as constants).
# Layer 0 is the base strip with the tail; layers 255..1 climb to the peak. For layer i >= 1,
# _W[i] * 2**bits is its right edge x_i and _K[i] = 2**bits * x_{i-1} / x_i is the fraction that
# lies inside the curve (accepted with no further test); _F[i] = f(x_i). Layer 0 has
# _W[0] = q / 2**bits with q = v / f(R), and _K[0] = 2**bits * R / q (beyond R: the tail).
_ZN_R = 3.654152885361009  # normal: right edge of the base layer
_ZN_V = 0.004928673233974658  # r f(r) + sqrt(pi/2) erfc(r/sqrt 2): area of every layer
_ZE_R = 7.69711747013105  # exponential: right edge of the base layer
_ZE_V = 0.003949659822581556  # (r + 1) exp(-r)


def _ziggurat_tables(f, f_inv, r, v, bits):
    """Marsaglia & Tsang (2000) tables for a decreasing density shape f on [0, inf)."""
    m = 2.0**bits
    k = np.zeros(256, dtype=np.int64)
    w = np.zeros(256)
    fx = np.zeros(256)
    q = v / f(r)  # width the base layer would have if it were a plain rectangle
    k[0] = int(r / q * m)
    w[0] = q / m
    w[255] = r / m
    fx[0] = 1.0
    fx[255] = f(r)
    x_out = r
    for i in range(254, 0, -1):
        x_in = f_inv(v / x_out + f(x_out))
        k[i + 1] = int(x_in / x_out * m)
        w[i] = x_in / m
        fx[i] = f(x_in)
        x_out = x_in
    return k, w, fx


_ZN_K, _ZN_W, _ZN_F = _ziggurat_tables(
    lambda x: np.exp(-0.5 * x * x), lambda y: np.sqrt(-2.0 * np.log(y)), _ZN_R, _ZN_V, 52
)
_ZE_K, _ZE_W, _ZE_F = _ziggurat_tables(
    lambda x: np.exp(-x), lambda y: -np.log(y), _ZE_R, _ZE_V, 53
)


# The draw_* helpers are inlined at Numba-IR level: as out-of-line calls each draw costs ~2x
# (status-code return and no scheduling across the call). Their rare slow paths are not.
@njit(cache=True, nogil=True, inline="always")
def draw_uniform_nb():
    """One U(0, 1) double with 53 random bits, never exactly 0 or 1, from Numba's np.random state."""
    # randint over 2**53 costs two 32-bit Mersenne Twister words (~3 ns); np.random.random() is
    # ~2.5x slower in Numba. The +0.5 keeps log(u) finite.
    return (np.random.randint(0, 9007199254740992) + 0.5) * 1.1102230246251565e-16


@njit(cache=True, nogil=True)
def _draw_normal_slow_nb(idx, neg, x):
    """Finish a normal draw whose first candidate x (layer idx, sign neg) missed the fast path."""
    while True:
        if idx == 0:
            # Tail beyond R by Marsaglia's method: R + X, X ~ Exp(rate R) kept w.p. exp(-X^2/2).
            while True:
                xx = -np.log(draw_uniform_nb()) / _ZN_R
                yy = -np.log(draw_uniform_nb())
                if yy + yy > xx * xx:
                    return -(_ZN_R + xx) if neg else _ZN_R + xx
        # Wedge: accept if a uniform height inside the layer falls under the density.
        if _ZN_F[idx] + draw_uniform_nb() * (_ZN_F[idx - 1] - _ZN_F[idx]) < np.exp(-0.5 * x * x):
            return -x if neg else x
        bits = np.random.randint(0, 2305843009213693952)
        idx = bits & 0xFF
        neg = (bits >> 8) & 1
        mag = bits >> 9
        x = mag * _ZN_W[idx]
        if mag < _ZN_K[idx]:
            return -x if neg else x


@njit(cache=True, nogil=True, inline="always")
def draw_normal_nb():
    """One N(0, 1) draw from the 256-layer ziggurat (one 61-bit word 99% of the time)."""
    bits = np.random.randint(0, 2305843009213693952)  # 2**61: 8 layer + 1 sign + 52 magnitude
    idx = bits & 0xFF
    neg = (bits >> 8) & 1
    mag = bits >> 9
    x = mag * _ZN_W[idx]
    if mag < _ZN_K[idx]:
        return -x if neg else x
    # The rare slow path stays out of line so the inlined fast path is a few instructions.
    return _draw_normal_slow_nb(idx, neg, x)


@njit(cache=True, nogil=True)
def _draw_exponential_slow_nb(idx, x):
    """Finish an exponential draw whose first candidate x (layer idx) missed the fast path."""
    while True:
        if idx == 0:
            return _ZE_R - np.log(draw_uniform_nb())  # the tail beyond R is R + Exp(1)
        if _ZE_F[idx] + draw_uniform_nb() * (_ZE_F[idx - 1] - _ZE_F[idx]) < np.exp(-x):
            return x
        bits = np.random.randint(0, 2305843009213693952)
        idx = bits & 0xFF
        mag = bits >> 8
        x = mag * _ZE_W[idx]
        if mag < _ZE_K[idx]:
            return x


@njit(cache=True, nogil=True, inline="always")
def draw_exponential_nb():
    """One Exp(1) draw from the 256-layer ziggurat (one 61-bit word 99% of the time)."""
    bits = np.random.randint(0, 2305843009213693952)  # 2**61: 8 layer + 53 magnitude
    idx = bits & 0xFF
    mag = bits >> 8
    x = mag * _ZE_W[idx]
    if mag < _ZE_K[idx]:
        return x
    return _draw_exponential_slow_nb(idx, x)


@njit(cache=True, nogil=True)
def _log_jump_compensator_nb(jump_intensity, jump_mean, jump_std):
    """log E[exp(J)] for a Bernoulli(jump_intensity) jump of log size N(jump_mean, jump_std^2)."""
    kappa = np.exp(jump_mean + 0.5 * jump_std * jump_std) - 1.0
    return np.log1p(jump_intensity * kappa)


@njit(cache=True, nogil=True)
def _write_bars_nb(
    t0, regime, z, u_jump, z_jump, e_high, e_low, z_volume,
    drift, vol, chol, ar1, jump_intensity, jump_mean, jump_std, log_jump_comp,
    regime_vol_mult, regime_drift_mult, init_price, base_volume, intrabar_vol,
    dev, out_open, out_high, out_low, out_close, out_volume,
):
    """Write bars t0 .. t0 + n - 1 from noise rows 0 .. n - 1 (n, A); regime (n,) int64; dev (A,) AR(1) state."""
    # One call covers a block of bars: a call per bar pays NRT reference counting (atomic
    # inc/dec) on ~20 array arguments each time, measurably slower at small A.
    n_rows, n_assets = z.shape
    for s in range(n_rows):
        t = t0 + s
        vm = regime_vol_mult[regime[s]]
        dm = regime_drift_mult[regime[s]]
        for i in range(n_assets):
            # chol is lower-triangular, so only j <= i contributes.
            eps = 0.0
            for j in range(i + 1):
                eps += chol[i, j] * z[s, j]
            sigma = vol[i] * vm
            c = drift[i] * dm - 0.5 * sigma * sigma - log_jump_comp
            shock = sigma * eps
            if t == 0:
                dev[i] = shock / np.sqrt(1.0 - ar1[i] * ar1[i])
                px_open = init_price[i]
            else:
                dev[i] = ar1[i] * dev[i] + shock
                px_open = out_close[t - 1, i]
            jump = 0.0
            if u_jump[s, i] < jump_intensity:
                jump = jump_mean + jump_std * z_jump[s, i]
            r = c + dev[i] + jump
            px_close = px_open * np.exp(r)

            # Brownian-bridge excess of the high / low over the body, in log units. The
            # difference form cancels, but only to ~|r| * 1e-16 absolute (negligible next to a
            # wick), and the clamp below absorbs a rounding-negative excess.
            s_bar = intrabar_vol * sigma
            two_s2 = 2.0 * s_bar * s_bar
            r2 = r * r
            abs_r = abs(r)
            x_high = 0.5 * (np.sqrt(r2 + two_s2 * e_high[s, i]) - abs_r)
            x_low = 0.5 * (np.sqrt(r2 + two_s2 * e_low[s, i]) - abs_r)
            # Plain comparisons: Numba's 3-argument max/min compile to out-of-line calls.
            body_high = px_close if px_close > px_open else px_open
            body_low = px_open if px_close > px_open else px_close
            px_high = body_high * np.exp(x_high)
            px_low = body_low * np.exp(-x_low)

            # surprise = |sigma_t eps_t + J_t| / vol[i], with no division on jump-free bars.
            surprise = abs(eps * vm)
            if jump != 0.0:
                surprise = abs(eps * vm + jump / vol[i]) if vol[i] > 0.0 else VOLUME_SURPRISE_CAP
            if surprise > VOLUME_SURPRISE_CAP:
                surprise = VOLUME_SURPRISE_CAP
            log_v = VOLUME_LOG_STD * (z_volume[s, i] - 0.5 * VOLUME_LOG_STD) + VOLUME_SHOCK_BETA * (
                surprise - _MEAN_ABS_NORMAL
            )

            out_open[t, i] = px_open
            out_high[t, i] = px_high if px_high > body_high else body_high
            out_low[t, i] = px_low if px_low < body_low else body_low
            out_close[t, i] = px_close
            out_volume[t, i] = base_volume[i] * np.exp(log_v)


@njit(cache=True, nogil=True)
def build_ohlcv_nb(
    z, u_regime, u_jump, z_jump, e_high, e_low, z_volume,
    drift, vol, chol, ar1, jump_intensity, jump_mean, jump_std,
    regime_p_stay, regime_vol_mult, regime_drift_mult,
    init_price, base_volume, intrabar_vol,
    out_open, out_high, out_low, out_close, out_volume,
):
    """Write OHLCV bars from pre-drawn noise: z, u_jump, z_jump, e_high, e_low, z_volume (T, A); u_regime (T,)."""
    n_bars, n_assets = out_close.shape
    regime = np.zeros(n_bars, dtype=np.int64)
    for t in range(1, n_bars):
        k = regime[t - 1]
        regime[t] = k if u_regime[t] < regime_p_stay[k] else 1 - k
    _write_bars_nb(
        0, regime, z, u_jump, z_jump, e_high, e_low, z_volume,
        drift, vol, chol, ar1, jump_intensity, jump_mean, jump_std,
        _log_jump_compensator_nb(jump_intensity, jump_mean, jump_std),
        regime_vol_mult, regime_drift_mult, init_price, base_volume, intrabar_vol,
        np.empty(n_assets), out_open, out_high, out_low, out_close, out_volume,
    )


_CHUNK = 256  # bars of noise drawn per block: 6 x 256 x A doubles stay cache-resident for small A


@njit(cache=True, nogil=True)
def simulate_market_nb(
    seed, drift, vol, chol, ar1, jump_intensity, jump_mean, jump_std,
    regime_p_stay, regime_vol_mult, regime_drift_mult,
    init_price, base_volume, intrabar_vol,
    out_open, out_high, out_low, out_close, out_volume,
):
    """Seed Numba's RNG with seed (uint32), draw noise block by block and write OHLCV into out_*."""
    np.random.seed(seed)
    n_bars, n_assets = out_close.shape
    chunk = max(1, min(_CHUNK, n_bars))  # range() below needs a positive step even for T = 0
    # A block of noise at a time: O(chunk x A) scratch instead of six (T, A) noise arrays.
    regime = np.zeros(chunk, dtype=np.int64)
    z = np.empty((chunk, n_assets))
    z_volume = np.empty((chunk, n_assets))
    u_jump = np.ones((chunk, n_assets))  # 1.0 never jumps, so jump_intensity == 0 needs no draw
    z_jump = np.zeros((chunk, n_assets))
    e_high = np.empty((chunk, n_assets))
    e_low = np.empty((chunk, n_assets))
    dev = np.empty(n_assets)
    log_jump_comp = _log_jump_compensator_nb(jump_intensity, jump_mean, jump_std)
    draw_jumps = jump_intensity > 0.0
    k = 0
    for t0 in range(0, n_bars, chunk):
        n_rows = min(chunk, n_bars - t0)
        for s in range(n_rows):
            # This draw order is part of the contract (module docstring); conditional draws
            # keep the stream short when a feature is off.
            if t0 + s > 0 and regime_p_stay[k] < 1.0:
                if draw_uniform_nb() >= regime_p_stay[k]:
                    k = 1 - k
            regime[s] = k
            for i in range(n_assets):
                z[s, i] = draw_normal_nb()
                z_volume[s, i] = draw_normal_nb()
            for i in range(n_assets):
                if draw_jumps:
                    u_jump[s, i] = draw_uniform_nb()
                    z_jump[s, i] = draw_normal_nb() if u_jump[s, i] < jump_intensity else 0.0
                e_high[s, i] = draw_exponential_nb()
                e_low[s, i] = draw_exponential_nb()
        _write_bars_nb(
            t0, regime[:n_rows], z[:n_rows], u_jump[:n_rows], z_jump[:n_rows],
            e_high[:n_rows], e_low[:n_rows], z_volume[:n_rows],
            drift, vol, chol, ar1, jump_intensity, jump_mean, jump_std, log_jump_comp,
            regime_vol_mult, regime_drift_mult, init_price, base_volume, intrabar_vol,
            dev, out_open, out_high, out_low, out_close, out_volume,
        )
