"""Portfolio kernels: action -> target weights, position bookkeeping, mark to market.

Units: prices and cash in currency (float64), positions in units of the asset (float64, signed,
short < 0), weights as signed fractions of equity. All functions work on one env's row so the
fused step can call them inside its ``prange`` loop without allocating.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def target_weights_nb(action_row, max_leverage, out_row):
    """Clip each action to [-1, 1], scale by max_leverage, and scale down if gross > max_leverage.

    Returns the gross exposure of the targets (<= max_leverage)."""
    gross = 0.0
    for a in range(action_row.shape[0]):
        w = min(1.0, max(-1.0, action_row[a])) * max_leverage
        out_row[a] = w
        gross += abs(w)
    if gross > max_leverage:
        # proportional scaling keeps the direction of the portfolio and meets the cap exactly
        k = max_leverage / gross
        for a in range(action_row.shape[0]):
            out_row[a] *= k
        gross = max_leverage
    return gross


@njit(cache=True, nogil=True)
def target_units_nb(weight, equity_at_ref, ref_px, lot_size):
    """Units that hold ``weight`` of ``equity_at_ref`` at ``ref_px``, rounded toward zero to lots."""
    if equity_at_ref <= 0.0:
        return 0.0  # a bankrupt account can only be flattened
    units = weight * equity_at_ref / ref_px
    if lot_size > 0.0:
        # toward zero, so rounding never raises exposure above the requested weight
        units = np.trunc(units / lot_size) * lot_size
    return units


@njit(cache=True, nogil=True)
def apply_fill_nb(position, avg_px_open, qty, fill_px):
    """New (position, avg_px_open, realized_pnl) after filling ``qty`` units at ``fill_px``.

    Average-cost accounting: adding to a position moves the average price; reducing realises
    P&L against it; crossing through zero realises the closed part and opens the rest at fill_px.
    """
    new_pos = position + qty
    realized = 0.0
    if position == 0.0 or (position > 0.0) == (qty > 0.0):
        new_avg = (avg_px_open * abs(position) + fill_px * abs(qty)) / abs(new_pos)
    else:
        closed = min(abs(qty), abs(position))
        realized = closed * (fill_px - avg_px_open) * (1.0 if position > 0.0 else -1.0)
        if abs(qty) < abs(position):
            new_avg = avg_px_open
        elif new_pos == 0.0:
            new_avg = 0.0
        else:
            new_avg = fill_px
    return new_pos, new_avg, realized


@njit(cache=True, nogil=True)
def equity_at_nb(cash, position_row, px_row):
    """cash + sum(position * price) for one env."""
    e = cash
    for a in range(position_row.shape[0]):
        e += position_row[a] * px_row[a]
    return e
