"""Simulation mode: every env generates its own market bar by bar inside the fused step.

Each env draws from its own splitmix64 word (``kernels.rng``), so a path depends only on the
env's seed and the parameters: not on the batch size, the other envs or the threads. There is no
shared bar array: the caller keeps the per-env state below and an output row per env that the
step reads like a bar of data.

Contract
--------
Struct-of-arrays, env on axis 0, field names in ``kernels.enums`` (Sim*):

* State: ``sim_state`` float64 (n, N_SIM_STATE, A): CLOSE last close (currency), DEV AR(1)
  deviation of the log return, H GARCH(1,1) conditional variance of the next bar's base shock
  (log units squared, per bar); ``sim_clock`` int64 (n, N_SIM_CLOCK): REGIME in {0, 1} (the
  regime of the next bar), BAR_INDEX bars generated since the reset (the index t of the next
  bar); ``rng`` uint64 (n,) splitmix64 words.
* Parameters, every rate PER BAR (annual figures are converted by the Python layer), each env
  its own: ``sim_asset`` float64 (n, N_SIM_ASSET, A): DRIFT, VOL, GARCH_ALPHA, GARCH_BETA, AR1,
  INIT_PRICE, BASE_VOLUME; ``sim_env`` float64 (n, N_SIM_ENV): JUMP_INTENSITY (probability of
  one jump per bar and asset, independent across assets), JUMP_MEAN, JUMP_STD (log jump size),
  INTRABAR_VOL, and the stress sizes CRASH_SIZE (a log gap, e.g. log(0.8) = -20 %), SPIKE_MULT,
  DROUGHT_MULT. Shared by the batch: ``chol`` float64 (A, A) lower Cholesky factor of the asset
  correlation matrix (upper triangle never read); ``regime_table`` float64 (N_SIM_REGIME, 2):
  P_STAY, VOL_MULT, DRIFT_MULT per regime.
* Stress windows: ``stress`` int64 (n, N_SIM_STRESS): CRASH_BAR, SPIKE_START, SPIKE_LEN,
  DROUGHT_START, DROUGHT_LEN in path bars; a negative bar or start disables one.
* Output: ``sim_next_bar_nb(i, r, ...)`` fully overwrites row r of ``bars`` float64
  (5, rows, A), read as ``bars[BarField.X, r, a]`` (the fused step's layout). Nothing is
  validated here (garch_alpha, garch_beta >= 0 with sum < 1, |ar1| < 1, vol >= 0,
  probabilities in [0, 1]): the Python layer checks inputs once.

Process (env i, asset a, bar t = bar_index[i]; the regime k is shared by the env's assets)
-----------------------------------------------------------------------------------------
::

    k_t     = k_{t-1} if u_regime < P_STAY[k_{t-1}] else 1 - k_{t-1}  (t >= 1; k_0 = 0)
    m_t     = VOL_MULT[k_t] * (SPIKE_MULT if t in the spike window else 1)
    sigma_t = sqrt(h_t) * m_t
    c_t     = drift * DRIFT_MULT[k_t] - sigma_t**2 / 2 - log(1 + jump_intensity * kappa),
              kappa = exp(jump_mean + jump_std**2 / 2) - 1
    e_t     = (chol @ z_t)[a],                   z_t ~ N(0, I_A)
    dev_t   = ar1 * dev_{t-1} + sigma_t * e_t
    J_t     = jump_mean + jump_std * zj  if u_jump < jump_intensity else 0
    r_t     = c_t + dev_t + J_t                  log(close_t / open_t)
    G_t     = crash_size if t == crash_bar[i] else 0     (the same gap for every asset)
    open_t  = close_{t-1} * exp(G_t)             no gap, except the crash gaps the open
    close_t = open_t * exp(r_t)
    h_{t+1} = omega + garch_alpha * eps_t**2 + garch_beta * h_t,
              eps_t = sqrt(h_t) * e_t,   omega = vol**2 * (1 - garch_alpha - garch_beta)

Drift convention (as ``kernels.markets``): the Ito term and the jump compensator live in c_t,
so with ar1 = 0, E[close_t / open_t | past] = exp(drift * DRIFT_MULT[k_t]): ``drift`` is
the mean simple return per bar to first order, and the mean log return per bar in regime 0 is
``drift - vol**2 / 2 - log(1 + jump_intensity * kappa)`` (E[h_t] = vol**2 at every t since h
starts at vol**2). ``vol`` is the unconditional std of the AR(1) innovation, so the std of r_t
(regime 0, no jumps) is ``vol / sqrt(1 - ar1**2)``. With garch_alpha = garch_beta = 0, h stays
vol**2 exactly and the model is the correlated GBM of ``kernels.markets``.

GARCH is driven by the base shock eps_t = sqrt(h_t) e_t, the realised diffusive shock before
the regime and spike multipliers m_t, and not by jumps or the crash: feeding m_t back would make
the recursion explosive (alpha m**2 + beta >= 1) in a high-vol regime, and one crash would lift
h ~100-fold. The multipliers scale volatility on top of a stationary GARCH of mean vol**2.

Reset (``sim_reset_env_nb``): close = init_price, h = vol**2 (its unconditional mean), regime 0,
bar_index 0, and dev = vol * e / sqrt(1 - ar1**2) with e = chol @ z: the stationary law of the
AR(1) (exact when the assets share ar1; the markets approximation otherwise).

Wicks and volume as ``kernels.markets``: a Brownian bridge in log space from log open to log
close with std ``s = intrabar_vol * sigma_t``; its maximum exceeds the body by
``(sqrt(r_t**2 + 2 s**2 E) - |r_t|) / 2``, E ~ Exp(1), independent for the high and the low, so
``0 < low <= min(open, close) <= max(open, close) <= high`` by construction (and clamped against
rounding). Volume is lognormal around base_volume and rises with the bar's surprise::

    V = base_volume * exp(VOLUME_LOG_STD * (zv - VOLUME_LOG_STD / 2)
                          + VOLUME_SHOCK_BETA * (min(S, VOLUME_SURPRISE_CAP) - sqrt(2 / pi)))
        * (drought_mult if t in the drought window else 1)
    S = |sigma_t e_t + J_t + G_t| / vol   (|e_t m_t| if vol == 0 and nothing jumps, else the cap)

so high-vol regimes, vol spikes, jumps and the crash bar trade more.

Stress windows: the vol spike multiplies sigma_t (so also the Ito term, the wicks and the
surprise) for ``vol_spike_start[i] <= t < vol_spike_start[i] + vol_spike_len``; the drought
multiplies V for ``drought_start[i] <= t < drought_start[i] + drought_len``; a negative start
disables a window. None of the stresses changes the random stream, so outside its window (and
before the crash) a path is identical to the unstressed one.

Random numbers (env i's splitmix64 word only; per bar, in this order)
---------------------------------------------------------------------
1. for a = 0 .. A-1: z_t[a], zv[a], then zj[a] only if jump_intensity > 0 (normals);
2. for a = A-1 .. 0 (backwards, see Cost): u_jump only if jump_intensity > 0, then E_high,
   E_low (exponentials);
3. the uniform that picks k_{t+1}, only if regime_p_stay[k_t] < 1 (so ``regime[i]`` always
   holds the regime of the next bar, like ``h`` and ``bar_index``).

``uniform_nb`` is (top 52 bits + 0.5) * 2**-52: 2**52 equally likely values, symmetric about
1/2, exact and strictly inside (0, 1). (With 53 bits the half-step offset is not representable
in [1/2, 1) and the largest value would round to 1.0.) ``normal_nb`` and ``exponential_nb`` are
the 256-layer ziggurats of ``kernels.markets`` (same tables, Marsaglia & Tsang 2000) fed with
the top 61 bits of one splitmix64 word 98.8 % of the time, further words on the rare wedge or
tail. They replace Box-Muller / the polar method, which need a log and a sqrt (and sin/cos, or a
rejection loop) per pair: ~30 ns per polar pair against ~3 ns per ziggurat draw here, so the
polar method alone took the whole per-bar budget. The ``*_word_nb`` forms map a word to
(draw, advanced word) so that the bar kernel keeps the env's word in a register; the
``(state, i)`` forms advance ``state[i]`` identically.

Cost
----
``sim_next_bar_nb`` and everything it calls are ``inline="always"``, to be fused into the
caller's env loop. Numba increments the reference count of every array argument of an inlined
call and decrements it where the array is last used; its pruning pass removes these ~20 atomic
pairs per env-bar (which would triple the cost) only if (1) nothing in the loop body calls out
of line or can raise (hence inlined ziggurat slow paths and no tuple indexing, which can raise
IndexError; the caller's loop body must obey this too) and (2) the arrays die together: the
small arrays are read before the first branch, all the others are used in the last asset loop
or after it (hence the backwards loop that computes chol @ z in place). ``exp_nb`` replaces
libm's exp (a table, within 2 ulp, no call). Measured on one thread, plain GBM (A = 1):
~60-90 ns per asset-bar (11-16 M/s on a shared 2-vCPU VM), about twice the cost of a bare loop
of the same four draws, four exps and two square roots.
"""

