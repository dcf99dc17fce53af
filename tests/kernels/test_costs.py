"""Cost kernels against plain-Python scalar references, and the properties costs must keep."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numba import njit, prange

from kernels.costs import (
    below_min_trade_nb,
    cap_participation_nb,
    commission_cost_nb,
    fill_price_with_slippage_nb,
    maker_taker_bps_nb,
    round_lot_nb,
    slippage_bps_nb,
)
from kernels.enums import CommissionModel, OrderType, SlippageModel

NAN = float("nan")

qty_st = st.floats(-1e6, 1e6, allow_nan=False)
nonzero_qty_st = qty_st.filter(lambda q: abs(q) > 1e-9)
px_st = st.floats(0.01, 1e5)
bps_st = st.floats(0.0, 100.0)
volume_st = st.one_of(st.floats(-1e3, 1e8), st.just(0.0), st.just(NAN))
spread_st = st.one_of(st.floats(0.0, 200.0), st.just(NAN))
sigma_st = st.one_of(st.floats(0.0, 0.2), st.just(NAN))
coef_st = st.floats(0.0, 2.0)
slip_model_st = st.sampled_from(list(SlippageModel))
impact_model_st = st.sampled_from([SlippageModel.LINEAR_IMPACT, SlippageModel.SQRT_IMPACT])
slip_params = dict(fixed=bps_st, half=bps_st, spread_bar=spread_st, bar_vol=volume_st,
                   avg_vol=volume_st, sigma=sigma_st, coef=coef_st)


# ---- scalar references (plain Python, written from the spec, not from the kernels) ------------


def ref_slippage_bps(model, qty, fixed, half, spread_bar, bar_vol, avg_vol, sigma, coef):
    if model == SlippageModel.FIXED:
        return fixed + half
    elif model == SlippageModel.SPREAD_COLUMN:
        if math.isnan(spread_bar):
            spread = 0.0
        else:
            spread = spread_bar
        return fixed + spread / 2.0
    elif model == SlippageModel.LINEAR_IMPACT:
        if bar_vol > 0:
            participation = abs(qty) / bar_vol
        else:  # empty bar or missing volume
            participation = 1.0
        return fixed + half + coef * participation * 10_000.0
    else:  # SQRT_IMPACT
        if math.isnan(sigma) or sigma <= 0:
            return fixed + half  # no volatility estimate yet: no impact term
        if avg_vol > 0:
            participation = abs(qty) / avg_vol
        else:
            participation = 1.0
        return fixed + half + coef * sigma * math.sqrt(participation) * 10_000.0


def ref_fill_price(qty, ref_px, slip_bps):
    if qty > 0:
        return ref_px + ref_px * slip_bps / 10_000.0
    elif qty < 0:
        return max(0.0, ref_px - ref_px * slip_bps / 10_000.0)  # a seller never pays to sell
    else:
        return ref_px


def ref_commission(model, qty, fill_px, bps, per_share, min_commission):
    if qty == 0:
        return 0.0
    if model == CommissionModel.BPS:
        fee = abs(qty) * fill_px * bps / 10_000.0
    else:
        fee = abs(qty) * per_share
    if fee < min_commission:
        return min_commission
    return fee


def ref_maker_taker(order_type, commission_bps, maker_bps, taker_bps):
    if order_type == OrderType.LIMIT:
        chosen = maker_bps
    else:
        chosen = taker_bps
    if math.isnan(chosen) or chosen < 0:
        return commission_bps
    return chosen


def ref_cap(qty, bar_vol, max_part):
    if not bar_vol > 0:
        return 0.0
    limit = max_part * bar_vol
    if abs(qty) <= limit:
        return qty
    elif qty > 0:
        return limit
    else:
        return -limit


def ref_round_lot(qty, lot):
    if lot <= 0:
        return qty
    lots = abs(qty) / lot
    nearest = round(lots)
    if nearest >= 1 and abs(lots - nearest) <= 1e-11 * nearest:
        return qty  # a whole number of lots up to float noise
    kept = math.floor(lots) * lot
    if qty < 0:
        return -kept
    return kept


def close(a, b, rel=1e-12, abs_=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ---- slippage ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(model=slip_model_st, qty=qty_st, **slip_params)
def test_slippage_matches_reference_and_is_non_negative(model, qty, fixed, half, spread_bar,
                                                        bar_vol, avg_vol, sigma, coef):
    got = slippage_bps_nb(model, qty, fixed, half, spread_bar, bar_vol, avg_vol, sigma, coef)
    want = ref_slippage_bps(model, qty, fixed, half, spread_bar, bar_vol, avg_vol, sigma, coef)
    assert close(got, want), (got, want)
    assert got >= 0.0


def test_slippage_cases():
    F, S, L, Q = SlippageModel  # FIXED, SPREAD_COLUMN, LINEAR_IMPACT, SQRT_IMPACT
    assert slippage_bps_nb(F, 10.0, 2.0, 3.0, 40.0, 100.0, 100.0, 0.01, 0.5) == 5.0
    assert slippage_bps_nb(S, 10.0, 2.0, 3.0, 40.0, 100.0, 100.0, 0.01, 0.5) == 22.0
    assert slippage_bps_nb(S, 10.0, 2.0, 3.0, NAN, 100.0, 100.0, 0.01, 0.5) == 2.0
    # 10 of 1000 units = 1 % participation; coef 0.1 -> 0.001 = 10 bps
    assert math.isclose(slippage_bps_nb(L, -10.0, 2.0, 3.0, 0.0, 1000.0, 0.0, 0.0, 0.1), 15.0)
    # empty bar: participation 1 -> coef * 1e4
    assert math.isclose(slippage_bps_nb(L, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1), 1000.0)
    # 25 of avg 10_000 units: sqrt(0.0025) = 0.05; x 2 % vol x coef 1 = 0.001 = 10 bps
    assert math.isclose(slippage_bps_nb(Q, 25.0, 1.0, 0.0, 0.0, 0.0, 10_000.0, 0.02, 1.0), 11.0)
    assert slippage_bps_nb(Q, 25.0, 1.0, 0.5, 0.0, 0.0, 10_000.0, NAN, 1.0) == 1.5


@settings(max_examples=200, deadline=None)
@given(model=slip_model_st, qty=nonzero_qty_st, ref_px=px_st, **slip_params)
def test_slippage_always_against_the_trader(model, qty, ref_px, fixed, half, spread_bar, bar_vol,
                                            avg_vol, sigma, coef):
    slip = slippage_bps_nb(model, qty, fixed, half, spread_bar, bar_vol, avg_vol, sigma, coef)
    fill = fill_price_with_slippage_nb(qty, ref_px, slip)
    if qty > 0:
        assert fill >= ref_px  # a buyer pays up
    else:
        assert fill <= ref_px  # a seller receives less
    move = slip * 1e-4 if qty > 0 else min(slip * 1e-4, 1.0)  # a sell floors at price 0
    assert close(abs(fill - ref_px), ref_px * move, rel=1e-9, abs_=1e-9 * ref_px)


@settings(max_examples=200, deadline=None)
@given(qty=qty_st, ref_px=px_st, slip=st.floats(0.0, 30_000.0))
def test_fill_price_matches_reference(qty, ref_px, slip):
    assert close(fill_price_with_slippage_nb(qty, ref_px, slip), ref_fill_price(qty, ref_px, slip))


def test_fill_price_cases():
    assert fill_price_with_slippage_nb(5.0, 100.0, 10.0) == 100.1
    assert fill_price_with_slippage_nb(-5.0, 100.0, 10.0) == 99.9
    assert fill_price_with_slippage_nb(0.0, 100.0, 10.0) == 100.0
    # huge impact on a sell: the price floors at 0 instead of going negative
    assert fill_price_with_slippage_nb(-5.0, 100.0, 25_000.0) == 0.0
    assert fill_price_with_slippage_nb(5.0, 100.0, 25_000.0) == 350.0


@settings(max_examples=200, deadline=None)
@given(model=impact_model_st, a=st.floats(0.0, 1e6), b=st.floats(0.0, 1e6),
       sign_a=st.sampled_from([1.0, -1.0]), sign_b=st.sampled_from([1.0, -1.0]),
       fixed=bps_st, half=bps_st, vol=st.floats(1.0, 1e8), sigma=st.floats(1e-4, 0.2),
       coef=st.floats(1e-3, 2.0))
def test_impact_grows_with_order_size(model, a, b, sign_a, sign_b, fixed, half, vol, sigma, coef):
    """Larger |qty| never costs fewer bps, whatever the side (impact depends on |qty| only)."""
    small, large = min(a, b), max(a, b)
    s_small = slippage_bps_nb(model, sign_a * small, fixed, half, 0.0, vol, vol, sigma, coef)
    s_large = slippage_bps_nb(model, sign_b * large, fixed, half, 0.0, vol, vol, sigma, coef)
    assert s_small <= s_large * (1 + 1e-12)
    if large > small * 1.001 and large / vol > 1e-6:
        assert s_large > s_small  # strictly: the impact term is really there


@settings(max_examples=200, deadline=None)
@given(a=st.floats(0.0, 1e6), b=st.floats(0.0, 1e6), vol=st.floats(1.0, 1e8),
       sigma=st.floats(1e-4, 0.2), coef=st.floats(1e-3, 2.0), fixed=bps_st)
def test_impact_shapes_linear_and_concave_sqrt(a, b, vol, sigma, coef, fixed):
    """LINEAR impact (in bps) is linear in |qty|; SQRT impact is concave (midpoint test)."""
    L, Q = SlippageModel.LINEAR_IMPACT, SlippageModel.SQRT_IMPACT

    def impact(model, q):
        return slippage_bps_nb(model, q, fixed, 0.0, 0.0, vol, vol, sigma, coef) - fixed

    mid = 0.5 * (a + b)
    tol = 1e-9 * (1.0 + fixed + impact(L, max(a, b)) + impact(Q, max(a, b)))
    assert abs(impact(L, mid) - 0.5 * (impact(L, a) + impact(L, b))) <= tol
    assert impact(Q, mid) >= 0.5 * (impact(Q, a) + impact(Q, b)) - tol
    if abs(a - b) > 0.1 * max(a, b) and min(a, b) > 1e-4 * vol:
        # strictly concave: the midpoint is clearly above the chord
        assert impact(Q, mid) > 0.5 * (impact(Q, a) + impact(Q, b))
    # sqrt law: 4x the size costs 2x the impact
    assert math.isclose(impact(Q, 4.0 * a), 2.0 * impact(Q, a), rel_tol=1e-6, abs_tol=tol)


# ---- commissions ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(model=st.sampled_from(list(CommissionModel)),
       qty=st.one_of(qty_st, st.just(0.0)), fill_px=px_st, bps=bps_st,
       per_share=st.floats(0.0, 0.1), min_c=st.floats(0.0, 10.0))
def test_commission_matches_reference_and_is_non_negative(model, qty, fill_px, bps, per_share,
                                                          min_c):
    got = commission_cost_nb(model, qty, fill_px, bps, per_share, min_c)
    want = ref_commission(model, qty, fill_px, bps, per_share, min_c)
    assert close(got, want, abs_=1e-12), (got, want)
    assert got >= 0.0
    if qty != 0.0:
        assert got >= min_c
    else:
        assert got == 0.0  # no order, no minimum


def test_commission_cases():
    B, P = CommissionModel
    assert math.isclose(commission_cost_nb(B, -100.0, 50.0, 10.0, 0.0, 1.0), 5.0)
    assert commission_cost_nb(B, 1.0, 50.0, 10.0, 0.0, 1.0) == 1.0  # 0.05 -> minimum
    assert math.isclose(commission_cost_nb(P, -300.0, 50.0, 10.0, 0.005, 1.0), 1.5)
    assert commission_cost_nb(P, 10.0, 50.0, 10.0, 0.005, 1.0) == 1.0
    assert commission_cost_nb(P, 0.0, 50.0, 10.0, 0.005, 1.0) == 0.0


@settings(max_examples=200, deadline=None)
@given(order_type=st.sampled_from(list(OrderType)), commission=bps_st,
       maker=st.one_of(st.floats(-10.0, 50.0), st.just(-1.0), st.just(NAN)),
       taker=st.one_of(st.floats(-10.0, 50.0), st.just(-1.0), st.just(NAN)))
def test_maker_taker_matches_reference(order_type, commission, maker, taker):
    got = maker_taker_bps_nb(order_type, commission, maker, taker)
    assert got == ref_maker_taker(order_type, commission, maker, taker)
    assert got >= 0.0


def test_maker_taker_cases():
    assert maker_taker_bps_nb(OrderType.LIMIT, 5.0, 1.0, 8.0) == 1.0
    assert maker_taker_bps_nb(OrderType.MARKET, 5.0, 1.0, 8.0) == 8.0
    assert maker_taker_bps_nb(OrderType.STOP, 5.0, 1.0, 8.0) == 8.0
    assert maker_taker_bps_nb(OrderType.LIMIT, 5.0, -1.0, 8.0) == 5.0
    assert maker_taker_bps_nb(OrderType.MARKET, 5.0, 1.0, -1.0) == 5.0
    assert maker_taker_bps_nb(OrderType.LIMIT, 5.0, 0.0, 8.0) == 0.0  # 0 is set: free maker


# ---- order-size constraints -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(qty=qty_st, bar_vol=volume_st, max_part=st.floats(0.0, 1.0))
def test_participation_cap(qty, bar_vol, max_part):
    got = cap_participation_nb(qty, bar_vol, max_part)
    assert got == ref_cap(qty, bar_vol, max_part)
    assert abs(got) <= abs(qty)
    assert got * qty >= 0.0  # sign kept (or nothing trades)
    if bar_vol > 0:
        assert abs(got) <= max_part * bar_vol
        if abs(qty) > max_part * bar_vol:
            assert abs(got) == max_part * bar_vol  # cut exactly to the cap, not below
    else:
        assert got == 0.0


def test_participation_cap_cases():
    assert cap_participation_nb(500.0, 1000.0, 0.1) == 100.0
    assert cap_participation_nb(-500.0, 1000.0, 0.1) == -100.0
    assert cap_participation_nb(50.0, 1000.0, 0.1) == 50.0
    assert cap_participation_nb(50.0, 0.0, 0.1) == 0.0
    assert cap_participation_nb(-50.0, NAN, 0.1) == 0.0


@settings(max_examples=200, deadline=None)
@given(qty=qty_st, lot=st.one_of(st.floats(1e-4, 1e3), st.sampled_from([0.0, -1.0, 0.01, 0.1,
                                                                         1.0, 100.0])))
def test_round_lot(qty, lot):
    got = round_lot_nb(qty, lot)
    assert got == ref_round_lot(qty, lot)
    assert abs(got) <= abs(qty)  # never increases exposure
    assert got * qty >= 0.0
    if lot <= 0:
        assert got == qty
        return
    assert abs(qty) - abs(got) < lot + 1e-15 * abs(qty)  # drops less than one lot
    lots = abs(got) / lot
    assert abs(lots - round(lots)) <= 1e-11 * max(1.0, lots)  # a whole number of lots


@settings(max_examples=200, deadline=None)
@given(qty=qty_st, lot=st.floats(1e-4, 1e3))
def test_round_lot_against_exact_arithmetic(qty, lot):
    """Truncate the exact rational |qty| / lot, away from the float-noise snapping band."""
    exact = Fraction(abs(qty)) / Fraction(lot)
    nearest = round(exact)
    gap = abs(exact - nearest)
    assume(not (nearest >= 1 and 1e-12 * nearest < gap < 1e-10 * nearest))  # boundary: skip
    got = round_lot_nb(qty, lot)
    if nearest >= 1 and gap <= 1e-12 * nearest:
        assert got == qty  # already whole lots: unchanged, no lot lost to 6.999999999999999
    else:
        want = math.floor(exact) * lot
        assert math.isclose(abs(got), want, rel_tol=1e-12, abs_tol=1e-300)


def test_round_lot_cases():
    assert round_lot_nb(12.9, 1.0) == 12.0
    assert round_lot_nb(-12.9, 1.0) == -12.0
    assert round_lot_nb(0.7, 0.1) == 0.7  # 0.7 / 0.1 = 6.999999999999999: keep the 7th lot
    assert round_lot_nb(-(0.4 + 0.3), 0.1) == -(0.4 + 0.3)  # flattening leaves no dust
    assert math.isclose(round_lot_nb(0.35, 0.1), 0.3)
    assert round_lot_nb(250.0, 100.0) == 200.0
    assert round_lot_nb(99.0, 100.0) == 0.0
    assert round_lot_nb(1e-12, 1.0) == 0.0
    assert round_lot_nb(3.7, 0.0) == 3.7


@settings(max_examples=200, deadline=None)
@given(qty=st.one_of(qty_st, st.just(0.0)), px=px_st, min_value=st.floats(0.0, 1e4))
def test_below_min_trade(qty, px, min_value):
    notional = abs(qty) * px
    want = True if notional < min_value else False
    assert below_min_trade_nb(qty, px, min_value) is want


def test_below_min_trade_cases():
    assert below_min_trade_nb(-2.0, 10.0, 25.0)
    assert not below_min_trade_nb(-3.0, 10.0, 25.0)
    assert not below_min_trade_nb(2.5, 10.0, 25.0)  # exactly the minimum trades
    assert not below_min_trade_nb(0.0, 10.0, 0.0)


# ---- usable inside a parallel fused loop ------------------------------------------------------


@njit(parallel=True)
def _costs_in_prange(qty, px, vol, out):
    for i in prange(qty.shape[0]):
        q = cap_participation_nb(qty[i], vol[i], 0.1)
        q = round_lot_nb(q, 1.0)
        slip = slippage_bps_nb(SlippageModel.SQRT_IMPACT, q, 1.0, 2.0, 0.0, vol[i], vol[i], 0.02,
                               0.7)
        fill = fill_price_with_slippage_nb(q, px[i], slip)
        rate = maker_taker_bps_nb(OrderType.MARKET, 5.0, -1.0, 3.0)
        fee = commission_cost_nb(CommissionModel.BPS, q, fill, rate, 0.0, 1.0)
        out[i, 0] = q
        out[i, 1] = fill
        out[i, 2] = fee if not below_min_trade_nb(q, fill, 10.0) else 0.0


def test_kernels_inline_into_a_prange_loop():
    rng = np.random.default_rng(0)
    n = 257
    qty = rng.normal(0.0, 500.0, n)
    px = rng.uniform(10.0, 200.0, n)
    vol = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(1e3, 1e4, n))
    out = np.empty((n, 3))
    _costs_in_prange(qty, px, vol, out)
    for i in range(n):
        q = ref_round_lot(ref_cap(qty[i], vol[i], 0.1), 1.0)
        slip = ref_slippage_bps(SlippageModel.SQRT_IMPACT, q, 1.0, 2.0, 0.0, vol[i], vol[i], 0.02,
                                0.7)
        fill = ref_fill_price(q, px[i], slip)
        fee = ref_commission(CommissionModel.BPS, q, fill, 3.0, 0.0, 1.0)
        if abs(q * fill) < 10.0:
            fee = 0.0
        assert out[i, 0] == q
        assert close(out[i, 1], fill)
        assert close(out[i, 2], fee)
