"""The metrics pack (optrader.metrics over kernels/metrics.py) against empyrical-reloaded.

empyrical (Quantopian's performance library, kept up as empyrical-reloaded, a test-only
dependency of the ``dev`` extra) is fed the same simple returns r_t = E_t / E_{t-1} - 1 of each
equity curve (a NaN-padded row: its returns up to its last bar). Conventions, mapped:

================  ==========================================  =================================
ours              empyrical                                   mapping
================  ==========================================  =================================
total_return      cum_returns_final(r)                        equal
cagr              annual_return(r, annualization=ppy)         equal: (E_T/E_0)^(ppy/T) - 1,
                                                              geometric
ann_vol           annual_volatility(r, annualization=ppy)     equal: std ddof=1 x sqrt(ppy)
sharpe            sharpe_ratio(r, risk_free=rf_bar, ...)      rf: ours is annual, compounded to
                                                              rf_bar = (1+rf)^(1/ppy) - 1 per
                                                              bar; arithmetic mean excess over
                                                              std ddof=1
sortino           sortino_ratio(r, required_return=rf_bar)    equal: downside deviation over
                                                              all bars (mean of min(r-rf,0)^2)
max_drawdown      -max_drawdown(r)                            sign: ours is a positive fraction;
                                                              both anchor the peak at E_0
calmar            calmar_ratio(r, annualization=ppy)          equal (cagr / max drawdown)
var_95            -value_at_risk(r, cutoff=0.05)              sign: ours is a loss > 0; both
                                                              the linearly interpolated 5 %
                                                              quantile
cvar_95           -conditional_value_at_risk(r, 0.05)         sign; both the mean of the
                                                              floor(0.05 (T-1)) + 1 smallest
                                                              returns when no return ties the
                                                              quantile (ours: mean of r <= q)
================  ==========================================  =================================

Deliberate differences, tested below: where a ratio is undefined (a constant curve: std 0; no
bar below rf) ours is NaN, never inf, while empyrical returns inf or NaN; ours treats a std
below ZERO_RTOL x mean |r| as 0 (rounding noise of a flat curve).
"""

import warnings

import numpy as np
import pytest

from optrader.metrics import compute_metrics

ep = pytest.importorskip("empyrical", minversion="0.7")

RTOL = 1e-10


def curves(n=6, t=900, seed=0):
    """GBM-like equity curves, some NaN-padded (envs that stopped early)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0004, 0.012, (n, t))
    r[1] += 0.002 * np.sin(np.arange(t) / 30)  # a trending row with long drawdowns
    eq = 1e5 * np.cumprod(np.concatenate([np.ones((n, 1)), 1 + r], axis=1), axis=1)
    eq[2, 500:] = np.nan
    eq[3, 37:] = np.nan
    return eq


def row_returns(row):
    row = row[~np.isnan(row)]
    return row[1:] / row[:-1] - 1.0


def reference(r, ppy, rf_annual):
    rf = (1.0 + rf_annual) ** (1.0 / ppy) - 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "total_return": ep.cum_returns_final(r),
            "cagr": ep.annual_return(r, annualization=ppy),
            "ann_vol": ep.annual_volatility(r, annualization=ppy),
            "sharpe": ep.sharpe_ratio(r, risk_free=rf, annualization=ppy),
            "sortino": ep.sortino_ratio(r, required_return=rf, annualization=ppy),
            "max_drawdown": -ep.max_drawdown(r),
            "calmar": ep.calmar_ratio(r, annualization=ppy),
            "var_95": -ep.value_at_risk(r, cutoff=0.05),
            "cvar_95": -ep.conditional_value_at_risk(r, cutoff=0.05),
        }


@pytest.mark.parametrize("ppy", [252.0, 6240.0, 8766.0, 52.0])
@pytest.mark.parametrize("rf_annual", [0.0, 0.03])
def test_metrics_match_empyrical(ppy, rf_annual):
    eq = curves(seed=int(ppy))
    ours = compute_metrics(eq, periods_per_year=ppy, rf_annual=rf_annual)
    for i in range(eq.shape[0]):
        want = reference(row_returns(eq[i]), ppy, rf_annual)
        for name, value in want.items():
            np.testing.assert_allclose(ours.loc[i, name], value, rtol=RTOL, atol=1e-14,
                                       err_msg=f"env {i} {name} (ppy {ppy}, rf {rf_annual})")


def test_sharpe_risk_free_is_annual_and_compounded_per_bar():
    # ours takes an annual rate; empyrical a per-bar one: only the compounded rate agrees
    eq = curves(seed=3)[:1]
    r = row_returns(eq[0])
    ours = compute_metrics(eq, periods_per_year=252.0, rf_annual=0.05).loc[0, "sharpe"]
    compounded = ep.sharpe_ratio(r, risk_free=1.05 ** (1 / 252) - 1, annualization=252)
    simple = ep.sharpe_ratio(r, risk_free=0.05 / 252, annualization=252)
    assert ours == pytest.approx(compounded, rel=RTOL)
    assert ours != pytest.approx(simple, rel=1e-6)


def test_cvar_mean_of_returns_at_or_below_the_quantile():
    # a tie at the quantile: ours averages every return <= q, empyrical a fixed count
    r = np.array([-0.05, -0.05, -0.05, 0.01, 0.02, 0.03, 0.01, 0.0, 0.02, 0.01] * 3)
    eq = 100.0 * np.concatenate([[1.0], np.cumprod(1 + r)])
    ours = compute_metrics(eq, periods_per_year=252.0)
    q = np.percentile(r, 5)
    assert ours.loc[0, "var_95"] == pytest.approx(-ep.value_at_risk(r, cutoff=0.05), rel=RTOL)
    assert ours.loc[0, "cvar_95"] == pytest.approx(-r[r <= q].mean(), rel=RTOL)
    assert ours.loc[0, "cvar_95"] == pytest.approx(
        -ep.conditional_value_at_risk(r, cutoff=0.05), rel=RTOL)  # here the counts agree too


def test_undefined_ratios_are_nan_where_empyrical_gives_inf_or_nan():
    flat = np.full(50, 100.0)
    up = 100.0 * 1.001 ** np.arange(50)  # never below rf = 0: no downside
    ours = compute_metrics(np.stack([flat, up]), periods_per_year=252.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = [ep.sharpe_ratio(np.zeros(49), annualization=252),
                  ep.sortino_ratio(np.full(49, 0.001), annualization=252)]
    assert not all(np.isfinite(theirs))
    assert np.isnan(ours.loc[0, "sharpe"]) and np.isnan(ours.loc[1, "sortino"])
    assert ours.loc[0, "ann_vol"] == 0.0 and np.isnan(ours.loc[0, "calmar"])
    # the compounded rate of a constant-growth curve: its std is rounding noise, counted as 0
    assert ours.loc[1, "ann_vol"] == 0.0 and np.isnan(ours.loc[1, "sharpe"])