import math

import numpy as np
from numba import njit, prange

from kernels.enums import BarField, SimAsset, SimClock, SimEnv, SimRegime, SimState, SimStress
from kernels.markets import (  # the ziggurat tables are shared with the whole-path generator
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
from kernels.rng import _GOLDEN, _MIX1, _MIX2, _S27, _S30, _S31, randint_nb

_S3 = np.uint64(3)
_S12 = np.uint64(12)
_TWO_M52 = 2.0**-52
_MEAN_ABS_NORMAL = 0.7978845608028654  # E|N(0, 1)| = sqrt(2 / pi): centres the surprise term
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME = BarField  # plain ints for the kernels
_DRIFT, _VOL, _GARCH_ALPHA, _GARCH_BETA, _AR1, _INIT_PRICE, _BASE_VOLUME = SimAsset
_JUMP_INTENSITY, _JUMP_MEAN, _JUMP_STD, _INTRABAR_VOL, _CRASH_SIZE, _SPIKE_MULT = SimEnv[:6]
_DROUGHT_MULT = SimEnv.DROUGHT_MULT
_CRASH_BAR, _SPIKE_START, _SPIKE_LEN, _DROUGHT_START, _DROUGHT_LEN = SimStress
_P_STAY, _VOL_MULT, _DRIFT_MULT = SimRegime
_CLOSE_S, _DEV, _H = SimState
_REGIME, _BAR_INDEX = SimClock

# exp_nb: x = (64 m + j) ln2 / 64 + r with |r| <= ln2 / 128, exp(x) = 2**m * 2**(j / 64) * e**r.
# ln2 / 64 is split Cody-Waite style (fdlibm's ln2_hi has 21 trailing zero bits, so k * hi is
# exact for |k| < 2**21); the degree-5 Taylor polynomial is exact to 4e-17 on |r| <= 0.0055 and
# is evaluated by Estrin's scheme (half the latency of Horner's). For |x| >= 708 the argument
# is clamped and 2**m applied as two exact powers of two, so that overflow to inf and gradual
# underflow come out of the multiplications (no libm call, whose mere presence costs here).
_EXP_TABLE = 2.0 ** (np.arange(64) / 64.0)
_EXP_INV = 64.0 / math.log(2.0)
_EXP_HI = 6.93147180369123816490e-01 / 64.0
_EXP_LO = 1.90821492927058770002e-10 / 64.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exp_nb(x):
    """exp(x) within 2 ulp for normal results, with no libm call (64-entry table, degree 5)."""
    wide = not abs(x) < 708.0  # also NaN
    if wide:
        if np.isnan(x):
            return x
        x = min(max(x, -746.0), 710.0)  # exp is 0 or inf beyond
    kf = np.rint(x * _EXP_INV)
    r = (x - kf * _EXP_HI) - kf * _EXP_LO
    r2 = r * r
    p = (1.0 + r) + r2 * ((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)))
    k = np.int64(kf)
    p *= _EXP_TABLE[k & 63]
    m = k >> 6
    if wide:
        # 2**m in two exact factors, both normal for m in [-1077, 1024]: overflow to inf and
        # gradual underflow come out of the multiplications.
        m1 = m >> 1
        p *= np.int64((m1 + 1023) << 52).view(np.float64)
        m -= m1
    return p * np.int64((m + 1023) << 52).view(np.float64)  # 2**m from its exponent bits


