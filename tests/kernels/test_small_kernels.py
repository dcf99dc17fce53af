"""Position bookkeeping, costs, targets, rewards and rng against scalar references and theory."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.costs import commission_cost_nb, fill_price_with_slippage_nb
from kernels.enums import CommissionModel
from kernels.portfolio import apply_fill_nb, target_units_nb, target_weights_nb
from kernels.reward import differential_sharpe_nb, log_return_nb
from kernels.rng import randint_nb

qty_st = st.floats(-1e4, 1e4).filter(lambda q: abs(q) > 1e-6)
px_st = st.floats(0.01, 1e4)


@settings(max_examples=200, deadline=None)
@given(fills=st.lists(st.tuples(qty_st, px_st), min_size=1, max_size=12), mark=px_st)
def test_average_cost_books_reconcile(fills, mark):
    """Realised + unrealised P&L equals the cash-flow P&L of the same fills (no costs)."""
    pos, avg, realized, cash = 0.0, 0.0, 0.0, 0.0
    for qty, px in fills:
        pos, avg, r = apply_fill_nb(pos, avg, qty, px)
        realized += r
        cash -= qty * px
    unrealized = pos * (mark - avg)
    total_cash_pnl = cash + pos * mark
    scale = sum(abs(q) * p for q, p in fills) + abs(pos * mark)
    assert math.isclose(realized + unrealized, total_cash_pnl, rel_tol=1e-9, abs_tol=1e-9 * scale)
    if pos == 0.0:
        assert avg == 0.0
    else:
        assert avg > 0.0


def test_apply_fill_cases():
    assert apply_fill_nb(0.0, 0.0, 10.0, 5.0) == (10.0, 5.0, 0.0)
    assert apply_fill_nb(10.0, 5.0, 10.0, 7.0) == (20.0, 6.0, 0.0)  # add: averaged
    assert apply_fill_nb(20.0, 6.0, -5.0, 8.0) == (15.0, 6.0, 10.0)  # reduce: realise 5 x 2
    assert apply_fill_nb(15.0, 6.0, -20.0, 4.0) == (-5.0, 4.0, -30.0)  # flip: realise, reopen
    assert apply_fill_nb(-5.0, 4.0, 5.0, 3.0) == (0.0, 0.0, 5.0)  # cover a short at a profit


@settings(max_examples=200, deadline=None)
@given(qty=qty_st, px=px_st, slip=st.floats(0, 100), spread=st.floats(0, 100),
       bps=st.floats(0, 100), min_c=st.floats(0, 10))
def test_costs_never_negative_and_against_trader(qty, px, slip, spread, bps, min_c):
    fill = fill_price_with_slippage_nb(qty, px, slip + spread)
    if qty > 0:
        assert fill >= px
    else:
        assert fill <= px
    assert math.isclose(abs(fill - px), px * (slip + spread) * 1e-4, rel_tol=1e-9, abs_tol=1e-12)
    fee = commission_cost_nb(CommissionModel.BPS, qty, fill, bps, 0.0, min_c)
    assert fee >= 0.0 and fee >= min_c
    assert math.isclose(fee, max(abs(qty) * fill * bps * 1e-4, min_c), rel_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(action=st.lists(st.floats(-3, 3), min_size=1, max_size=6), lev=st.floats(0.1, 5))
def test_target_weights_respect_gross_cap(action, lev):
    out2 = np.zeros((1, len(action)))
    gross = target_weights_nb(np.array([action]), 0, lev, out2)
    out = out2[0]
    assert np.sum(np.abs(out)) <= lev * (1 + 1e-12)
    assert math.isclose(gross, np.sum(np.abs(out)), rel_tol=1e-9, abs_tol=1e-12)
    clipped = np.clip(action, -1, 1) * lev
    if np.sum(np.abs(clipped)) <= lev:
        np.testing.assert_allclose(out, clipped)
    else:  # proportional: same direction
        np.testing.assert_allclose(out * np.sum(np.abs(clipped)) / lev, clipped, rtol=1e-9,
                                   atol=1e-12)


def test_target_units_lots_round_toward_zero():
    assert target_units_nb(1.0, 1000.0, 3.0, 0.0) == 1000.0 / 3.0
    assert target_units_nb(1.0, 1000.0, 3.0, 10.0) == 330.0
    assert target_units_nb(-1.0, 1000.0, 3.0, 10.0) == -330.0
    assert target_units_nb(1.0, -5.0, 3.0, 0.0) == 0.0  # bankrupt: flatten only


def test_differential_sharpe_tracks_change_of_sharpe():
    """Moody & Saffell: S_t - S_{t-1} ~ eta * D_t for small eta (first-order expansion)."""
    rng = np.random.default_rng(3)
    eta = 1e-4
    a, b = 0.001, 0.0002
    for r in rng.normal(0.001, 0.01, 50):
        d, a2, b2 = differential_sharpe_nb(r, a, b, eta)
        s_prev = a / math.sqrt(b - a * a)
        s_new = a2 / math.sqrt(b2 - a2 * a2)
        assert math.isclose((s_new - s_prev) / eta, d, rel_tol=1e-2, abs_tol=1e-6)
        assert math.isclose(a2, a + eta * (r - a)) and math.isclose(b2, b + eta * (r * r - b))
        a, b = a2, b2
    assert differential_sharpe_nb(0.01, 0.0, 0.0, 0.1)[0] == 0.0  # no variance yet: 0


def test_log_return_floors_wipeout():
    assert log_return_nb(100.0, 110.0) == math.log(1.1)
    assert log_return_nb(100.0, -5.0) == math.log(1e-12)


def test_randint_range_determinism_and_spread():
    s1 = np.arange(1000, dtype=np.uint64)
    s2 = s1.copy()
    draws = np.array([randint_nb(s1, i, 3, 9) for i in range(1000)])
    assert np.array_equal(draws, [randint_nb(s2, i, 3, 9) for i in range(1000)])
    assert draws.min() == 3 and draws.max() == 9
    counts = np.bincount(draws - 3)
    assert counts.min() > 1000 / 7 * 0.6  # every value hit at roughly its share
