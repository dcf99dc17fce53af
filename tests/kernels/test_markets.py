"""Tests for kernels/markets.py and its wrapper optrader.data.synthetic.

* build_ohlcv_nb (noise in, bars out) against a pure-Python scalar reference written from the
  module docstring in log space (an independent form of the wick algebra);
* simulate_market_nb against build_ohlcv_nb fed with the documented draw order (bit-identical);
* the ziggurat samplers against the exact normal / exponential laws;
* invariants, determinism and the statistics of long paths through generate_synthetic;
* every validation error names its argument.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from kernels.markets import (
    VOLUME_LOG_STD,
    VOLUME_SHOCK_BETA,
    VOLUME_SURPRISE_CAP,
    build_ohlcv_nb,
    draw_exponential_nb,
    draw_normal_nb,
    draw_uniform_nb,
    simulate_market_nb,
)
from optrader.data.synthetic import generate_synthetic

KEYS = ("open", "high", "low", "close", "volume")
PPY = 252.0
DT = 1.0 / PPY


# ----------------------------------------------------------------------------------------------
# Scalar reference
def reference_ohlcv(noise, prm):
    """Pure-Python loop over the process in the kernels.markets docstring, in log-price space."""
    z, u_regime, u_jump, z_jump, e_high, e_low, z_volume = noise
    n_bars, n_assets = z.shape
    lam = prm["jump_intensity"]
    comp = math.log(1.0 + lam * (math.exp(prm["jump_mean"] + 0.5 * prm["jump_std"] ** 2) - 1.0))
    out = {key: np.empty((n_bars, n_assets)) for key in KEYS}
    log_px = [math.log(p) for p in prm["init_price"]]
    dev = [0.0] * n_assets
    k = 0
    for t in range(n_bars):
        if t > 0 and not u_regime[t] < prm["regime_p_stay"][k]:
            k = 1 - k
        for i in range(n_assets):
            eps = sum(prm["chol"][i, j] * z[t, j] for j in range(i + 1))
            sigma = prm["vol"][i] * prm["regime_vol_mult"][k]
            c = prm["drift"][i] * prm["regime_drift_mult"][k] - 0.5 * sigma**2 - comp
            phi = prm["ar1"][i]
            if t == 0:
                dev[i] = sigma * eps / math.sqrt(1.0 - phi * phi)
            else:
                dev[i] = phi * dev[i] + sigma * eps
            jump = prm["jump_mean"] + prm["jump_std"] * z_jump[t, i] if u_jump[t, i] < lam else 0.0
            a = log_px[i]
            b = a + c + dev[i] + jump
            s2 = (prm["intrabar_vol"] * sigma) ** 2
            # Bridge maximum / minimum by inversion, in its textbook (cancelling) log-space form.
            log_high = 0.5 * (a + b + math.sqrt((b - a) ** 2 + 2.0 * s2 * e_high[t, i]))
            log_low = 0.5 * (a + b - math.sqrt((b - a) ** 2 + 2.0 * s2 * e_low[t, i]))
            if prm["vol"][i] > 0.0:
                surprise = abs(sigma * eps + jump) / prm["vol"][i]
            else:
                surprise = VOLUME_SURPRISE_CAP if jump != 0.0 else abs(eps * prm["regime_vol_mult"][k])
            log_v = (
                VOLUME_LOG_STD * z_volume[t, i]
                - 0.5 * VOLUME_LOG_STD**2
                + VOLUME_SHOCK_BETA * (min(surprise, VOLUME_SURPRISE_CAP) - math.sqrt(2.0 / math.pi))
            )
            out["open"][t, i] = math.exp(a)
            out["close"][t, i] = math.exp(b)
            out["high"][t, i] = math.exp(log_high)
            out["low"][t, i] = math.exp(log_low)
            out["volume"][t, i] = prm["base_volume"][i] * math.exp(log_v)
            log_px[i] = b
    return out


def kernel_args(prm):
    return (
        prm["drift"], prm["vol"], prm["chol"], prm["ar1"], prm["jump_intensity"],
        prm["jump_mean"], prm["jump_std"], prm["regime_p_stay"], prm["regime_vol_mult"],
        prm["regime_drift_mult"], prm["init_price"], prm["base_volume"], prm["intrabar_vol"],
    )


def run_build(noise, prm):
    n_bars, n_assets = noise[0].shape
    out = {key: np.empty((n_bars, n_assets)) for key in KEYS}
    build_ohlcv_nb(*noise, *kernel_args(prm), *(out[key] for key in KEYS))
    return out


def random_params(rng, n_assets, jumps, regimes, ar1, zero_vol):
    corr = np.eye(n_assets)
    if n_assets > 1:
        g = rng.standard_normal((n_assets, n_assets + 2))
        cov = g @ g.T
        d = np.sqrt(np.diag(cov))
        corr = cov / np.outer(d, d)
    vol = rng.uniform(0.002, 0.08, n_assets)
    if zero_vol:
        vol[0] = 0.0
    return {
        "drift": rng.normal(0.0, 0.01, n_assets),
        "vol": vol,
        "chol": np.linalg.cholesky(corr),
        "ar1": rng.uniform(-0.9, 0.9, n_assets) if ar1 else np.zeros(n_assets),
        "jump_intensity": float(rng.uniform(0.1, 0.9)) if jumps else 0.0,
        "jump_mean": float(rng.normal(0.0, 0.1)),
        "jump_std": float(rng.uniform(0.0, 0.2)),
        "regime_p_stay": rng.choice([0.0, 0.3, 0.8, 1.0], 2) if regimes else np.ones(2),
        "regime_vol_mult": rng.uniform(0.0, 3.0, 2) if regimes else np.ones(2),
        "regime_drift_mult": rng.uniform(-2.0, 2.0, 2) if regimes else np.ones(2),
        "init_price": rng.uniform(1.0, 500.0, n_assets),
        "base_volume": rng.uniform(1.0, 1e7, n_assets),
        "intrabar_vol": float(rng.choice([0.0, 0.3, 1.0, 2.0])),
    }


def random_noise(rng, n_bars, n_assets):
    shape = (n_bars, n_assets)
    return (
        rng.standard_normal(shape),
        rng.random(n_bars),
        rng.random(shape),
        rng.standard_normal(shape),
        rng.exponential(1.0, shape),
        rng.exponential(1.0, shape),
        rng.standard_normal(shape),
    )


def assert_bars_consistent(out, init_price=None):
    o, h, lo, c, v = (out[key] for key in KEYS)
    for key in KEYS:
        assert np.all(np.isfinite(out[key])), key
    assert np.all(lo > 0.0)
    assert np.all(lo <= np.minimum(o, c))
    assert np.all(np.maximum(o, c) <= h)
    assert np.all(v > 0.0)
    np.testing.assert_array_equal(o[1:], c[:-1])  # no gaps: open is the previous close
    if init_price is not None:
        np.testing.assert_array_equal(o[0], init_price)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bars=st.integers(2, 25),
    n_assets=st.integers(1, 4),
    jumps=st.booleans(),
    regimes=st.booleans(),
    ar1=st.booleans(),
    zero_vol=st.booleans(),
)
def test_build_ohlcv_matches_scalar_reference(seed, n_bars, n_assets, jumps, regimes, ar1, zero_vol):
    rng = np.random.default_rng(seed)
    prm = random_params(rng, n_assets, jumps, regimes, ar1, zero_vol)
    noise = random_noise(rng, n_bars, n_assets)
    got = run_build(noise, prm)
    want = reference_ohlcv(noise, prm)
    for key in KEYS:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-11, atol=0.0, err_msg=key)
    assert_bars_consistent(got, prm["init_price"])


def test_build_ohlcv_zero_intrabar_vol_has_no_wicks():
    rng = np.random.default_rng(1)
    prm = random_params(rng, 3, jumps=True, regimes=True, ar1=True, zero_vol=False)
    prm["intrabar_vol"] = 0.0
    out = run_build(random_noise(rng, 200, 3), prm)
    np.testing.assert_array_equal(out["high"], np.maximum(out["open"], out["close"]))
    np.testing.assert_array_equal(out["low"], np.minimum(out["open"], out["close"]))


# ----------------------------------------------------------------------------------------------
# simulate_market_nb == build_ohlcv_nb on the documented draw order
@njit
def draw_noise_in_documented_order(seed, n_bars, n_assets, jump_intensity, regime_p_stay):
    np.random.seed(seed)
    z = np.zeros((n_bars, n_assets))
    z_volume = np.zeros((n_bars, n_assets))
    u_regime = np.zeros(n_bars)  # 0.0 always stays when no uniform is drawn (p_stay == 1)
    u_jump = np.ones((n_bars, n_assets))
    z_jump = np.zeros((n_bars, n_assets))
    e_high = np.zeros((n_bars, n_assets))
    e_low = np.zeros((n_bars, n_assets))
    k = 0
    for t in range(n_bars):
        if t > 0 and regime_p_stay[k] < 1.0:
            u_regime[t] = draw_uniform_nb()
            if u_regime[t] >= regime_p_stay[k]:
                k = 1 - k
        for i in range(n_assets):
            z[t, i] = draw_normal_nb()
            z_volume[t, i] = draw_normal_nb()
        for i in range(n_assets):
            if jump_intensity > 0.0:
                u_jump[t, i] = draw_uniform_nb()
                if u_jump[t, i] < jump_intensity:
                    z_jump[t, i] = draw_normal_nb()
            e_high[t, i] = draw_exponential_nb()
            e_low[t, i] = draw_exponential_nb()
    return z, u_regime, u_jump, z_jump, e_high, e_low, z_volume


@pytest.mark.parametrize("features", [False, True])
def test_simulate_matches_build_on_documented_draw_order(features):
    rng = np.random.default_rng(7)
    prm = random_params(rng, 3, jumps=features, regimes=features, ar1=features, zero_vol=False)
    if features:
        prm["regime_p_stay"] = np.array([0.9, 0.8])  # both states draw, switches happen
    n_bars = 2_000
    sim = {key: np.empty((n_bars, 3)) for key in KEYS}
    simulate_market_nb(123, *kernel_args(prm), *(sim[key] for key in KEYS))
    noise = draw_noise_in_documented_order(
        123, n_bars, 3, prm["jump_intensity"], prm["regime_p_stay"]
    )
    if features:
        assert np.any(noise[2] < prm["jump_intensity"])  # jumps exercised
        assert np.any(noise[1] >= 0.9)  # a switch out of regime 0 exercised
    built = run_build(noise, prm)
    for key in KEYS:
        np.testing.assert_array_equal(sim[key], built[key], err_msg=key)


# ----------------------------------------------------------------------------------------------
# Samplers
@njit
def draw_many(seed, n, kind):
    np.random.seed(seed)
    out = np.empty(n)
    for i in range(n):
        if kind == 0:
            out[i] = draw_uniform_nb()
        elif kind == 1:
            out[i] = draw_normal_nb()
        else:
            out[i] = draw_exponential_nb()
    return out


def ks_uniform(u):
    """Kolmogorov-Smirnov distance of a sample of (hypothetically) U(0, 1) values."""
    u = np.sort(u)
    n = u.size
    return max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))


N_DRAWS = 1_000_000
KS_CRIT = 1.95 / math.sqrt(N_DRAWS)  # 0.1% level


def normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def test_draw_uniform_is_uniform_on_open_interval():
    u = draw_many(3, N_DRAWS, 0)
    assert 0.0 < u.min() and u.max() < 1.0
    assert ks_uniform(u) < KS_CRIT
    assert abs(np.corrcoef(u[1:], u[:-1])[0, 1]) < 5.0 / math.sqrt(N_DRAWS)


def test_draw_normal_matches_standard_normal_law():
    x = draw_many(4, N_DRAWS, 1)
    assert abs(x.mean()) < 5.0 / math.sqrt(N_DRAWS)
    assert abs(x.var() - 1.0) < 5.0 * math.sqrt(2.0 / N_DRAWS)
    assert ks_uniform(normal_cdf(x[::10])) < 1.95 / math.sqrt(N_DRAWS // 10)
    # Beyond the base layer's edge R = 3.654 only the tail sampler produces values.
    p_tail = 2.0 * (1.0 - normal_cdf(np.array([3.8]))[0])
    n_tail = np.sum(np.abs(x) > 3.8)
    assert abs(n_tail - p_tail * N_DRAWS) < 5.0 * math.sqrt(p_tail * N_DRAWS)
    assert abs(np.mean(x > 0.0) - 0.5) < 5.0 * 0.5 / math.sqrt(N_DRAWS)  # sign bit is fair


def test_draw_exponential_matches_exp1_law():
    e = draw_many(5, N_DRAWS, 2)
    assert e.min() > 0.0
    assert abs(e.mean() - 1.0) < 5.0 / math.sqrt(N_DRAWS)
    assert ks_uniform(1.0 - np.exp(-e)) < KS_CRIT
    p_tail = math.exp(-8.0)  # beyond the base layer's edge R = 7.697
    n_tail = np.sum(e > 8.0)
    assert abs(n_tail - p_tail * N_DRAWS) < 5.0 * math.sqrt(p_tail * N_DRAWS)


@njit
def tail_excess_stats(seed, n, kind, edge):
    """Count of |draws| beyond edge and the sum of their excess over it, without storing draws."""
    np.random.seed(seed)
    count = 0
    total = 0.0
    for _ in range(n):
        x = abs(draw_normal_nb()) if kind == 1 else draw_exponential_nb()
        if x > edge:
            count += 1
            total += x - edge
    return count, total


@pytest.mark.parametrize("kind", [1, 2])
def test_ziggurat_tail_samplers_have_the_exact_tail_law(kind):
    # Draws beyond the base layer's edge R come only from the tail branch, taken ~0.03% of the
    # time; 30M draws (~0.2 s) give ~8000 of them, enough to see a 10% error in the excess.
    n = 30_000_000
    if kind == 1:
        edge = 3.654152885361009
        p_tail = math.erfc(edge / math.sqrt(2.0))  # two-sided
        # Truncated normal beyond R: E[X | X > R] = lam, Var = 1 + R lam - lam^2, lam = phi/Q.
        lam = math.exp(-0.5 * edge * edge) / math.sqrt(2.0 * math.pi) / (p_tail / 2)
        mean_excess, sd_excess = lam - edge, math.sqrt(1.0 + edge * lam - lam * lam)
    else:
        edge = 7.69711747013105
        p_tail = math.exp(-edge)
        mean_excess, sd_excess = 1.0, 1.0  # memoryless
    count, total = tail_excess_stats(9, n, kind, edge)
    assert abs(count - p_tail * n) < 5.0 * math.sqrt(p_tail * n)
    assert abs(total / count - mean_excess) < 5.0 * sd_excess / math.sqrt(count)


# ----------------------------------------------------------------------------------------------
# generate_synthetic: invariants and determinism
# Heavy but float64-safe over 200k bars (794 years): the median log path moves by
# (mu - E[sigma^2]/2 - jump convexity) * years, ~-350 for the 0.6-vol asset, far from the ~-700
# where prices would underflow.
STRESS = dict(
    volatility=[0.2, 0.4, 0.6],
    correlation=0.5,
    ar1=[0.0, 0.3, -0.5],
    jump_intensity=20.0,
    jump_mean=-0.02,
    jump_std=0.1,
    regimes=True,
    regime_p_stay=(0.98, 0.9),
    regime_vol_mult=(1.0, 2.5),
    init_price=[1.0, 100.0, 5000.0],
    intrabar_vol=2.0,
)


def test_long_path_bars_are_consistent_with_jumps_and_regimes():
    out = generate_synthetic(200_000, 3, seed=11, **STRESS)
    for key in KEYS:
        assert out[key].shape == (200_000, 3)
        assert out[key].dtype == np.float64
        assert out[key].flags.c_contiguous
    assert_bars_consistent(out, np.array([1.0, 100.0, 5000.0]))
    assert np.any(out["high"] > np.maximum(out["open"], out["close"]))  # wicks exist


def test_same_seed_is_bit_identical_and_other_seed_differs():
    a = generate_synthetic(5_000, 3, seed=42, **STRESS)
    b = generate_synthetic(5_000, 3, seed=42, **STRESS)
    c = generate_synthetic(5_000, 3, seed=43, **STRESS)
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert not np.any(a[key][1:] == c[key][1:]), key


# ----------------------------------------------------------------------------------------------
# generate_synthetic: statistics of long paths
def log_returns(out):
    return np.log(out["close"] / out["open"])


def test_moments_match_drift_vol_and_ito_convention():
    n = 400_000
    drift = np.array([0.10, 0.0, -0.05, 0.5])
    vol = np.array([0.1, 0.2, 0.4, 0.8])
    out = generate_synthetic(n, 4, seed=1, drift=drift, volatility=vol)
    r = log_returns(out)
    vol_bar = vol * math.sqrt(DT)
    se_mean = vol_bar / math.sqrt(n)
    # Mean log return is drift*dt - vol_bar^2/2 (Ito); for the 0.8-vol asset the Ito term is
    # ~11 standard errors, so dropping it fails.
    np.testing.assert_array_less(np.abs(r.mean(0) - (drift * DT - 0.5 * vol_bar**2)), 4.5 * se_mean)
    # ... and so the mean gross return is exp(drift * dt).
    gross = out["close"] / out["open"]
    np.testing.assert_array_less(np.abs(gross.mean(0) - np.exp(drift * DT)), 4.5 * se_mean)
    np.testing.assert_allclose(r.std(0), vol_bar, rtol=0.01)


@pytest.mark.parametrize("matrix", [False, True])
def test_sample_correlation_matches_request(matrix):
    corr = (
        np.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]])
        if matrix
        else 0.6
    )
    out = generate_synthetic(200_000, 3, seed=2, correlation=corr, volatility=[0.1, 0.3, 0.5])
    want = corr if matrix else np.full((3, 3), 0.6) + 0.4 * np.eye(3)
    np.testing.assert_allclose(np.corrcoef(log_returns(out).T), want, atol=0.01)


def test_ar1_lag1_autocorrelation_and_stationary_std():
    phi = np.array([0.3, -0.4, 0.0])
    n = 200_000
    out = generate_synthetic(n, 3, seed=3, ar1=phi, volatility=0.2)
    r = log_returns(out)
    rc = r - r.mean(0)
    acf1 = (rc[1:] * rc[:-1]).sum(0) / (rc * rc).sum(0)
    np.testing.assert_allclose(acf1, phi, atol=0.012)
    np.testing.assert_allclose(r.std(0), 0.2 * math.sqrt(DT) / np.sqrt(1.0 - phi**2), rtol=0.01)


def test_jump_frequency_size_and_compensation():
    n, lam = 100_000, 25.0  # 25 jumps a year: p = 0.099 per bar
    out = generate_synthetic(
        n, 2, seed=4, drift=0.05, volatility=0.1, jump_intensity=lam, jump_mean=0.3, jump_std=0.02
    )
    r = log_returns(out)
    is_jump = r > 0.15  # a jump is ~47 diffusive sds: unmistakable
    p = lam / PPY
    np.testing.assert_allclose(is_jump.mean(0), p, atol=5.0 * math.sqrt(p * (1 - p) / n))
    np.testing.assert_allclose(np.median(r[is_jump]) - np.median(r[~is_jump]), 0.3, atol=0.005)
    # The compensator keeps the mean gross return at exp(drift*dt); without it the mean would
    # be ~3.5% per bar higher, more than 100 standard errors.
    gross = out["close"] / out["open"]
    se = gross.std(0) / math.sqrt(n)
    np.testing.assert_array_less(np.abs(gross.mean(0) - math.exp(0.05 * DT)), 4.5 * se)
    # Volume jumps with the return surprise.
    vol_ratio = out["volume"][is_jump].mean() / out["volume"][~is_jump].mean()
    assert vol_ratio > 4.0


REGIME_N = 400_000
REGIME_P_STAY = (0.99, 0.98)
PI1 = 0.01 / (0.01 + 0.02)  # stationary probability of regime 1


def test_regime_switching_changes_vol():
    kw = dict(drift=0.0, volatility=0.1, regime_p_stay=REGIME_P_STAY, regime_vol_mult=(1.0, 3.0),
              regime_drift_mult=(1.0, 1.0))
    on = log_returns(generate_synthetic(REGIME_N, 1, seed=5, regimes=True, **kw))[:, 0]
    off = log_returns(generate_synthetic(REGIME_N, 1, seed=5, regimes=False, **kw))[:, 0]
    var_bar = 0.1**2 * DT
    # Regime persistence (p0 + p1 - 1 = 0.97) leaves ~1.3% sd on the mixture variance.
    np.testing.assert_allclose(on.var(), var_bar * ((1 - PI1) * 1.0 + PI1 * 9.0), rtol=0.06)
    np.testing.assert_allclose(off.var(), var_bar, rtol=0.01)
    # Persistent regimes cluster volatility; a single regime does not.
    abs_on, abs_off = np.abs(on - on.mean()), np.abs(off - off.mean())
    assert np.corrcoef(abs_on[1:], abs_on[:-1])[0, 1] > 0.1
    assert abs(np.corrcoef(abs_off[1:], abs_off[:-1])[0, 1]) < 0.01


def test_regime_switching_changes_drift():
    # drift 0.3 keeps the single-regime path (1587 years of bars) inside float64.
    kw = dict(drift=0.3, volatility=0.1, regime_p_stay=REGIME_P_STAY, regime_vol_mult=(1.0, 1.0),
              regime_drift_mult=(1.0, -1.0))
    on = log_returns(generate_synthetic(REGIME_N, 1, seed=6, regimes=True, **kw))[:, 0]
    off = log_returns(generate_synthetic(REGIME_N, 1, seed=6, regimes=False, **kw))[:, 0]
    mu_bar, var_bar = 0.3 * DT, 0.1**2 * DT
    # The drift flips sign in regime 1, so the mean is mu_bar * (pi0 - pi1) = mu_bar / 3. Its sd
    # (regime-fraction noise plus diffusion) is ~2e-5; the gap to the single-regime mean 8e-4.
    assert abs(on.mean() - (mu_bar * (1 - 2 * PI1) - 0.5 * var_bar)) < 1e-4
    assert abs(off.mean() - (mu_bar - 0.5 * var_bar)) < 5e-5


def test_volume_is_lognormal_around_base_and_rises_with_abs_return():
    n = 200_000
    out = generate_synthetic(n, 1, seed=6, base_volume=2e5, volatility=0.3)
    log_v = np.log(out["volume"][:, 0] / 2e5)
    # E[log V / base] = -VOLUME_LOG_STD^2 / 2 (the surprise term is centred on E|N(0,1)|).
    assert abs(log_v.mean() + 0.5 * VOLUME_LOG_STD**2) < 0.005
    r = log_returns(out)[:, 0]
    assert np.corrcoef(log_v, np.abs(r - r.mean()))[0, 1] > 0.4


def test_wicks_follow_the_brownian_bridge_extreme_law():
    # With intrabar_vol = 1, P(log high - log max(o, c) > x) = exp(-2 x (x + |r|) / s^2), s the
    # bar vol, so that probability evaluated at the realised excess must be U(0, 1).
    n, vol = 200_000, 0.3
    out = generate_synthetic(n, 1, seed=8, volatility=vol, intrabar_vol=1.0)
    o, h, lo, c = (out[key][:, 0] for key in ("open", "high", "low", "close"))
    r = np.abs(np.log(c / o))
    s2 = vol**2 * DT
    x_high = np.log(h / np.maximum(o, c))
    x_low = np.log(np.minimum(o, c) / lo)
    for x in (x_high, x_low):
        assert ks_uniform(np.exp(-2.0 * x * (x + r) / s2)) < 1.95 / math.sqrt(n)


# ----------------------------------------------------------------------------------------------
# generate_synthetic: validation
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(n_bars=1), "n_bars"),
        (dict(n_bars=10.0), "n_bars"),
        (dict(n_assets=0), "n_assets"),
        (dict(n_assets=True), "n_assets"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**32), "seed"),
        (dict(volatility=-0.1), "volatility"),
        (dict(volatility=[0.1, -0.2, 0.1]), "volatility"),
        (dict(volatility=[0.1, 0.2]), "volatility"),
        (dict(drift=[0.1, 0.2]), "drift"),
        (dict(drift=float("nan")), "drift"),
        (dict(correlation=1.5), "correlation"),
        (dict(correlation=1.0), "correlation"),
        (dict(correlation=-0.6), "correlation"),
        (dict(correlation=np.eye(2)), "correlation"),
        (dict(correlation=[[1.0, 0.5, 0.0], [0.4, 1.0, 0.0], [0.0, 0.0, 1.0]]), "correlation"),
        (dict(correlation=[[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]), "correlation"),
        (dict(correlation=2.0 * np.eye(3)), "correlation"),
        (dict(ar1=1.0), "ar1"),
        (dict(ar1=[0.0, -1.2, 0.0]), "ar1"),
        (dict(jump_intensity=-1.0), "jump_intensity"),
        (dict(jump_intensity=300.0), "jump_intensity"),
        (dict(jump_std=-0.1), "jump_std"),
        (dict(jump_mean="big"), "jump_mean"),
        (dict(regime_p_stay=(1.1, 0.5)), "regime_p_stay"),
        (dict(regime_p_stay=(0.5, -0.1)), "regime_p_stay"),
        (dict(regime_p_stay=(0.5, 0.5, 0.5)), "regime_p_stay"),
        (dict(regime_vol_mult=(1.0, -2.0)), "regime_vol_mult"),
        (dict(regime_drift_mult=(1.0, float("inf"))), "regime_drift_mult"),
        (dict(init_price=0.0), "init_price"),
        (dict(init_price=[100.0, -1.0, 100.0]), "init_price"),
        (dict(base_volume=0.0), "base_volume"),
        (dict(intrabar_vol=-0.5), "intrabar_vol"),
        (dict(periods_per_year=0.0), "periods_per_year"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, name):
    args = dict(n_bars=10, n_assets=3, regimes=True) | kwargs
    with pytest.raises(ValueError, match=rf"^{name}: expected .*got"):
        generate_synthetic(**args)


def test_path_leaving_float64_raises_instead_of_returning_zeros():
    # sigma = 5 a year: the median log price falls 12.5 a year, past -700 within 60 years.
    with pytest.raises(ValueError, match=r"^n_bars: expected prices to stay within float64"):
        generate_synthetic(20_000, 1, volatility=5.0)


def test_valid_edge_inputs_are_accepted():
    # A scalar correlation is irrelevant for one asset (the default config uses 0.3 with A=1).
    one = generate_synthetic(50, 1, correlation=0.3)
    assert one["close"].shape == (50, 1)
    # Just above the equicorrelation bound -1/(A-1), zero vol, p_stay at 0 and 1.
    out = generate_synthetic(
        50, 3, correlation=-0.49, volatility=[0.0, 0.2, 0.2], regimes=True, regime_p_stay=(0.0, 1.0),
        jump_intensity=PPY, jump_mean=0.01,
    )
    assert_bars_consistent(out, 100.0)
    # Zero vol and a certain, fixed-size jump: the compensator cancels the jump exactly, leaving
    # drift * dt * regime_drift_mult: regime 0 at bar 0, then p_stay = (0, 1) moves to regime 1
    # for good.
    r0 = np.log(out["close"][:, 0] / out["open"][:, 0])
    np.testing.assert_allclose(r0[0], 0.05 * DT, rtol=1e-9)
    np.testing.assert_allclose(r0[1:], -0.05 * DT, rtol=1e-9)