# ---- per-env random numbers ------------------------------------------------------------------
# Everything here is inlined, the rare ziggurat slow paths included (see Cost in the docstring).
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _mix_nb(s):
    """splitmix64 output function of an already advanced word (as ``kernels.rng.next_u64_nb``)."""
    z = (s ^ (s >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def uniform_word_nb(s):
    """(U(0, 1), advanced word) from the splitmix64 word s: top 52 bits plus half a step."""
    s = s + _GOLDEN
    return (np.float64(_mix_nb(s) >> _S12) + 0.5) * _TWO_M52, s


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def normal_word_nb(s):
    """(N(0, 1), advanced word) from the splitmix64 word s by the 256-layer ziggurat."""
    while True:
        s = s + _GOLDEN
        bits = np.int64(_mix_nb(s) >> _S3)  # 61 bits: 8 layer + 1 sign + 52 magnitude
        idx = bits & 0xFF
        neg = (bits >> 8) & 1
        mag = bits >> 9
        x = mag * _ZN_W[idx]
        if mag < _ZN_K[idx]:  # inside the layer's rectangle: 98.8 % of the draws
            return (-x if neg else x), s
        if idx == 0:
            # Tail beyond R by Marsaglia's method: R + X, X ~ Exp(rate R) kept w.p. exp(-X^2/2).
            while True:
                u1, s = uniform_word_nb(s)
                u2, s = uniform_word_nb(s)
                xx = -np.log(u1) / _ZN_R
                yy = -np.log(u2)
                if yy + yy > xx * xx:
                    return (-(_ZN_R + xx) if neg else _ZN_R + xx), s
        # Wedge: accept if a uniform height inside the layer falls under the density.
        u1, s = uniform_word_nb(s)
        if _ZN_F[idx] + u1 * (_ZN_F[idx - 1] - _ZN_F[idx]) < np.exp(-0.5 * x * x):
            return (-x if neg else x), s


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exponential_word_nb(s):
    """(Exp(1), advanced word) from the splitmix64 word s by the 256-layer ziggurat."""
    while True:
        s = s + _GOLDEN
        bits = np.int64(_mix_nb(s) >> _S3)  # 61 bits: 8 layer + 53 magnitude
        idx = bits & 0xFF
        mag = bits >> 8
        x = mag * _ZE_W[idx]
        if mag < _ZE_K[idx]:  # 98.9 % of the draws
            return x, s
        u1, s = uniform_word_nb(s)
        if idx == 0:
            return _ZE_R - np.log(u1), s  # the tail beyond R is R + Exp(1)
        if _ZE_F[idx] + u1 * (_ZE_F[idx - 1] - _ZE_F[idx]) < np.exp(-x):
            return x, s


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def uniform_nb(state, i):
    """U(0, 1) for env i (one splitmix64 step of state[i], as ``next_u64_nb``)."""
    u, state[i] = uniform_word_nb(state[i])
    return u


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def normal_nb(state, i):
    """N(0, 1) for env i (ziggurat; one splitmix64 step 98.8 % of the time)."""
    z, state[i] = normal_word_nb(state[i])
    return z


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exponential_nb(state, i):
    """Exp(1) for env i (ziggurat; one splitmix64 step 98.9 % of the time)."""
    x, state[i] = exponential_word_nb(state[i])
    return x


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def draw_crash_bar_nb(state, i, lo, hi):
    """Bar index uniform in [lo, hi] (inclusive) for env i's crash (or a stress window's start)."""
    return randint_nb(state, i, lo, hi)


# ---- the bar kernels -------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sim_reset_env_nb(i, rng, sim_asset, chol, sim_state, sim_clock):
    """Reset env i: close = init_price, h = vol**2, dev stationary (A normals), regime 0, bar 0."""
    n_assets = sim_state.shape[2]
    s = rng[i]
    for a in range(n_assets):
        sim_state[i, _DEV, a], s = normal_word_nb(s)  # z, held in dev until e = chol @ z
    # Backwards, so each slot is overwritten only after the larger assets have read it
    # (chol is lower-triangular: asset a reads z_0 .. z_a).
    for a in range(n_assets - 1, -1, -1):
        e = 0.0
        for j in range(a + 1):
            e += chol[a, j] * sim_state[i, _DEV, j]
        vol = sim_asset[i, _VOL, a]
        ar1 = sim_asset[i, _AR1, a]
        sim_state[i, _DEV, a] = vol * e / np.sqrt(1.0 - ar1 * ar1)
        sim_state[i, _CLOSE_S, a] = sim_asset[i, _INIT_PRICE, a]
        sim_state[i, _H, a] = vol * vol
    rng[i] = s
    sim_clock[i, _REGIME] = 0
    sim_clock[i, _BAR_INDEX] = 0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sim_next_bar_nb(i, r, rng, sim_asset, sim_env, chol, regime_table, stress, sim_state,
                    sim_clock, bars):
    """Write env i's next bar into row r of bars (5, rows, A) and advance its state one bar."""
    # Layout for speed (see Cost in the module docstring): the small arrays are read here,
    # before any branch, and the others last in the final asset loop or after it.
    n_assets = sim_state.shape[2]
    t = sim_clock[i, _BAR_INDEX]
    k = sim_clock[i, _REGIME]
    s = rng[i]
    p_stay = regime_table[_P_STAY, k]
    vm = regime_table[_VOL_MULT, k]
    dm = regime_table[_DRIFT_MULT, k]
    jump_intensity = sim_env[i, _JUMP_INTENSITY]
    jump_mean = sim_env[i, _JUMP_MEAN]
    jump_std = sim_env[i, _JUMP_STD]
    intrabar_vol = sim_env[i, _INTRABAR_VOL]
    crash_t = stress[i, _CRASH_BAR]
    spike_t = stress[i, _SPIKE_START]
    drought_t = stress[i, _DROUGHT_START]
    spike_len = stress[i, _SPIKE_LEN]
    drought_len = stress[i, _DROUGHT_LEN]
    crash_size = sim_env[i, _CRASH_SIZE]
    spike_mult = sim_env[i, _SPIKE_MULT]
    drought_mult = sim_env[i, _DROUGHT_MULT]

    if 0 <= spike_t <= t < spike_t + spike_len:
        vm *= spike_mult
    v_mult = drought_mult if 0 <= drought_t <= t < drought_t + drought_len else 1.0
    gap = 0.0
    gap_factor = 1.0
    if t == crash_t:
        gap = crash_size
        gap_factor = exp_nb(gap)
    draw_jumps = jump_intensity > 0.0
    log_jump_comp = 0.0
    if draw_jumps:
        log_jump_comp = np.log1p(jump_intensity * (np.exp(jump_mean + 0.5 * jump_std**2) - 1.0))

    # Normals into the output row, which is scratch until the bar is written: z in HIGH, zv in
    # VOLUME, zj in LOW. One draw site in a loop keeps the inlined ziggurat small.
    n_normals = 3 if draw_jumps else 2
    for a in range(n_assets):
        for q in range(n_normals):
            x, s = normal_word_nb(s)
            # q = 0, 1, 2 -> HIGH, VOLUME, LOW (arithmetic: a tuple lookup could raise)
            bars[_HIGH + 3 * q - 5 * (q >> 1), r, a] = x

    # Backwards: e = chol @ z replaces z in place (asset a reads z_0 .. z_a only).
    for a in range(n_assets - 1, -1, -1):
        e = 0.0
        for j in range(a + 1):
            e += chol[a, j] * bars[_HIGH, r, j]
        h_t = sim_state[i, _H, a]
        vol_a = sim_asset[i, _VOL, a]
        ga = sim_asset[i, _GARCH_ALPHA, a]
        gb = sim_asset[i, _GARCH_BETA, a]
        no_garch = ga == 0.0 and gb == 0.0
        # Without GARCH h == vol**2 exactly, and sqrt(vol**2) == vol in IEEE arithmetic.
        sd = vol_a if no_garch else np.sqrt(h_t)
        sigma = sd * vm
        shock = sigma * e
        d = sim_asset[i, _AR1, a] * sim_state[i, _DEV, a] + shock
        jump = 0.0
        if draw_jumps:
            u, s = uniform_word_nb(s)
            if u < jump_intensity:
                jump = jump_mean + jump_std * bars[_LOW, r, a]
        ret = sim_asset[i, _DRIFT, a] * dm - 0.5 * sigma * sigma - log_jump_comp + d + jump
        px_open = sim_state[i, _CLOSE_S, a] * gap_factor
        px_close = px_open * exp_nb(ret)

        # Brownian-bridge excess of the high / low over the body, in log units.
        e_high = 0.0
        e_low = 0.0
        for q in range(2):  # one draw site (see the normals)
            x, s = exponential_word_nb(s)
            if q == 0:
                e_high = x
            else:
                e_low = x
        s_bar = intrabar_vol * sigma
        two_s2 = 2.0 * s_bar * s_bar
        r2 = ret * ret
        abs_r = abs(ret)
        body_high = px_close if px_close > px_open else px_open
        body_low = px_open if px_close > px_open else px_close
        px_high = body_high * exp_nb(0.5 * (np.sqrt(r2 + two_s2 * e_high) - abs_r))
        px_low = body_low * exp_nb(-0.5 * (np.sqrt(r2 + two_s2 * e_low) - abs_r))

        # |sigma e + J + G| / vol, as e m sqrt(h) / vol + (J + G) / vol: no division on the
        # common bar (no GARCH, no jump).
        x = e * vm
        if not no_garch and vol_a > 0.0:
            x *= sd / vol_a
        move = jump + gap
        if move != 0.0:
            x = x + move / vol_a if vol_a > 0.0 else VOLUME_SURPRISE_CAP
        surprise = abs(x)
        if surprise > VOLUME_SURPRISE_CAP:
            surprise = VOLUME_SURPRISE_CAP
        log_v = VOLUME_LOG_STD * (bars[_VOLUME, r, a] - 0.5 * VOLUME_LOG_STD) + (
            VOLUME_SHOCK_BETA * (surprise - _MEAN_ABS_NORMAL)
        )

        bars[_OPEN, r, a] = px_open
        bars[_HIGH, r, a] = px_high if px_high > body_high else body_high
        bars[_LOW, r, a] = px_low if px_low < body_low else body_low
        bars[_CLOSE, r, a] = px_close
        bars[_VOLUME, r, a] = sim_asset[i, _BASE_VOLUME, a] * exp_nb(log_v) * v_mult
        # omega + alpha eps**2 + beta h with eps**2 = h e**2; exactly vol**2 without GARCH.
        sim_state[i, _H, a] = vol_a * vol_a * (1.0 - ga - gb) + (ga * e * e + gb) * h_t
        sim_state[i, _DEV, a] = d
        sim_state[i, _CLOSE_S, a] = px_close

    # The regime of the next bar (k_{t+1}), drawn last.
    if p_stay < 1.0:
        u, s = uniform_word_nb(s)
        if u >= p_stay:
            k = 1 - k
    rng[i] = s
    sim_clock[i, _REGIME] = k
    sim_clock[i, _BAR_INDEX] = t + 1


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def sim_step_all_nb(rng, sim_asset, sim_env, chol, regime_table, stress, sim_state, sim_clock,
                    out_bars):
    """Every env's next bar into out_bars (5, n, A) (env i in row i), envs in parallel."""
    for i in prange(sim_state.shape[0]):
        sim_next_bar_nb(i, i, rng, sim_asset, sim_env, chol, regime_table, stress, sim_state,
                        sim_clock, out_bars)
