"""Tests for kernels/simulation.py (per-env, bar-by-bar synthetic markets).

* the per-env draws and one bar against a plain-Python reference (splitmix64, the ziggurats and
  the process written from the module docstring), bit for bit or to 1e-12;
* determinism: a path depends only on its env's seed;
* invariants (OHLC order, positivity) over long runs with every feature and stress on;
* statistics over many envs: log-return mean and std (Ito convention), correlation, AR(1),
  jump frequency and compensator, GARCH clustering and variance, regimes, the three stresses;
* per-env parameters: envs with different parameters share a batch without affecting each other;
* the layout that lets Numba prune reference counts (a 3x cost otherwise).

Every path comes from ``run_paths_nb``, a test-only batch loop: reset all envs, then for each
bar step every env once (the order of a batched step), env i writing bar t into row t of its own
(5, T, A) block. Tests name the parameters as before the packed layout (``make_params``,
``make_stress``, which the plain-Python reference reads); ``pack`` builds the kernel's
struct-of-arrays (``sim_asset``, ``sim_env``, ``chol``, ``regime_table``, ``stress``) from them.
"""

import math
import re

import numba
import numpy as np
import pytest
from numba import njit

from kernels.enums import (
    N_SIM_ASSET,
    N_SIM_CLOCK,
    N_SIM_ENV,
    N_SIM_REGIME,
    N_SIM_STATE,
    N_SIM_STRESS,
    BarField,
    SimAsset,
    SimClock,
    SimEnv,
    SimRegime,
    SimState,
    SimStress,
)
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
from kernels.rng import next_u64_nb
from kernels.simulation import (
    draw_crash_bar_nb,
    exp_nb,
    exponential_nb,
    normal_nb,
    sim_next_bar_nb,
    sim_reset_env_nb,
    sim_step_all_nb,
    uniform_nb,
)

OPEN, HIGH, LOW, CLOSE, VOLUME = BarField
S_CLOSE, S_DEV, S_H = SimState
C_REGIME, C_BAR_INDEX = SimClock


# ----------------------------------------------------------------------------------------------
# Batch driver and parameters
# Not cached: Numba's cache does not see changes to inlined callees in other modules,
# so a cached copy would keep testing the old kernel.
@njit(nogil=True, error_model="numpy")
def run_paths_nb(rng, n_bars, sim_asset, sim_env, chol, regime_table, stress):
    """Reset every env, then n_bars batched steps (every env once per bar, the order of a
    batched step). Env i writes bar t straight into row t of its own block bars[i] (5, T, A)
    (so r != i, unlike sim_step_all_nb). Returns bars (n, 5, T, A) and the regime of each bar
    (n, T)."""
    n = sim_asset.shape[0]
    n_assets = sim_asset.shape[2]
    sim_state = np.empty((n, N_SIM_STATE, n_assets))
    sim_clock = np.empty((n, N_SIM_CLOCK), dtype=np.int64)
    bars = np.empty((n, 5, n_bars, n_assets))
    regimes = np.empty((n, n_bars), dtype=np.int64)
    for i in range(n):
        sim_reset_env_nb(i, rng, sim_asset, chol, sim_state, sim_clock)
    for t in range(n_bars):
        for i in range(n):
            regimes[i, t] = sim_clock[i, C_REGIME]
            sim_next_bar_nb(i, t, rng, sim_asset, sim_env, chol, regime_table, stress,
                            sim_state, sim_clock, bars[i])
    return bars, regimes


# Named parameters (the plain-Python reference reads these) -> packed fields (the kernel's).
ASSET_KEYS = {  # make_params key -> SimAsset row, per env and asset
    "drift": SimAsset.DRIFT, "vol": SimAsset.VOL, "garch_alpha": SimAsset.GARCH_ALPHA,
    "garch_beta": SimAsset.GARCH_BETA, "ar1": SimAsset.AR1, "init_price": SimAsset.INIT_PRICE,
    "base_volume": SimAsset.BASE_VOLUME,
}
ENV_PARAM_KEYS = {  # make_params key -> SimEnv column
    "jump_intensity": SimEnv.JUMP_INTENSITY, "jump_mean": SimEnv.JUMP_MEAN,
    "jump_std": SimEnv.JUMP_STD, "intrabar_vol": SimEnv.INTRABAR_VOL,
}
ENV_STRESS_KEYS = {  # make_stress key -> SimEnv column (the stress sizes)
    "crash_size": SimEnv.CRASH_SIZE, "vol_spike_mult": SimEnv.SPIKE_MULT,
    "drought_mult": SimEnv.DROUGHT_MULT,
}
STRESS_KEYS = {  # make_stress key -> SimStress column (the windows, in path bars)
    "crash_bar": SimStress.CRASH_BAR, "vol_spike_start": SimStress.SPIKE_START,
    "vol_spike_len": SimStress.SPIKE_LEN, "drought_start": SimStress.DROUGHT_START,
    "drought_len": SimStress.DROUGHT_LEN,
}
REGIME_KEYS = {  # make_params key -> SimRegime row (shared by the batch)
    "regime_p_stay": SimRegime.P_STAY, "regime_vol_mult": SimRegime.VOL_MULT,
    "regime_drift_mult": SimRegime.DRIFT_MULT,
}
SCALAR_NAMES = tuple(ENV_PARAM_KEYS)


