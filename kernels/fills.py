"""Fill kernels: execute one order with the configured costs, book it, record it.

Every fill in the step goes through ``execute_fill_nb`` (agent orders, stop exits, forced
liquidations), so costs, accounting and records follow one rule. Arrays are the step's: position,
avg_px, trail_ref float64 (n, A); acct float64 (n, N_ACCOUNT); cost_params (n, N_COST_PARAM);
series (N_SERIES, T, A); events int64 (n, N_FILL_REASONS); records rec_f float64
(n, slots, N_RECORD_F), rec_i int64 (n, slots, N_RECORD_I), rec_n int64 (n,).
"""

from numba import njit

from kernels.costs import (
    commission_cost_nb,
    fill_price_with_slippage_nb,
    maker_taker_bps_nb,
    slippage_bps_nb,
)
from kernels.enums import (
    Account,
    BarField,
    CostParam,
    OrderType,
    RecordField,
    RecordInt,
    SeriesField,
)
from kernels.portfolio import apply_fill_nb


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def fill_costs_nb(qty, ref_px, order_type, slippage_model, commission_model, slippage_bps,
                  half_spread_bps, spread_bps_bar, bar_volume, avg_volume, sigma, impact_coef,
                  commission_bps, maker_bps, taker_bps, per_share, min_commission):
    """(fill price, commission, slippage cost) of ``qty`` units around ``ref_px``, all in
    currency (scalars only, so any kernel can inline it without Numba's reference counting).
    A limit order fills at its limit or better, so it pays no slippage; market and stop orders
    do."""
    slip = 0.0 if order_type == OrderType.LIMIT else slippage_bps_nb(
        slippage_model, qty, slippage_bps, half_spread_bps, spread_bps_bar, bar_volume,
        avg_volume, sigma, impact_coef)
    px = fill_price_with_slippage_nb(qty, ref_px, slip)
    fee_bps = maker_taker_bps_nb(order_type, commission_bps, maker_bps, taker_bps)
    fee = commission_cost_nb(commission_model, qty, px, fee_bps, per_share, min_commission)
    return px, fee, abs(qty) * abs(px - ref_px)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def env_fill_costs_nb(i, a, qty, ref_px, fill_t, decision_t, order_type, bars, series,
                      cost_params, slippage_model, commission_model):
    """``fill_costs_nb`` of env i's order of ``qty`` units of asset a around ``ref_px`` in bar
    ``fill_t`` (decided at ``decision_t``), with env i's cost parameters and the bar's series."""
    return fill_costs_nb(
        qty, ref_px, order_type, slippage_model, commission_model,
        cost_params[i, CostParam.SLIPPAGE_BPS], cost_params[i, CostParam.HALF_SPREAD_BPS],
        series[SeriesField.SPREAD_BPS, fill_t, a], bars[BarField.VOLUME, fill_t, a],
        series[SeriesField.AVG_VOLUME, decision_t, a], series[SeriesField.SIGMA, decision_t, a],
        cost_params[i, CostParam.IMPACT_COEF], cost_params[i, CostParam.COMMISSION_BPS],
        cost_params[i, CostParam.MAKER_BPS], cost_params[i, CostParam.TAKER_BPS],
        cost_params[i, CostParam.PER_SHARE], cost_params[i, CostParam.MIN_COMMISSION])


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def equity_after_close_nb(i, a, equity, ref_px, fill_t, decision_t, order_type, bars, series,
                          cost_params, slippage_model, commission_model, position):
    """``equity`` less what closing env i's position in asset a around ``ref_px`` would cost
    (commission and slippage in currency, priced as ``execute_fill_nb`` prices an order of
    ``-position`` on its own): the equity a reversal is sized from with
    ``execution.reversal: cash`` (``ReversalSizing.CASH``)."""
    _, fee, slip_cost = env_fill_costs_nb(i, a, -position[i, a], ref_px, fill_t, decision_t,
                                          order_type, bars, series, cost_params,
                                          slippage_model, commission_model)
    return equity - fee - slip_cost


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def execute_fill_nb(i, a, qty, ref_px, fill_t, decision_t, order_type, reason, bars, series,
                    cost_params, slippage_model, commission_model, acct, position, avg_px,
                    trail_ref, record, rec_f, rec_i, rec_n):
    """Fill ``qty`` of asset a for env i around ``ref_px`` in bar ``fill_t``.

    Returns (cash change, cost) in currency; updates position, average price, realised P&L and
    the trailing reference (reset to the fill price when a position opens or flips); prices and
    costs from ``fill_costs_nb``."""
    px, fee, slip_cost = env_fill_costs_nb(i, a, qty, ref_px, fill_t, decision_t, order_type,
                                           bars, series, cost_params, slippage_model,
                                           commission_model)
    old = position[i, a]
    new_pos, new_avg, realized = apply_fill_nb(old, avg_px[i, a], qty, px)
    position[i, a] = new_pos
    avg_px[i, a] = new_avg
    acct[i, Account.REALIZED] += realized
    if new_pos != 0.0 and (old == 0.0 or (old > 0.0) != (new_pos > 0.0)):
        trail_ref[i, a] = px
    if record:
        k = rec_n[i]
        if k < rec_f.shape[1]:
            rec_f[i, k, RecordField.QTY] = qty
            rec_f[i, k, RecordField.PRICE] = px
            rec_f[i, k, RecordField.COMMISSION] = fee
            rec_f[i, k, RecordField.SLIPPAGE] = slip_cost
            rec_i[i, k, RecordInt.BAR] = fill_t
            rec_i[i, k, RecordInt.ASSET] = a
            rec_i[i, k, RecordInt.ORDER_TYPE] = order_type
            rec_i[i, k, RecordInt.REASON] = reason
            rec_n[i] = k + 1
    return -(qty * px + fee), fee + slip_cost


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def flatten_env_nb(i, t, reason, order_type, bars, series, cost_params, slippage_model,
                   commission_model, acct, position, avg_px, trail_ref, events, record, rec_f,
                   rec_i, rec_n, tradable):
    """Close every position of env i at bar t's close (a forced market order, no participation
    cap); returns (cash change, cost) and counts one ``reason`` event if anything traded.
    An asset without a bar at t (``tradable[t, a]`` False) keeps its position."""
    cash = 0.0
    cost = 0.0
    traded = False
    for a in range(position.shape[1]):
        qty = -position[i, a]
        if qty == 0.0 or not tradable[t, a]:
            continue
        d_cash, d_cost = execute_fill_nb(i, a, qty, bars[BarField.CLOSE, t, a], t, t,
                                         order_type, reason, bars, series, cost_params,
                                         slippage_model, commission_model, acct, position,
                                         avg_px, trail_ref, record, rec_f, rec_i, rec_n)
        position[i, a] = 0.0  # exactly flat, whatever the float arithmetic of the fill
        cash += d_cash
        cost += d_cost
        traded = True
    if traded:
        events[i, reason] += 1
    return cash, cost
