"""Order kernels (limit/stop prices, intrabar fills, expiry) against scalar references and rules."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit, prange

from kernels.enums import OrderType
from kernels.orders import order_expired_nb, order_fill_nb, order_price_nb

NAN = float("nan")
BUY, SELL = 1, -1
MARKET, LIMIT, STOP = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP

order_type_st = st.sampled_from(list(OrderType))
side_st = st.sampled_from([BUY, SELL])
frac_st = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0]))


@st.composite
def bar_and_price(draw):
    """A consistent bar (low <= open <= high) and an order price below, inside or above it."""
    low = draw(st.floats(1.0, 1000.0))
    high = low * (1.0 + draw(st.one_of(st.floats(0.0, 0.2), st.just(0.0))))
    open_ = low + draw(frac_st) * (high - low)
    open_ = min(max(open_, low), high)
    order_px = draw(st.one_of(
        st.floats(0.8 * low, 1.2 * high),  # anywhere: inside the range or gapped through
        st.sampled_from([low, high, open_]),  # touching exactly
    ))
    return open_, high, low, order_px


# ---- scalar references (plain Python, from the spec) ------------------------------------------


def ref_order_price(order_type, side, last_close, offset_bps):
    off = offset_bps / 10_000.0
    if order_type == LIMIT:
        if side == BUY:
            return last_close - last_close * off  # wait for a cheaper price
        else:
            return last_close + last_close * off
    elif order_type == STOP:
        if side == BUY:
            return last_close + last_close * off  # buy once the price breaks up
        else:
            return last_close - last_close * off
    else:
        return NAN


def ref_order_fill(order_type, side, order_px, open_, high, low):
    if order_type == MARKET:
        return open_
    if order_type == LIMIT and side == BUY:
        if low <= order_px:
            if open_ < order_px:
                return open_  # opened below the limit: the better price
            return order_px
        return NAN
    if order_type == LIMIT and side == SELL:
        if high >= order_px:
            if open_ > order_px:
                return open_
            return order_px
        return NAN
    if order_type == STOP and side == BUY:
        if high >= order_px:
            if open_ > order_px:
                return open_  # gapped up through the stop: the worse open
            return order_px
        return NAN
    # STOP sell
    if low <= order_px:
        if open_ < order_px:
            return open_
        return order_px
    return NAN


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


# ---- order price ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(order_type=order_type_st, side=side_st, last_close=st.floats(0.01, 1e5),
       offset=st.floats(0.0, 500.0))
def test_order_price_matches_reference(order_type, side, last_close, offset):
    got = order_price_nb(order_type, side, last_close, offset)
    want = ref_order_price(order_type, side, last_close, offset)
    if order_type == MARKET:
        assert math.isnan(got)
        return
    assert math.isclose(got, want, rel_tol=1e-14), (got, want)
    # a limit waits for a better price, a stop for a breakout: each on its side of the close
    if (order_type == LIMIT) == (side == BUY):
        assert got <= last_close
    else:
        assert got >= last_close


def test_order_price_cases():
    assert math.isclose(order_price_nb(LIMIT, BUY, 100.0, 50.0), 99.5)
    assert math.isclose(order_price_nb(LIMIT, SELL, 100.0, 50.0), 100.5)
    assert math.isclose(order_price_nb(STOP, BUY, 100.0, 50.0), 100.5)
    assert math.isclose(order_price_nb(STOP, SELL, 100.0, 50.0), 99.5)
    assert math.isnan(order_price_nb(MARKET, BUY, 100.0, 50.0))


# ---- fills ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(order_type=order_type_st, side=side_st, bar=bar_and_price())
def test_order_fill_matches_reference(order_type, side, bar):
    open_, high, low, order_px = bar
    got = order_fill_nb(order_type, side, order_px, open_, high, low)
    want = ref_order_fill(order_type, side, order_px, open_, high, low)
    assert same(got, want), (got, want)
    if not math.isnan(got):
        assert low <= got <= high  # every fill is a price the bar traded at


@settings(max_examples=200, deadline=None)
@given(side=side_st, bar=bar_and_price())
def test_limit_fills_only_when_touched_and_never_worse(side, bar):
    open_, high, low, limit = bar
    fill = order_fill_nb(LIMIT, side, limit, open_, high, low)
    if side == BUY:
        assert math.isnan(fill) == (low > limit)
        if not math.isnan(fill):
            assert fill <= limit  # never pays more than the limit
            assert fill == min(open_, limit)
    else:
        assert math.isnan(fill) == (high < limit)
        if not math.isnan(fill):
            assert fill >= limit  # never receives less than the limit
            assert fill == max(open_, limit)


@settings(max_examples=200, deadline=None)
@given(side=side_st, bar=bar_and_price())
def test_stop_triggers_and_gaps(side, bar):
    open_, high, low, stop = bar
    fill = order_fill_nb(STOP, side, stop, open_, high, low)
    if side == BUY:
        assert math.isnan(fill) == (high < stop)
        if math.isnan(fill):
            return
        assert fill >= stop  # a stop never fills better than its trigger
        if open_ <= stop:
            assert fill == stop  # not gapped: traded through the stop intrabar
        else:
            assert fill == open_  # gapped up through the stop: the worse open
    else:
        assert math.isnan(fill) == (low > stop)
        if math.isnan(fill):
            return
        assert fill <= stop
        if open_ >= stop:
            assert fill == stop
        else:
            assert fill == open_


def test_limit_buy_gap_down_fills_at_the_better_open():
    # limit 100; the bar opens at 95 (gapped down through it), trades 94..97
    assert order_fill_nb(LIMIT, BUY, 100.0, 95.0, 97.0, 94.0) == 95.0
    # no gap: opens above, trades down through the limit -> the limit itself
    assert order_fill_nb(LIMIT, BUY, 100.0, 101.0, 102.0, 99.0) == 100.0
    # touches exactly
    assert order_fill_nb(LIMIT, BUY, 100.0, 101.0, 102.0, 100.0) == 100.0
    # never reaches the limit
    assert math.isnan(order_fill_nb(LIMIT, BUY, 100.0, 101.0, 102.0, 100.01))


def test_limit_sell_gap_up_fills_at_the_better_open():
    assert order_fill_nb(LIMIT, SELL, 100.0, 105.0, 106.0, 103.0) == 105.0
    assert order_fill_nb(LIMIT, SELL, 100.0, 99.0, 100.5, 98.0) == 100.0
    assert math.isnan(order_fill_nb(LIMIT, SELL, 100.0, 99.0, 99.99, 98.0))


def test_stop_gaps_fill_at_the_open_both_sides():
    # buy stop 100: the bar gaps up and opens at 104 -> filled at 104, worse than the stop
    assert order_fill_nb(STOP, BUY, 100.0, 104.0, 106.0, 103.0) == 104.0
    # sell stop 100: the bar gaps down and opens at 96 -> filled at 96
    assert order_fill_nb(STOP, SELL, 100.0, 96.0, 97.0, 94.0) == 96.0
    # not gapped: triggered intrabar, filled at the stop
    assert order_fill_nb(STOP, BUY, 100.0, 98.0, 101.0, 97.0) == 100.0
    assert order_fill_nb(STOP, SELL, 100.0, 102.0, 103.0, 99.0) == 100.0
    # not triggered
    assert math.isnan(order_fill_nb(STOP, BUY, 100.0, 98.0, 99.9, 97.0))
    assert math.isnan(order_fill_nb(STOP, SELL, 100.0, 102.0, 103.0, 100.1))


def test_market_fills_at_open_and_nan_price_never_fills():
    assert order_fill_nb(MARKET, BUY, NAN, 101.0, 102.0, 99.0) == 101.0
    assert order_fill_nb(MARKET, SELL, NAN, 101.0, 102.0, 99.0) == 101.0
    for order_type in (LIMIT, STOP):
        for side in (BUY, SELL):
            assert math.isnan(order_fill_nb(order_type, side, NAN, 101.0, 102.0, 99.0))


# ---- expiry -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(bars_waited=st.integers(0, 1000), tif=st.integers(-5, 1000))
def test_order_expired_matches_reference(bars_waited, tif):
    want = True if bars_waited >= tif else False
    assert order_expired_nb(bars_waited, tif) is want


def test_order_expired_cases():
    assert not order_expired_nb(0, 1)  # a one-bar order is tried once
    assert order_expired_nb(1, 1)
    assert not order_expired_nb(2, 3)
    assert order_expired_nb(3, 3)
    assert order_expired_nb(0, 0)


# ---- usable inside a parallel fused loop ------------------------------------------------------


@njit(parallel=True)
def _orders_in_prange(order_type, side, close, bars, out):
    for i in prange(close.shape[0]):
        px = order_price_nb(order_type[i], side[i], close[i], 30.0)
        out[i] = order_fill_nb(order_type[i], side[i], px, bars[i, 0], bars[i, 1], bars[i, 2])
        if order_expired_nb(i % 3, 2):
            out[i] = np.nan


def test_kernels_inline_into_a_prange_loop():
    rng = np.random.default_rng(1)
    n = 301
    order_type = rng.integers(0, 3, n)
    side = rng.choice(np.array([BUY, SELL]), n)
    close = rng.uniform(50.0, 150.0, n)
    open_ = close * np.exp(rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close * np.exp(rng.normal(0.0, 0.005, n))) * 1.002
    low = np.minimum(open_, close * np.exp(rng.normal(0.0, 0.005, n))) * 0.998
    bars = np.stack([open_, high, low], axis=1)
    out = np.empty(n)
    _orders_in_prange(order_type, side, close, bars, out)
    n_filled = 0
    for i in range(n):
        px = ref_order_price(order_type[i], side[i], close[i], 30.0)
        want = ref_order_fill(order_type[i], side[i], px, open_[i], high[i], low[i])
        if i % 3 >= 2:
            want = NAN
        assert same(out[i], want) or math.isclose(out[i], want, rel_tol=1e-14), (i, out[i], want)
        n_filled += not math.isnan(out[i])
    assert 0 < n_filled < n  # the random bars exercise both outcomes