def make_params(n_assets=1, **kw):
    """Plain GBM (vol 1 % per bar, drift 2 bp) unless overridden: one env's named parameters."""
    ones = np.ones(n_assets)
    p = {
        "init_price": 100.0 * ones, "drift": 2e-4 * ones, "vol": 0.01 * ones,
        "chol": np.eye(n_assets), "garch_alpha": 0.0 * ones, "garch_beta": 0.0 * ones,
        "ar1": 0.0 * ones, "jump_intensity": 0.0, "jump_mean": 0.0, "jump_std": 0.0,
        "regime_p_stay": np.ones(2), "regime_vol_mult": np.ones(2),
        "regime_drift_mult": np.ones(2), "intrabar_vol": 0.5, "base_volume": 1e6 * ones,
    }
    for key, value in kw.items():
        assert key in p, key
        p[key] = value
    for key in p:
        if key in SCALAR_NAMES:
            p[key] = float(p[key])
        elif key == "chol" or key.startswith("regime_"):
            p[key] = np.ascontiguousarray(p[key], dtype=np.float64)
        else:
            p[key] = np.broadcast_to(np.asarray(p[key], dtype=np.float64), (n_assets,)).copy()
    return p


def make_stress(n, **kw):
    """n envs' stress windows and sizes, every entry an (n,) array (none active by default)."""
    s = {
        "crash_bar": -1, "crash_size": math.log(0.8), "vol_spike_start": -1,
        "vol_spike_len": 0, "vol_spike_mult": 1.0, "drought_start": -1, "drought_len": 0,
        "drought_mult": 1.0,
    }
    for key, value in kw.items():
        assert key in s, key
        s[key] = value
    for key, value in s.items():
        dtype = np.int64 if key in STRESS_KEYS else np.float64
        s[key] = np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()
    return s


def pack(params, stress):
    """The kernel's packed arrays (sim_asset, sim_env, chol, regime_table, stress) for the
    n = len(stress["crash_bar"]) envs of ``stress``: ``params`` is one make_params dict shared
    by every env, or a list of n of them (one per env; chol and the regime table must agree,
    the kernel shares them)."""
    n = stress["crash_bar"].shape[0]
    per_env = list(params) if isinstance(params, (list, tuple)) else [params] * n
    assert len(per_env) == n
    first = per_env[0]
    for p in per_env[1:]:
        for key in ("chol", *REGIME_KEYS):
            np.testing.assert_array_equal(p[key], first[key])  # shared by the batch
    n_assets = first["init_price"].shape[0]
    sim_asset = np.empty((n, N_SIM_ASSET, n_assets))
    for key, row in ASSET_KEYS.items():
        sim_asset[:, row] = [p[key] for p in per_env]
    sim_env = np.empty((n, N_SIM_ENV))
    for key, col in ENV_PARAM_KEYS.items():
        sim_env[:, col] = [p[key] for p in per_env]
    for key, col in ENV_STRESS_KEYS.items():
        sim_env[:, col] = stress[key]
    packed_stress = np.empty((n, N_SIM_STRESS), dtype=np.int64)
    for key, col in STRESS_KEYS.items():
        packed_stress[:, col] = stress[key]
    regime_table = np.empty((N_SIM_REGIME, 2))
    for key, row in REGIME_KEYS.items():
        regime_table[row] = first[key]
    chol = np.ascontiguousarray(first["chol"], dtype=np.float64)
    return sim_asset, sim_env, chol, regime_table, packed_stress


def new_state(n, n_assets, fill=None):
    """Uninitialised (or `fill`ed) sim_state (n, N_SIM_STATE, A), sim_clock (n, N_SIM_CLOCK)."""
    sim_state = np.empty((n, N_SIM_STATE, n_assets))
    sim_clock = np.empty((n, N_SIM_CLOCK), dtype=np.int64)
    if fill is not None:
        sim_state[...] = fill
        sim_clock[...] = fill
    return sim_state, sim_clock


def seeds(n, base=12345):
    return (np.arange(n, dtype=np.uint64) * np.uint64(0x2545F4914F6CDD1D)) ^ np.uint64(base)


def run(rng, n_bars, params, stress):
    """run_paths_nb on a copy of rng (params as in ``pack``); returns bars (n, T, 5, A), the
    regimes (n, T) and the final words."""
    rng = rng.copy()
    bars, regimes = run_paths_nb(rng, n_bars, *pack(params, stress))
    return bars.transpose(0, 2, 1, 3), regimes, rng


def log_returns(bars):
    """Close-to-close log returns (n, T - 1, A)."""
    return np.diff(np.log(bars[:, :, CLOSE, :]), axis=1)


def lag1_autocorr(x):
    """Lag-1 autocorrelation along axis 1, pooled over envs, per asset: x (n, T, A)."""
    x = x - x.mean(axis=(0, 1))
    return (x[:, 1:] * x[:, :-1]).sum(axis=(0, 1)) / (x * x).sum(axis=(0, 1))


def everything_on(n, n_assets=3):
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])[:n_assets, :n_assets]
    params = make_params(
        n_assets,
        init_price=np.array([100.0, 20.0, 5000.0])[:n_assets],
        drift=np.array([2e-4, -1e-4, 0.0])[:n_assets],
        vol=np.array([0.01, 0.03, 0.0])[:n_assets],
        chol=np.linalg.cholesky(corr),
        garch_alpha=np.array([0.1, 0.0, 0.05])[:n_assets],
        garch_beta=np.array([0.85, 0.0, 0.9])[:n_assets],
        ar1=np.array([0.2, -0.4, 0.0])[:n_assets],
        jump_intensity=0.2, jump_mean=-0.05, jump_std=0.04,
        regime_p_stay=np.array([0.8, 0.6]), regime_vol_mult=np.array([1.0, 2.5]),
        regime_drift_mult=np.array([1.0, -1.0]), intrabar_vol=0.7,
        base_volume=np.array([1e6, 5e5, 2e3])[:n_assets],
    )
    k = np.arange(n)
    stress = make_stress(
        n, crash_bar=np.where(k % 3 == 0, 10 + k % 7, np.where(k % 3 == 1, 0, -1)),
        vol_spike_start=np.where(k % 2 == 0, 5, -1), vol_spike_len=10, vol_spike_mult=4.0,
        drought_start=np.where(k % 4 < 2, 20, -1), drought_len=10, drought_mult=0.1,
    )
    return params, stress


