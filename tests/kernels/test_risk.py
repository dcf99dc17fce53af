"""Tests for kernels/risk.py.

* compute_risk_series_nb against a plain-Python reference (EWMAs as explicit weighted sums, ATR
  as the textbook loop), against pandas ``ewm``, on a hand-made ATR series, and for causality;
* size_weight_nb, stop_levels_nb, stop_exit_nb, update_trail_ref_nb against if/else references
  written from the brief, on random inputs;
* properties: capped sizing with the right sign, vol targeting inverse in vol, a stop caps the
  loss except through a gap, no exit strictly between levels, the adverse level first when both
  are touched, exits inside the bar's range, a non-decreasing PCT trail that ignores the bar's
  own extreme.
"""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.enums import BarField, FillReason, SizingRule, StopKind
from kernels.risk import (
    compute_risk_series_nb,
    size_weight_nb,
    stop_exit_nb,
    stop_levels_nb,
    update_trail_ref_nb,
)

SETTINGS = settings(max_examples=200, deadline=None)
NAN = math.nan


def make_bars(seed, n_bars, n_assets, sigma=0.02):
    """Random-walk (5, T, A) bars with gaps between bars and low <= open, close <= high."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, sigma, (n_bars, n_assets)), axis=0))
    prev = np.vstack([np.full((1, n_assets), 100.0), close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, sigma / 2, (n_bars, n_assets)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, sigma, (n_bars, n_assets))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, sigma, (n_bars, n_assets))))
    volume = rng.uniform(1e3, 1e4, (n_bars, n_assets))
    return np.ascontiguousarray(np.stack([open_, high, low, close, volume]))


def run_series(bars, halflife, atr_period):
    out = [np.full(bars.shape[1:], -999.0) for _ in range(3)]
    compute_risk_series_nb(bars, halflife, atr_period, *out)
    return out


# ----------------------------------------------------------------------------------------------
# compute_risk_series_nb
def reference_series(bars, halflife, atr_period):
    """Plain loops: EWMAs as sum_k alpha (1-alpha)^(t-k) x_k / sum_k alpha (1-alpha)^(t-k)."""
    _, n_bars, n_assets = bars.shape
    alpha = 1.0 - 0.5 ** (1.0 / halflife)
    vol = np.zeros((n_bars, n_assets))
    mean = np.zeros((n_bars, n_assets))
    atr = np.zeros((n_bars, n_assets))
    for a in range(n_assets):
        close = [float(x) for x in bars[BarField.CLOSE, :, a]]
        high = [float(x) for x in bars[BarField.HIGH, :, a]]
        low = [float(x) for x in bars[BarField.LOW, :, a]]
        rets = [None] + [math.log(close[t] / close[t - 1]) for t in range(1, n_bars)]
        trs = [high[0] - low[0]]
        for t in range(1, n_bars):
            trs.append(max(high[t] - low[t], abs(high[t] - close[t - 1]),
                           abs(low[t] - close[t - 1])))
        for t in range(n_bars):
            if t == 0:
                vol[t, a] = 0.0
                mean[t, a] = 0.0
            else:
                weights = [alpha * (1.0 - alpha) ** (t - k) for k in range(1, t + 1)]
                total = sum(weights)
                mean[t, a] = sum(weights[k - 1] * rets[k] for k in range(1, t + 1)) / total
                second = sum(weights[k - 1] * rets[k] ** 2 for k in range(1, t + 1)) / total
                vol[t, a] = math.sqrt(second)
            if t < atr_period:
                atr[t, a] = sum(trs[: t + 1]) / (t + 1)
            else:
                atr[t, a] = (atr[t - 1, a] * (atr_period - 1) + trs[t]) / atr_period
    return vol, mean, atr


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(1, 40), n_assets=st.integers(1, 3),
       halflife=st.floats(0.5, 50.0), atr_period=st.integers(1, 20),
       sigma=st.sampled_from([0.0, 1e-4, 0.02, 0.2]))
def test_risk_series_matches_reference(seed, n_bars, n_assets, halflife, atr_period, sigma):
    bars = make_bars(seed, n_bars, n_assets, sigma)
    got = run_series(bars, halflife, atr_period)
    want = reference_series(bars, halflife, atr_period)
    for name, g, w in zip(("vol", "mean", "atr"), got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-15, err_msg=name)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 40), n_assets=st.integers(1, 3),
       halflife=st.floats(0.5, 50.0), atr_period=st.integers(1, 20), data=st.data())
def test_risk_series_is_causal(seed, n_bars, n_assets, halflife, atr_period, data):
    """Replacing every bar after t by another path leaves every output at bars <= t unchanged."""
    t = data.draw(st.integers(0, n_bars - 2), label="t")
    bars = make_bars(seed, n_bars, n_assets)
    other = make_bars(seed + 1, n_bars, n_assets, sigma=0.1)
    changed = bars.copy()
    changed[:, t + 1:, :] = other[:, t + 1:, :]
    before = run_series(bars, halflife, atr_period)
    after = run_series(changed, halflife, atr_period)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b[: t + 1], a[: t + 1])
    # and the change is visible afterwards, so the comparison above is not vacuous
    assert any(not np.array_equal(b[t + 1:], a[t + 1:]) for b, a in zip(before, after, strict=True))


def test_ewma_matches_pandas_adjusted_ewm():
    bars = make_bars(7, 300, 2)
    halflife = 12.5
    vol, mean, _ = run_series(bars, halflife, 14)
    for a in range(2):
        ret = pd.Series(np.log(bars[BarField.CLOSE, 1:, a] / bars[BarField.CLOSE, :-1, a]))
        np.testing.assert_allclose(mean[1:, a], ret.ewm(halflife=halflife, adjust=True).mean(),
                                   rtol=1e-10)
        np.testing.assert_allclose(vol[1:, a] ** 2,
                                   (ret**2).ewm(halflife=halflife, adjust=True).mean(),
                                   rtol=1e-10)
    assert np.all(vol[0] == 0.0) and np.all(mean[0] == 0.0)


def test_atr_hand_made_series():
    # columns: open, high, low, close; true ranges worked out by hand
    rows = [
        (9.0, 10.0, 8.0, 9.0),  # t0: h - l = 2
        (10.5, 11.0, 10.0, 10.5),  # t1: |h - c_prev| = |11 - 9| = 2 beats h - l = 1
        (13.2, 14.0, 13.0, 13.5),  # t2: gap up, |h - c_prev| = 3.5
        (11.8, 12.0, 11.0, 11.5),  # t3: gap down, |l - c_prev| = |11 - 13.5| = 2.5
        (11.5, 12.5, 11.0, 12.0),  # t4: h - l = 1.5
    ]
    bars = np.zeros((5, len(rows), 1))
    for t, (o, h, lo, c) in enumerate(rows):
        bars[:4, t, 0] = (o, h, lo, c)
    bars[BarField.VOLUME] = 1.0
    _, _, atr = run_series(bars, 10.0, 3)
    # running means 2, 2, then the SMA seed (2+2+3.5)/3 = 2.5, then Wilder (2 x prev + TR) / 3
    expected = [2.0, 2.0, 2.5, (2.0 * 2.5 + 2.5) / 3.0, (2.0 * 2.5 + 1.5) / 3.0]
    np.testing.assert_allclose(atr[:, 0], expected, rtol=1e-14)


@pytest.mark.parametrize("period", [1, 5, 14])
def test_atr_matches_pandas_textbook(period):
    bars = make_bars(3, 200, 1)
    high = pd.Series(bars[BarField.HIGH, :, 0])
    low = pd.Series(bars[BarField.LOW, :, 0])
    prev_close = pd.Series(bars[BarField.CLOSE, :, 0]).shift(1)
    tr = pd.concat([high - low, (high - prev_close).abs(), (low - prev_close).abs()],
                   axis=1).max(axis=1)  # NaNs skipped: TR_0 = h - l
    seeded = tr.copy()
    seeded.iloc[period - 1] = tr.iloc[:period].mean()
    wilder = seeded.iloc[period - 1:].ewm(alpha=1.0 / period, adjust=False).mean()
    expected = pd.concat([tr.iloc[: period - 1].expanding().mean(), wilder])
    _, _, atr = run_series(bars, 10.0, period)
    np.testing.assert_allclose(atr[:, 0], expected.to_numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# size_weight_nb
def reference_size(rule, weight, vol, mean, fraction, target, kelly, ppy, cap):
    if rule == SizingRule.DIRECT:
        w = weight
    elif rule == SizingRule.FIXED_FRACTION:
        w = weight * fraction
    elif rule == SizingRule.VOL_TARGET:
        if vol <= 0.0:
            return 0.0
        annual_vol = vol * math.sqrt(ppy)
        w = weight * (target / annual_vol)
    elif rule == SizingRule.KELLY:
        if vol <= 0.0:
            return 0.0
        w = weight * kelly * (mean / (vol * vol))
    else:
        raise AssertionError(rule)
    if w > cap:
        return cap
    if w < -cap:
        return -cap
    return w


rule_st = st.sampled_from(list(SizingRule))
weight_st = st.floats(-3.0, 3.0)
vol_st = st.one_of(st.just(0.0), st.floats(1e-5, 0.2))
mean_st = st.floats(-0.01, 0.01)
cap_st = st.floats(0.1, 10.0)
ppy_st = st.sampled_from([252.0, 365.0, 252.0 * 390.0, 12.0])


@SETTINGS
@given(rule=rule_st, weight=weight_st, vol=vol_st, mean=mean_st, fraction=st.floats(0.0, 2.0),
       target=st.floats(0.01, 1.0), kelly=st.floats(0.0, 1.0), ppy=ppy_st, cap=cap_st)
def test_size_weight_matches_reference(rule, weight, vol, mean, fraction, target, kelly, ppy,
                                       cap):
    got = size_weight_nb(rule, weight, vol, mean, fraction, target, kelly, ppy, cap)
    want = reference_size(rule, weight, vol, mean, fraction, target, kelly, ppy, cap)
    assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300)
    assert abs(got) <= cap


@SETTINGS
@given(rule=rule_st, weight=weight_st.filter(lambda w: abs(w) > 1e-6),
       vol=st.floats(1e-5, 0.2), mean=mean_st.filter(lambda m: abs(m) > 1e-9),
       fraction=st.floats(1e-3, 2.0), target=st.floats(0.01, 1.0), kelly=st.floats(1e-3, 1.0),
       ppy=ppy_st, cap=cap_st)
def test_size_weight_capped_and_signed(rule, weight, vol, mean, fraction, target, kelly, ppy,
                                       cap):
    got = size_weight_nb(rule, weight, vol, mean, fraction, target, kelly, ppy, cap)
    assert abs(got) <= cap
    if rule == SizingRule.KELLY:
        assert np.sign(got) == np.sign(mean * weight)
    else:
        assert np.sign(got) == np.sign(weight)


@pytest.mark.parametrize("rule", [SizingRule.VOL_TARGET, SizingRule.KELLY])
@pytest.mark.parametrize("vol", [0.0, -0.01, NAN])
def test_size_weight_without_vol_is_flat(rule, vol):
    assert size_weight_nb(rule, 1.0, vol, 0.001, 1.0, 0.1, 1.0, 252.0, 5.0) == 0.0


def test_size_weight_unknown_rule_is_flat_and_overflow_is_capped():
    assert size_weight_nb(99, 1.0, 0.01, 0.001, 1.0, 0.1, 1.0, 252.0, 5.0) == 0.0
    # vol^2 underflows: no estimate, flat; a huge leverage is capped, not inf
    assert size_weight_nb(SizingRule.KELLY, 1.0, 1e-170, 1e-3, 1.0, 0.1, 1.0, 252.0, 5.0) == 0.0
    assert size_weight_nb(SizingRule.KELLY, -1.0, 1e-150, 1e-3, 1.0, 0.1, 1.0, 252.0, 5.0) == -5.0
    assert size_weight_nb(SizingRule.VOL_TARGET, 1.0, 1e-300, 0.0, 1.0, 0.1, 1.0, 252.0,
                          2.0) == 2.0


def test_size_weight_examples():
    # 20 % annual target, 1 %/day vol x sqrt(252) = 15.87 %/year -> leverage 1.26
    got = size_weight_nb(SizingRule.VOL_TARGET, 0.5, 0.01, 0.0, 1.0, 0.2, 1.0, 252.0, 5.0)
    assert math.isclose(got, 0.5 * 0.2 / (0.01 * math.sqrt(252.0)), rel_tol=1e-15)
    # half Kelly, mu = 5 bp/bar, sigma = 1 %/bar -> 0.5 x 0.0005 / 0.0001 = 2.5
    got = size_weight_nb(SizingRule.KELLY, 1.0, 0.01, 0.0005, 1.0, 0.2, 0.5, 252.0, 5.0)
    assert math.isclose(got, 2.5, rel_tol=1e-12)
    assert size_weight_nb(SizingRule.FIXED_FRACTION, -0.8, 0.0, 0.0, 0.25, 0.2, 0.5, 252.0,
                          5.0) == -0.2
    assert size_weight_nb(SizingRule.DIRECT, -7.0, 0.0, 0.0, 0.25, 0.2, 0.5, 252.0, 5.0) == -5.0


@SETTINGS
@given(weight=weight_st.filter(lambda w: abs(w) > 1e-6), vol1=st.floats(1e-4, 0.2),
       ratio=st.floats(1.0, 10.0), target=st.floats(0.01, 1.0), ppy=ppy_st, cap=cap_st)
def test_vol_target_inverse_in_vol(weight, vol1, ratio, target, ppy, cap):
    vol2 = vol1 * ratio
    w1 = size_weight_nb(SizingRule.VOL_TARGET, weight, vol1, 0.0, 1.0, target, 1.0, ppy, cap)
    w2 = size_weight_nb(SizingRule.VOL_TARGET, weight, vol2, 0.0, 1.0, target, 1.0, ppy, cap)
    assert abs(w1) >= abs(w2)  # more volatile -> no more exposure
    if abs(w1) < cap:  # neither capped: exposure x vol is the constant weight x target
        assert math.isclose(w1 * vol1, w2 * vol2, rel_tol=1e-12)
        assert math.isclose(w1 * vol1 * math.sqrt(ppy), weight * target, rel_tol=1e-12)


# ----------------------------------------------------------------------------------------------
# stop_levels_nb
def reference_levels(side, entry, trail_ref, atr, sl_kind, sl, tp_kind, tp, tr_kind, tr):
    stop = take = trail = NAN
    if side == 1:
        if sl_kind == StopKind.PCT:
            stop = entry * (1 - sl)
        elif sl_kind == StopKind.ATR:
            stop = entry - sl * atr
        if tp_kind == StopKind.PCT:
            take = entry * (1 + tp)
        elif tp_kind == StopKind.ATR:
            take = entry + tp * atr
        if tr_kind == StopKind.PCT:
            trail = trail_ref * (1 - tr)
        elif tr_kind == StopKind.ATR:
            trail = trail_ref - tr * atr
    elif side == -1:
        if sl_kind == StopKind.PCT:
            stop = entry * (1 + sl)
        elif sl_kind == StopKind.ATR:
            stop = entry + sl * atr
        if tp_kind == StopKind.PCT:
            take = entry * (1 - tp)
        elif tp_kind == StopKind.ATR:
            take = entry - tp * atr
        if tr_kind == StopKind.PCT:
            trail = trail_ref * (1 + tr)
        elif tr_kind == StopKind.ATR:
            trail = trail_ref + tr * atr
    return stop, take, trail


kind_st = st.sampled_from(list(StopKind))
px_st = st.floats(1.0, 1000.0)
dist_st = st.floats(0.0, 0.5)


@SETTINGS
@given(side=st.sampled_from([-1, 0, 1]), entry=px_st, trail_ref=px_st, atr=st.floats(0.0, 50.0),
       sl_kind=kind_st, sl=dist_st, tp_kind=kind_st, tp=dist_st, tr_kind=kind_st, tr=dist_st,
       mult=st.floats(0.0, 5.0))
def test_stop_levels_match_reference(side, entry, trail_ref, atr, sl_kind, sl, tp_kind, tp,
                                     tr_kind, tr, mult):
    # ATR kinds take multiples, PCT kinds fractions
    sl_v = mult if sl_kind == StopKind.ATR else sl
    tp_v = mult if tp_kind == StopKind.ATR else tp
    tr_v = mult if tr_kind == StopKind.ATR else tr
    got = stop_levels_nb(side, entry, trail_ref, atr, sl_kind, sl_v, tp_kind, tp_v, tr_kind, tr_v)
    want = reference_levels(side, entry, trail_ref, atr, sl_kind, sl_v, tp_kind, tp_v, tr_kind,
                            tr_v)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-12)  # NaN == NaN here
    # protective levels sit on the losing side of entry, the take on the winning side
    stop, take, _ = got
    if side == 1:
        assert not stop > entry and not take < entry
    if side == -1:
        assert not stop < entry and not take > entry


# ----------------------------------------------------------------------------------------------
# stop_exit_nb
def reference_exit(side, stop, take, trail, open_, high, low):
    """Obvious if/else form of the gap and intrabar rules."""
    if side == 0:
        return NAN, FillReason.NONE
    has_stop = not math.isnan(stop)
    has_trail = not math.isnan(trail)
    has_take = not math.isnan(take)
    if side == 1:
        if has_stop and has_trail:
            if trail > stop:
                p, p_reason = trail, FillReason.TRAILING_STOP
            else:
                p, p_reason = stop, FillReason.STOP_LOSS
        elif has_stop:
            p, p_reason = stop, FillReason.STOP_LOSS
        elif has_trail:
            p, p_reason = trail, FillReason.TRAILING_STOP
        else:
            p, p_reason = None, None
        if p is not None and open_ <= p:
            return open_, p_reason
        if has_take and open_ >= take:
            return open_, FillReason.TAKE_PROFIT
        if p is not None and low <= p:
            return p, p_reason
        if has_take and high >= take:
            return take, FillReason.TAKE_PROFIT
        return NAN, FillReason.NONE
    # short
    if has_stop and has_trail:
        if trail < stop:
            p, p_reason = trail, FillReason.TRAILING_STOP
        else:
            p, p_reason = stop, FillReason.STOP_LOSS
    elif has_stop:
        p, p_reason = stop, FillReason.STOP_LOSS
    elif has_trail:
        p, p_reason = trail, FillReason.TRAILING_STOP
    else:
        p, p_reason = None, None
    if p is not None and open_ >= p:
        return open_, p_reason
    if has_take and open_ <= take:
        return open_, FillReason.TAKE_PROFIT
    if p is not None and high >= p:
        return p, p_reason
    if has_take and low <= take:
        return take, FillReason.TAKE_PROFIT
    return NAN, FillReason.NONE


@st.composite
def bar_and_levels(draw):
    """A consistent bar (low <= open <= high) and levels near it, some NaN, some tied."""
    low = draw(st.floats(50.0, 150.0))
    high = low + draw(st.floats(0.0, 20.0))
    open_ = draw(st.sampled_from([low, high, None]))
    if open_ is None:
        open_ = low + draw(st.floats(0.0, 1.0)) * (high - low)
    grid = [low, high, open_]

    def level():
        return draw(st.one_of(st.just(NAN), st.sampled_from(grid), st.floats(30.0, 180.0)))

    stop = level()
    trail = draw(st.one_of(st.just(stop), st.just(NAN), st.floats(30.0, 180.0)))
    take = level()
    return stop, take, trail, open_, high, low


def protective(side, stop, trail):
    levels = [x for x in (stop, trail) if not math.isnan(x)]
    if not levels:
        return NAN
    return max(levels) if side > 0 else min(levels)


@SETTINGS
@given(side=st.sampled_from([-1, 0, 1]), case=bar_and_levels())
def test_stop_exit_matches_reference(side, case):
    got_px, got_reason = stop_exit_nb(side, *case)
    want_px, want_reason = reference_exit(side, *case)
    assert got_reason == want_reason
    if want_reason == FillReason.NONE:
        assert math.isnan(got_px)
    else:
        assert got_px == want_px


@SETTINGS
@given(side=st.sampled_from([-1, 1]), case=bar_and_levels())
def test_stop_exit_properties(side, case):
    stop, take, trail, open_, high, low = case
    px, reason = stop_exit_nb(side, *case)
    p = protective(side, stop, trail)
    if reason != FillReason.NONE:
        assert low <= px <= high  # a price the bar traded
    if not math.isnan(p) and reason != FillReason.NONE:
        # the loss is capped at the level unless the bar opened beyond it
        if side == 1:
            assert px >= min(open_, p)
        else:
            assert px <= max(open_, p)
    # a bar strictly between the levels never exits
    beyond_p = not math.isnan(p) and (low <= p if side == 1 else high >= p)
    beyond_take = not math.isnan(take) and (high >= take if side == 1 else low <= take)
    if not beyond_p and not beyond_take:
        assert reason == FillReason.NONE and math.isnan(px)
    if beyond_p:  # touched the protective level: never a take-profit exit unless gapped to it
        assert reason in (FillReason.STOP_LOSS, FillReason.TRAILING_STOP) or px == open_


def test_stop_exit_examples():
    L, S = 1, -1
    SL, TP, TS = FillReason.STOP_LOSS, FillReason.TAKE_PROFIT, FillReason.TRAILING_STOP
    # long, stop 95, take 110: gap down through the stop exits at the open, not at 95
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 90.0, 92.0, 88.0) == (90.0, SL)
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 100.0, 101.0, 94.0) == (95.0, SL)
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 112.0, 115.0, 111.0) == (112.0, TP)  # gap up
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 100.0, 111.0, 99.0) == (110.0, TP)
    # both touched within the bar: the adverse one first
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 100.0, 111.0, 94.0) == (95.0, SL)
    assert stop_exit_nb(L, 95.0, 110.0, 97.0, 100.0, 111.0, 94.0) == (97.0, TS)  # tighter trail
    assert stop_exit_nb(L, 95.0, 110.0, 95.0, 100.0, 101.0, 94.0) == (95.0, SL)  # tie
    px, reason = stop_exit_nb(L, 95.0, 110.0, 97.0, 100.0, 109.0, 97.5)  # strictly inside
    assert math.isnan(px) and reason == FillReason.NONE
    # short, stop 105, take 90
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 108.0, 109.0, 107.0) == (108.0, SL)
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 100.0, 106.0, 99.0) == (105.0, SL)
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 100.0, 106.0, 89.0) == (105.0, SL)
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 100.0, 101.0, 89.0) == (90.0, TP)
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 88.0, 89.0, 87.0) == (88.0, TP)
    assert stop_exit_nb(S, 105.0, 90.0, 103.0, 100.0, 104.0, 95.0) == (103.0, TS)
    # a level touched exactly is hit
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 100.0, 101.0, 95.0) == (95.0, SL)
    assert stop_exit_nb(L, 95.0, 110.0, NAN, 100.0, 110.0, 96.0) == (110.0, TP)
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 100.0, 105.0, 99.0) == (105.0, SL)
    assert stop_exit_nb(S, 105.0, 90.0, NAN, 100.0, 101.0, 90.0) == (90.0, TP)
    px, reason = stop_exit_nb(0, 105.0, 90.0, 103.0, 100.0, 200.0, 1.0)  # flat
    assert math.isnan(px) and reason == FillReason.NONE


# ----------------------------------------------------------------------------------------------
# update_trail_ref_nb and the trailing stop over a path
@SETTINGS
@given(side=st.sampled_from([-1, 0, 1]), ref=st.one_of(st.just(NAN), px_st), low=px_st,
       span=st.floats(0.0, 100.0))
def test_update_trail_ref_matches_reference(side, ref, low, span):
    high = low + span
    got = update_trail_ref_nb(side, ref, high, low)
    if side == 0:
        assert math.isnan(got)
    elif math.isnan(ref):
        assert got == (high if side == 1 else low)
    elif side == 1:
        assert got == (high if high > ref else ref)
    else:
        assert got == (low if low < ref else ref)


def hold_through(side, bars, entry, atr, tr_kind, tr_value, sl_kind=StopKind.NONE, sl_value=0.0):
    """Levels -> exit check -> reference update on each bar, as a step would; trail levels seen."""
    ref = entry
    trails = []
    for open_, high, low in bars:
        stop, take, trail = stop_levels_nb(side, entry, ref, atr, sl_kind, sl_value,
                                           StopKind.NONE, 0.0, tr_kind, tr_value)
        trails.append(trail)
        px, reason = stop_exit_nb(side, stop, take, trail, open_, high, low)
        if reason != FillReason.NONE:
            return trails, px, reason
        ref = update_trail_ref_nb(side, ref, high, low)
    return trails, NAN, FillReason.NONE


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), side=st.sampled_from([-1, 1]),
       tr_kind=st.sampled_from([StopKind.PCT, StopKind.ATR]), tr=st.floats(0.0, 0.3),
       atr=st.floats(0.0, 20.0))
def test_trailing_level_only_tightens(seed, side, tr_kind, tr, atr):
    bars = make_bars(seed, 60, 1, sigma=0.03)[:3, :, 0].T  # (open, high, low) rows
    entry = float(bars[0, 0])
    value = tr * 10.0 if tr_kind == StopKind.ATR else tr
    trails, px, reason = hold_through(side, bars, entry, atr, tr_kind, value)
    steps = np.diff(trails)
    if side == 1:
        assert np.all(steps >= 0.0)
    else:
        assert np.all(steps <= 0.0)
    assert reason in (FillReason.NONE, FillReason.TRAILING_STOP)


def test_bar_extreme_does_not_move_its_own_stop():
    # long at 100 with a 10 % trail: the bar runs to 120 and then falls to 105. Had the bar's
    # own high set the reference first, the trail (108) would have been hit inside the bar.
    trails, px, reason = hold_through(1, [(100.0, 120.0, 105.0)], 100.0, 0.0, StopKind.PCT, 0.1)
    assert trails == [90.0] and reason == FillReason.NONE
    # next bar: the reference is now 120 and the trail 108
    trails, px, reason = hold_through(1, [(100.0, 120.0, 105.0), (110.0, 111.0, 107.0)], 100.0,
                                      0.0, StopKind.PCT, 0.1)
    assert trails == [90.0, 108.0] and (px, reason) == (108.0, FillReason.TRAILING_STOP)
    # mirrored for a short at 100: the bar drops to 80 and rallies to 95 (above 88) unstopped;
    # the next bar opens below the new trail (88) and trades up through it
    trails, px, reason = hold_through(-1, [(90.0, 95.0, 80.0), (87.0, 89.0, 86.0)], 100.0,
                                      0.0, StopKind.PCT, 0.1)
    assert trails == pytest.approx([110.0, 88.0], rel=1e-15) and (px, reason) == (88.0, FillReason.TRAILING_STOP)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), sl=st.floats(0.01, 0.2))
def test_long_stop_caps_the_loss_unless_gapped(seed, sl):
    """Held until stopped, a long loses at most entry x sl per unit, or down to the gap open."""
    bars = make_bars(seed, 80, 1, sigma=0.05)[:3, :, 0].T
    entry = float(bars[0, 0])
    _, px, reason = hold_through(1, bars, entry, 0.0, StopKind.NONE, 0.0, StopKind.PCT, sl)
    if reason == FillReason.NONE:
        return
    assert reason == FillReason.STOP_LOSS
    level = entry * (1.0 - sl)
    opens = bars[:, 0]
    exit_bar = int(np.argmax(bars[:, 2] <= level))  # first bar whose low reaches the level
    assert px == (opens[exit_bar] if opens[exit_bar] <= level else level)
    assert entry - px <= entry - min(opens[exit_bar], level)
    if opens[exit_bar] > level:  # no gap: the loss is exactly the stop distance
        assert math.isclose(entry - px, entry * sl, rel_tol=1e-12)