# ----------------------------------------------------------------------------------------------
# Plain-Python reference
MASK = (1 << 64) - 1
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
ZN = ([int(v) for v in _ZN_K], [float(v) for v in _ZN_W], [float(v) for v in _ZN_F])
ZE = ([int(v) for v in _ZE_K], [float(v) for v in _ZE_W], [float(v) for v in _ZE_F])


class PyRng:
    """splitmix64 and the documented uniform / ziggurat draws, in Python integers and floats."""

    def __init__(self, word):
        self.s = int(word)
        self.slow = 0  # draws that left the ziggurat's fast path
        self.tails = 0

    def u64(self):
        self.s = (self.s + GOLDEN) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * MIX1) & MASK
        z = ((z ^ (z >> 27)) * MIX2) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return ((self.u64() >> 12) + 0.5) * 2.0**-52

    def normal(self):
        k, w, f = ZN
        while True:
            bits = self.u64() >> 3
            idx, neg, mag = bits & 0xFF, (bits >> 8) & 1, bits >> 9
            x = mag * w[idx]
            if mag < k[idx]:
                return -x if neg else x
            self.slow += 1
            if idx == 0:
                self.tails += 1
                while True:
                    xx = -math.log(self.uniform()) / _ZN_R
                    yy = -math.log(self.uniform())
                    if yy + yy > xx * xx:
                        return -(_ZN_R + xx) if neg else _ZN_R + xx
            if f[idx] + self.uniform() * (f[idx - 1] - f[idx]) < math.exp(-0.5 * x * x):
                return -x if neg else x

    def exponential(self):
        k, w, f = ZE
        while True:
            bits = self.u64() >> 3
            idx, mag = bits & 0xFF, bits >> 8
            x = mag * w[idx]
            if mag < k[idx]:
                return x
            self.slow += 1
            u = self.uniform()
            if idx == 0:
                self.tails += 1
                return _ZE_R - math.log(u)
            if f[idx] + u * (f[idx - 1] - f[idx]) < math.exp(-x):
                return x


def in_window(start, length, t):
    return start >= 0 and start <= t < start + length


def reference_paths(word, n_bars, p, s, i):
    """Env i's bars (T, 5, A) from the module docstring, in Python floats (log-space wicks):
    p is env i's named parameters (a make_params dict), s the batch's make_stress dict."""
    rng = PyRng(word)
    s = {key: value[i].item() for key, value in s.items()}  # env i's stress, Python scalars
    n_assets = len(p["init_price"])
    chol, vol, ar1 = p["chol"], p["vol"], p["ar1"]
    z = [rng.normal() for _ in range(n_assets)]
    dev = [0.0] * n_assets
    for a in range(n_assets):
        e = sum(chol[a, j] * z[j] for j in range(a + 1))
        dev[a] = vol[a] * e / math.sqrt(1.0 - ar1[a] ** 2)
    close = [float(x) for x in p["init_price"]]
    h = [v * v for v in vol]
    k = 0
    lam = p["jump_intensity"]
    comp = math.log1p(lam * (math.exp(p["jump_mean"] + 0.5 * p["jump_std"] ** 2) - 1.0))
    out = np.empty((n_bars, 5, n_assets))
    regimes = []
    for t in range(n_bars):
        regimes.append(k)
        m = p["regime_vol_mult"][k]
        if in_window(s["vol_spike_start"], s["vol_spike_len"], t):
            m *= s["vol_spike_mult"]
        gap = s["crash_size"] if t == s["crash_bar"] else 0.0
        normals = [[rng.normal() for _ in range(3 if lam > 0.0 else 2)] for _ in range(n_assets)]
        for a in reversed(range(n_assets)):
            e = sum(chol[a, j] * normals[j][0] for j in range(a + 1))
            sigma = math.sqrt(h[a]) * m
            dev[a] = ar1[a] * dev[a] + sigma * e
            jump = 0.0
            if lam > 0.0 and rng.uniform() < lam:
                jump = p["jump_mean"] + p["jump_std"] * normals[a][2]
            c = p["drift"][a] * p["regime_drift_mult"][k] - 0.5 * sigma * sigma - comp
            r = c + dev[a] + jump
            e_high, e_low = rng.exponential(), rng.exponential()
            lo = math.log(close[a]) + gap
            lc = lo + r
            s2 = (p["intrabar_vol"] * sigma) ** 2
            log_high = 0.5 * (lo + lc + math.sqrt((lc - lo) ** 2 + 2.0 * s2 * e_high))
            log_low = 0.5 * (lo + lc - math.sqrt((lc - lo) ** 2 + 2.0 * s2 * e_low))
            if vol[a] > 0.0:
                surprise = abs(sigma * e + jump + gap) / vol[a]
            else:
                surprise = abs(e * m) if jump + gap == 0.0 else VOLUME_SURPRISE_CAP
            surprise = min(surprise, VOLUME_SURPRISE_CAP)
            log_v = (VOLUME_LOG_STD * normals[a][1] - 0.5 * VOLUME_LOG_STD**2
                     + VOLUME_SHOCK_BETA * (surprise - math.sqrt(2 / math.pi)))
            drought = in_window(s["drought_start"], s["drought_len"], t)
            out[t, OPEN, a] = close[a] * math.exp(gap)
            out[t, CLOSE, a] = out[t, OPEN, a] * math.exp(r)
            out[t, HIGH, a] = math.exp(log_high)
            out[t, LOW, a] = math.exp(log_low)
            out[t, VOLUME, a] = (p["base_volume"][a] * math.exp(log_v)
                            * (s["drought_mult"] if drought else 1.0))
            eps = math.sqrt(h[a]) * e
            alpha, beta = p["garch_alpha"][a], p["garch_beta"][a]
            h[a] = vol[a] ** 2 * (1.0 - alpha - beta) + alpha * eps * eps + beta * h[a]
            close[a] = out[t, CLOSE, a]
        if p["regime_p_stay"][k] < 1.0 and rng.uniform() >= p["regime_p_stay"][k]:
            k = 1 - k
    return out, regimes, rng


@njit
def _draw_streams_nb(state, n, kind):
    out = np.empty((state.shape[0], n))
    for i in range(state.shape[0]):
        for j in range(n):
            if kind == 0:
                out[i, j] = uniform_nb(state, i)
            elif kind == 1:
                out[i, j] = normal_nb(state, i)
            else:
                out[i, j] = exponential_nb(state, i)
    return out


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_draw_streams_match_python_reference(kind):
    """uniform_nb / normal_nb / exponential_nb == the Python splitmix64 + ziggurat, bit for bit."""
    words = seeds(2, base=7)
    n = 200 if kind == 0 else 60_000
    state = words.copy()
    got = _draw_streams_nb(state, n, kind)
    tails = 0
    for i in range(2):
        ref = PyRng(words[i])
        draw = (ref.uniform, ref.normal, ref.exponential)[kind]
        want = [draw() for _ in range(n)]
        assert got[i].tolist() == want
        assert int(state[i]) == ref.s  # the same number of words consumed
        tails += ref.tails
    if kind > 0:
        assert tails > 0  # the tail branch was exercised (expected ~30 normal, ~55 exponential)


def test_uniform_is_one_rng_word_strictly_inside_the_unit_interval():
    state = seeds(4)
    words = state.copy()
    u = _draw_streams_nb(state, 2000, 0)
    for i in range(4):
        for j in range(2000):
            w = next_u64_nb(words, i)  # kernels.rng's own step
            assert u[i, j] == ((int(w) >> 12) + 0.5) * 2.0**-52
    np.testing.assert_array_equal(state, words)
    # The extreme 52-bit values stay inside (0, 1); with 53 bits the largest would round to 1.
    assert 0.0 < 0.5 * 2.0**-52 and ((2**52 - 1) + 0.5) * 2.0**-52 < 1.0
    assert ((2**53 - 1) + 0.5) * 2.0**-53 == 1.0


def _ks_stat(x, cdf):
    x = np.sort(x)
    f = cdf(x)
    n = x.size
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def test_draw_distributions():
    state = seeds(64)
    z = _draw_streams_nb(state, 20_000, 1).ravel()
    e = _draw_streams_nb(state, 20_000, 2).ravel()
    u = _draw_streams_nb(state, 20_000, 0).ravel()
    n = z.size
    erf = np.vectorize(math.erf)
    crit = 1.95 / math.sqrt(n)  # KS at the 0.1 % level
    assert _ks_stat(z, lambda x: 0.5 * (1.0 + erf(x / math.sqrt(2.0)))) < crit
    assert _ks_stat(e, lambda x: 1.0 - np.exp(-x)) < crit
    assert _ks_stat(u, lambda x: x) < crit
    assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.std() - 1.0) < 5 / math.sqrt(2 * n)
    assert abs(np.mean(z**4) - 3.0) < 0.03
    # Tail mass beyond the ziggurat's base layer R: 2 (1 - Phi(R)) = 2.58e-4.
    p_tail = math.erfc(_ZN_R / math.sqrt(2.0))
    assert abs(np.mean(np.abs(z) > _ZN_R) - p_tail) < 5 * math.sqrt(p_tail / n)
    assert abs(np.mean(e > _ZE_R) - math.exp(-_ZE_R)) < 5 * math.sqrt(math.exp(-_ZE_R) / n)


@njit
def _exp_many_nb(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = exp_nb(x[i])
    return out


def test_exp_nb_against_libm():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-708, 709, 200_000), rng.normal(0, 0.01, 100_000),
                        rng.normal(0, 1, 100_000), np.linspace(-708, 709, 5001)])
    got, want = _exp_many_nb(x), np.exp(x)
    assert np.max(np.abs(got - want) / want) < 4.5e-16  # 2 ulp
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 710.0, 1e300, -746.0,
                        -1e300, 709.7, -708.3, -708.0])
    got = _exp_many_nb(special)
    with np.errstate(over="ignore"):
        want = np.exp(special)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=5e-16, atol=0.0)
    # Subnormal results: within one subnormal step (the scaling rounds twice).
    x = np.linspace(-745.0, -708.5, 2001)
    assert np.max(np.abs(_exp_many_nb(x) - np.exp(x))) <= 5e-324


def test_bars_match_python_reference_everything_on():
    """Every feature and stress, 3 correlated assets (one with vol 0), 4 envs x 60 bars."""
    n, n_bars = 4, 60
    params, stress = everything_on(n)
    words = seeds(n, base=99)
    bars, regimes, final = run(words, n_bars, params, stress)
    slow = 0
    for i in range(n):
        want, want_regimes, ref = reference_paths(words[i], n_bars, params, stress, i)
        np.testing.assert_allclose(bars[i], want, rtol=1e-12, atol=0.0, err_msg=f"env {i}")
        assert regimes[i].tolist() == want_regimes
        assert int(final[i]) == ref.s
        slow += ref.slow
    assert slow > 0  # the ziggurat slow paths ran inside the bar kernel too
    assert len(set(regimes.ravel().tolist())) == 2
    assert np.any(bars[:, :, CLOSE, 2] != bars[:, :1, CLOSE, 2])  # vol 0: still jumps


# ----------------------------------------------------------------------------------------------
# Determinism and invariants
def test_path_depends_only_on_its_env_seed():
    params, stress = everything_on(64)
    words = seeds(64)
    a, ra, wa = run(words, 50, params, stress)
    b, _, wb = run(words, 50, params, stress)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(wa, wb)

    def subset(rows, w):
        """Envs `rows` of the batch above (their stress rows), seeded with the words w."""
        s = {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in stress.items()}
        return run(np.asarray(w, dtype=np.uint64), 50, params, s)

    # Env 5 alone, then last in a batch of 4 whose other envs have other seeds.
    alone, r_alone, _ = subset([5], [words[5]])
    mixed, r_mixed, _ = subset([0, 2, 3, 5], [*seeds(3, base=99), words[5]])
    for got, regimes in ((alone[0], r_alone[0]), (mixed[3], r_mixed[3])):
        np.testing.assert_array_equal(got, a[5])
        np.testing.assert_array_equal(regimes, ra[5])
    assert not np.array_equal(mixed[0], a[0])  # another seed, another path


def test_parallel_step_equals_serial_and_ignores_threads():
    n, n_bars = 257, 30
    params, stress = everything_on(n)
    words = seeds(n, base=5)
    want, want_regimes, want_words = run(words, n_bars, params, stress)
    sim_asset, sim_env, chol, regime_table, packed_stress = pack(params, stress)
    a = sim_asset.shape[2]
    threads = numba.get_num_threads()
    try:
        for n_threads in sorted({1, threads}):
            numba.set_num_threads(n_threads)
            rng = words.copy()
            sim_state, sim_clock = new_state(n, a)
            out_bars = np.empty((5, n, a))  # env i's bar in out_bars[:, i, :]
            got = np.empty((n, n_bars, 5, a))
            got_regimes = np.empty((n, n_bars), dtype=np.int64)
            for i in range(n):
                sim_reset_env_nb(i, rng, sim_asset, chol, sim_state, sim_clock)
            for t in range(n_bars):
                got_regimes[:, t] = sim_clock[:, C_REGIME]
                sim_step_all_nb(rng, sim_asset, sim_env, chol, regime_table, packed_stress,
                                sim_state, sim_clock, out_bars)
                got[:, t] = out_bars.transpose(1, 0, 2)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got_regimes, want_regimes)
            np.testing.assert_array_equal(rng, want_words)
            np.testing.assert_array_equal(sim_clock[:, C_BAR_INDEX], n_bars)
    finally:
        numba.set_num_threads(threads)


def test_ohlc_consistent_and_positive_over_long_runs():
    n, n_bars = 256, 2000
    params, stress = everything_on(n)
    bars, _, _ = run(seeds(n, base=3), n_bars, params, stress)
    o, hi, lo, c, v = (bars[:, :, f] for f in range(5))
    assert np.all(np.isfinite(bars))
    assert np.all(lo > 0.0) and np.all(v > 0.0)
    assert np.all(lo <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= hi)
    # Open = previous close except on the crash bar.
    gapped = np.zeros((n, n_bars), dtype=bool)
    crash = stress["crash_bar"]
    gapped[crash >= 0, crash[crash >= 0]] = True
    same = o[:, 1:] == c[:, :-1]
    assert np.all(same[~gapped[:, 1:]]) and not np.any(same[gapped[:, 1:]])
    # Wicks are present (intrabar_vol > 0), except for the vol-0 asset.
    assert np.mean(hi[..., :2] > np.maximum(o, c)[..., :2]) > 0.9
    np.testing.assert_array_equal(hi[..., 2], np.maximum(o, c)[..., 2])


def test_reset_state():
    n, a = 20_000, 2
    params = make_params(a, vol=np.array([0.01, 0.02]), ar1=np.array([0.8, -0.5]),
                         chol=np.linalg.cholesky([[1.0, 0.5], [0.5, 1.0]]))
    rng = seeds(n)
    sim_asset, _, chol, _, _ = pack(params, make_stress(n))
    sim_state, sim_clock = new_state(n, a, fill=7)
    for i in range(n):
        sim_reset_env_nb(i, rng, sim_asset, chol, sim_state, sim_clock)
    close, dev, h = (sim_state[:, f] for f in (S_CLOSE, S_DEV, S_H))
    np.testing.assert_array_equal(close, np.broadcast_to(params["init_price"], (n, a)))
    np.testing.assert_array_equal(h, np.broadcast_to(params["vol"] ** 2, (n, a)))
    assert np.all(sim_clock[:, C_REGIME] == 0) and np.all(sim_clock[:, C_BAR_INDEX] == 0)
    want_std = params["vol"] / np.sqrt(1.0 - params["ar1"] ** 2)
    np.testing.assert_allclose(dev.std(axis=0), want_std, rtol=0.03)
    assert abs(np.corrcoef(dev.T)[0, 1] - 0.5) < 0.03


# ----------------------------------------------------------------------------------------------
# Statistics over many envs (4096 x 500 bars unless noted)
N, T = 4096, 500


def test_gbm_log_return_moments_and_ito_convention():
    vol, drift = 0.02, 3e-4
    params = make_params(1, vol=vol, drift=drift)
    bars, _, _ = run(seeds(N), T, params, make_stress(N))
    r = np.log(bars[:, :, CLOSE, 0] / bars[:, :, OPEN, 0]).ravel()
    se = vol / math.sqrt(r.size)
    # Mean log return drift - vol^2 / 2 (= 1e-4, 7 SE away from drift itself) ...
    assert abs(r.mean() - (drift - 0.5 * vol**2)) < 4 * se
    # ... and E[close / open] = exp(drift).
    assert abs(np.mean(np.exp(r)) - math.exp(drift)) < 4 * se
    assert abs(r.std() / vol - 1.0) < 0.005
    zs = (r - r.mean()) / r.std()
    assert abs(np.mean(zs**3)) < 0.01 and abs(np.mean(zs**4) - 3.0) < 0.03
    # Volume: E[V] = base E[exp(beta (|z| - sqrt(2/pi)))] (the zv factor has mean 1), and
    # log V rises with |z|: corr = sqrt(var(beta |z|) / (var(beta |z|) + LOG_STD^2)) = 0.59.
    v = bars[:, :, VOLUME, 0].ravel()
    b = VOLUME_SHOCK_BETA
    mean_v = 2.0 * math.exp(0.5 * b * b) * 0.5 * (1.0 + math.erf(b / math.sqrt(2.0)))
    mean_v *= math.exp(-b * math.sqrt(2.0 / math.pi))
    assert abs(v.mean() / 1e6 / mean_v - 1.0) < 0.003
    corr = math.sqrt(b * b * (1 - 2 / math.pi) / (b * b * (1 - 2 / math.pi) + VOLUME_LOG_STD**2))
    assert abs(np.corrcoef(np.abs(zs), np.log(v))[0, 1] - corr) < 0.01


def test_cross_asset_correlation():
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    params = make_params(3, chol=np.linalg.cholesky(corr), vol=np.array([0.01, 0.02, 0.005]))
    bars, _, _ = run(seeds(1024), T, params, make_stress(1024))
    r = log_returns(bars).reshape(-1, 3)
    np.testing.assert_allclose(np.corrcoef(r.T), corr, atol=0.01)
    np.testing.assert_allclose(r.std(axis=0), params["vol"], rtol=0.01)


def test_ar1_autocorrelation_and_std():
    ar1 = np.array([0.3, -0.2, 0.0])
    params = make_params(3, ar1=ar1)
    bars, _, _ = run(seeds(2048), T, params, make_stress(2048))
    r = log_returns(bars)
    np.testing.assert_allclose(lag1_autocorr(r), ar1, atol=0.01)
    np.testing.assert_allclose(r.reshape(-1, 3).std(axis=0), 0.01 / np.sqrt(1 - ar1**2),
                               rtol=0.01)


def test_jump_frequency_and_compensator():
    lam, mu_j, sd_j, vol, drift = 0.02, -0.1, 0.01, 0.005, 2e-4
    params = make_params(1, vol=vol, drift=drift, jump_intensity=lam, jump_mean=mu_j,
                         jump_std=sd_j)
    bars, _, _ = run(seeds(N), T, params, make_stress(N))
    r = np.log(bars[:, :, CLOSE, 0] / bars[:, :, OPEN, 0]).ravel()
    # A jump moves the bar by ~-0.1, 20 diffusive sds: count moves below -0.05.
    freq = np.mean(r < -0.05)
    assert abs(freq - lam) < 4 * math.sqrt(lam / r.size)
    # The compensator keeps E[close / open] = exp(drift); without it the mean would be
    # ~2e-3 lower (the standard error is ~1e-5).
    assert abs(np.mean(np.exp(r)) - math.exp(drift)) < 5e-5
    kappa = math.exp(mu_j + 0.5 * sd_j**2) - 1.0
    mean_log = drift - 0.5 * vol**2 - math.log1p(lam * kappa) + lam * mu_j
    assert abs(r.mean() - mean_log) < 4 * r.std() / math.sqrt(r.size)


def garch_acf1_theory(alpha, beta):
    """Lag-1 autocorrelation of squared GARCH(1,1) returns with normal innovations."""
    return alpha * (1 - alpha * beta - beta**2) / (1 - 2 * alpha * beta - beta**2)


def test_garch_volatility_clustering_and_unconditional_variance():
    vol = 0.01
    params = make_params(2, vol=vol, drift=0.0, garch_alpha=np.array([0.1, 0.0]),
                         garch_beta=np.array([0.85, 0.0]))
    bars, _, _ = run(seeds(N), T, params, make_stress(N))
    r = log_returns(bars)[:, 100:]  # h starts at its mean: let its dispersion settle
    acf = lag1_autocorr(r**2)
    assert abs(acf[0] - garch_acf1_theory(0.1, 0.85)) < 0.03  # theory 0.179
    assert abs(acf[1]) < 0.01  # alpha = 0: plain GBM, no clustering
    var = r.reshape(-1, 2).var(axis=0)
    np.testing.assert_allclose(var, vol**2, rtol=0.03)
    kurt = np.mean((r - r.mean(axis=(0, 1))) ** 4, axis=(0, 1)) / var**2
    assert kurt[0] > 3.4 and abs(kurt[1] - 3.0) < 0.05  # GARCH fattens the tails (theory 3.77)


def test_regime_switching_raises_vol():
    vol = 0.01
    params = make_params(1, vol=vol, drift=0.0, regime_p_stay=np.array([0.98, 0.9]),
                         regime_vol_mult=np.array([1.0, 3.0]))
    bars, regimes, _ = run(seeds(N), T, params, make_stress(N))
    assert np.all(regimes[:, 0] == 0)
    k = regimes[:, 100:]
    r = np.log(bars[:, 100:, CLOSE, 0] / bars[:, 100:, OPEN, 0])
    assert abs(np.mean(k) - 1.0 / 6.0) < 0.01  # stationary law: 0.02 / (0.02 + 0.1)
    stay0 = np.mean(k[:, 1:][k[:, :-1] == 0] == 0)
    assert abs(stay0 - 0.98) < 0.002
    assert abs(r[k == 0].std() / vol - 1.0) < 0.01
    assert abs(r[k == 1].std() / (3.0 * vol) - 1.0) < 0.01
    # The Ito term follows the regime: mean log return -sigma_k^2 / 2.
    assert abs(r[k == 1].mean() + 0.5 * (3 * vol) ** 2) < 4 * 3 * vol / math.sqrt(np.sum(k == 1))


def test_crash_gaps_the_open_at_exactly_the_crash_bar():
    n = N
    params = make_params(2, vol=np.array([0.01, 0.02]), garch_alpha=np.array([0.1, 0.0]),
                         garch_beta=np.array([0.8, 0.0]), ar1=np.array([0.1, 0.0]))
    picker = seeds(n, base=77)
    crash = np.array([draw_crash_bar_nb(picker, i, 100, 400) for i in range(n)], dtype=np.int64)
    assert crash.min() == 100 and crash.max() == 400 and abs(crash.mean() - 250) < 5
    crash[: n // 4] = -1
    crash[n // 4] = 0  # a crash on the very first bar gaps from init_price
    words = seeds(n)
    base, _, _ = run(words, T, params, make_stress(n))
    bars, _, _ = run(words, T, params, make_stress(n, crash_bar=crash))
    ratio = bars[:, 1:, OPEN] / bars[:, :-1, CLOSE]  # open_t / close_{t-1}
    t = np.arange(1, T)[None, :]
    at = (t == crash[:, None])[:, :, None].repeat(2, axis=2)
    np.testing.assert_allclose(ratio[at], 0.8, rtol=1e-12)
    np.testing.assert_array_equal(ratio[~at], 1.0)
    np.testing.assert_allclose(bars[n // 4, 0, OPEN], 0.8 * params["init_price"], rtol=1e-12)
    # The stream is untouched: before the crash the path is identical, after it every price
    # is 0.8 x the uncrashed one, and the crash bar trades more.
    for i in (n // 4 + 1, n // 2, n - 1):
        c = crash[i]
        np.testing.assert_array_equal(bars[i, :c], base[i, :c])
        np.testing.assert_allclose(bars[i, c:, :VOLUME], 0.8 * base[i, c:, :VOLUME], rtol=1e-12)
    rows = np.arange(n // 4 + 1, n)
    v_ratio = bars[rows, crash[rows], VOLUME] / base[rows, crash[rows], VOLUME]
    assert np.all(v_ratio > 2.0)


def test_vol_spike_raises_realised_vol_only_inside_the_window():
    vol, start, length, mult = 0.01, 200, 100, 3.0
    params = make_params(1, vol=vol, drift=0.0)
    words = seeds(N)
    base, _, _ = run(words, T, params, make_stress(N))
    bars, _, _ = run(words, T, params, make_stress(N, vol_spike_start=start,
                                                   vol_spike_len=length, vol_spike_mult=mult))
    r = np.log(bars[:, :, CLOSE, 0] / bars[:, :, OPEN, 0])
    r_base = np.log(base[:, :, CLOSE, 0] / base[:, :, OPEN, 0])
    inside = slice(start, start + length)
    assert abs(r[:, inside].std() / (mult * vol) - 1.0) < 0.01
    assert abs(r[:, :start].std() / vol - 1.0) < 0.01
    assert abs(r[:, start + length:].std() / vol - 1.0) < 0.01
    # Outside the window the path is the unstressed one: identical before, the same returns
    # after (measured from prices at another level, hence up to rounding).
    np.testing.assert_array_equal(bars[:, :start], base[:, :start])
    np.testing.assert_allclose(r[:, start + length:], r_base[:, start + length:], rtol=0,
                               atol=1e-15)
    # A spike trades more (larger surprise; E ratio 1.89) and has 3x the range.
    assert bars[:, inside, VOLUME].mean() > 1.5 * base[:, inside, VOLUME].mean()
    rng_ratio = np.log(bars[:, inside, HIGH] / bars[:, inside, LOW]).mean() / np.log(
        base[:, inside, HIGH] / base[:, inside, LOW]).mean()
    assert abs(rng_ratio - mult) < 0.05


def test_drought_cuts_volume_only_inside_the_window():
    start, length, mult = 300, 50, 0.1
    params = make_params(1)
    starts = np.where(np.arange(N) % 2 == 0, start, -1)
    words = seeds(N)
    base, _, _ = run(words, T, params, make_stress(N))
    bars, _, _ = run(words, T, params, make_stress(N, drought_start=starts, drought_len=length,
                                                   drought_mult=mult))
    np.testing.assert_array_equal(bars[:, :, :VOLUME], base[:, :, :VOLUME])  # prices untouched
    inside = np.zeros((N, T), dtype=bool)
    inside[starts >= 0, start:start + length] = True
    v, v_base = bars[:, :, VOLUME, 0], base[:, :, VOLUME, 0]
    np.testing.assert_allclose(v[inside], mult * v_base[inside], rtol=1e-15)
    np.testing.assert_array_equal(v[~inside], v_base[~inside])


# ----------------------------------------------------------------------------------------------
# Per-env parameters
def test_per_env_parameters_stay_with_their_env():
    """Envs with different parameters share a batch: each path follows its own parameters
    (log-return std and mean, start price, volume level), is the path it gets alone with the
    same seed, and, with every per-env field different, matches the reference env by env."""
    n = 2048
    low = make_params(1, vol=0.01, drift=2e-4, init_price=100.0, base_volume=1e6)
    high = make_params(1, vol=0.03, drift=-5e-4, init_price=20.0, base_volume=5e3)
    kind = np.arange(n) % 2  # interleaved in one batch: even envs low, odd envs high
    per_env = [(low, high)[k] for k in kind]
    words = seeds(n, base=2024)
    stress = make_stress(n)
    bars, _, final = run(words, T, per_env, stress)
    r = np.log(bars[:, :, CLOSE, 0] / bars[:, :, OPEN, 0])
    v_level = []
    for k, p in enumerate((low, high)):
        rk = r[kind == k].ravel()
        vol, drift = p["vol"][0], p["drift"][0]
        assert abs(rk.std() / vol - 1.0) < 0.01  # standard error 0.1 %; the vols differ 3x
        se = vol / math.sqrt(rk.size)
        assert abs(rk.mean() - (drift - 0.5 * vol**2)) < 4 * se  # the env's own Ito drift
        assert abs(np.mean(np.exp(rk)) - math.exp(drift)) < 4 * se
        np.testing.assert_array_equal(bars[kind == k, 0, OPEN, 0], p["init_price"][0])
        v_level.append(bars[kind == k, :, VOLUME, 0].mean() / p["base_volume"][0])
    assert abs(v_level[1] / v_level[0] - 1.0) < 0.01  # volume scales with the env's own base

    # Batch independence: an env simulated alone with its seed gets the very same path.
    for j in (6, 7):  # one env of each kind
        s = {key: value[[j]] for key, value in stress.items()}
        alone, _, alone_final = run(words[[j]], T, [per_env[j]], s)
        np.testing.assert_array_equal(alone[0], bars[j])
        assert alone_final[0] == final[j]

    # Every per-env field different (one env without jumps, so another random stream), 3
    # correlated assets: each env matches the reference fed with its own named parameters.
    n, n_bars = 3, 40
    variants = []
    for j, f in enumerate((1.0, 1.5, 0.5)):
        p, _ = everything_on(1)
        p = make_params(
            3, chol=p["chol"], regime_p_stay=p["regime_p_stay"],
            regime_vol_mult=p["regime_vol_mult"], regime_drift_mult=p["regime_drift_mult"],
            init_price=np.array([100.0, 20.0, 5000.0]) * (1 + j),
            drift=np.array([2e-4, -1e-4, 0.0]) * f - 1e-4 * j,
            vol=np.array([0.01, 0.03, 0.0]) * f,
            garch_alpha=np.array([0.1, 0.0, 0.05]) * f / 1.5,
            garch_beta=np.array([0.85, 0.0, 0.9]) * (1.0 - 0.1 * j),
            ar1=np.array([0.2, -0.4, 0.0]) * f / 1.5,
            jump_intensity=(0.2, 0.35, 0.0)[j], jump_mean=-0.05 * f, jump_std=0.04 * f,
            intrabar_vol=0.7 * f, base_volume=np.array([1e6, 5e5, 2e3]) / (1 + j),
        )
        variants.append(p)
    stress = make_stress(
        n, crash_bar=[5, 12, -1], crash_size=np.log([0.8, 0.5, 0.9]),
        vol_spike_start=[3, -1, 10], vol_spike_len=[10, 4, 20], vol_spike_mult=[4.0, 2.0, 1.5],
        drought_start=[0, 8, -1], drought_len=[5, 30, 3], drought_mult=[0.1, 0.5, 2.0],
    )
    words = seeds(n, base=31)
    bars, regimes, final = run(words, n_bars, variants, stress)
    for i in range(n):
        want, want_regimes, ref = reference_paths(words[i], n_bars, variants[i], stress, i)
        np.testing.assert_allclose(bars[i], want, rtol=1e-12, atol=0.0, err_msg=f"env {i}")
        assert regimes[i].tolist() == want_regimes
        assert int(final[i]) == ref.s


# ----------------------------------------------------------------------------------------------
# Cost layout
def _caller_loop(can_raise):
    """A fresh (uncached) batch step loop; optionally its loop body can raise."""

    @njit(nogil=True, error_model="numpy")
    def loop_nb(rng, sim_asset, sim_env, chol, regime_table, stress, sim_state, sim_clock,
                out_bars):
        for i in range(sim_state.shape[0]):
            sim_next_bar_nb(i, i, rng, sim_asset, sim_env, chol, regime_table, stress,
                            sim_state, sim_clock, out_bars)
            if can_raise and sim_clock[i, C_BAR_INDEX] < 0:
                raise ValueError("negative bar index")

    n, a = 2, 3
    params, stress = everything_on(n, a)
    sim_state, sim_clock = new_state(n, a, fill=0)
    sim_state[:, S_CLOSE] = 1.0
    sim_state[:, S_H] = 1e-4
    loop_nb(seeds(n), *pack(params, stress), sim_state, sim_clock, np.empty((5, n, a)))
    (sig,) = loop_nb.signatures
    return len(re.findall(r"call void @NRT_incref", loop_nb.inspect_llvm(sig)))


def test_inlined_bar_leaves_no_reference_counting_in_the_loop():
    """The layout under Cost in the module docstring lets Numba prune the reference counts of
    the 9 array arguments in a plain caller loop (else ~18 atomic operations per env-bar);
    a loop body that can raise (or call out of line) brings them back, which shows that the
    check can fail."""
    assert _caller_loop(can_raise=False) == 0
    assert _caller_loop(can_raise=True) >= 9  # one incref per array argument
