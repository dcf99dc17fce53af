"""Portfolio kernels: action -> target weights, position bookkeeping, mark to market.

Units: prices and cash in currency (float64), positions in units of the asset (float64, signed,
short < 0), weights as signed fractions of equity. Functions take whole arrays plus a row index
rather than row views: a view costs an atomic reference-count update on the parent array, and
threads of the ``prange`` loop contending for it made the threaded step slower than the serial.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def clip_weight_nb(action, max_leverage):
    """One action clipped to [-1, 1] and scaled to a weight of at most max_leverage."""
    return min(1.0, max(-1.0, action)) * max_leverage


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def target_weights_nb(action, i, max_leverage, out):
    """Row i: clip each action to [-1, 1], scale by max_leverage, and scale down if gross > cap.

    Writes out[i]; returns the gross exposure of the targets (<= max_leverage)."""
    gross = 0.0
    for a in range(action.shape[1]):
        w = clip_weight_nb(action[i, a], max_leverage)
        out[i, a] = w
        gross += abs(w)
    if gross > max_leverage:
        # proportional scaling keeps the direction of the portfolio and meets the cap exactly
        k = max_leverage / gross
        for a in range(action.shape[1]):
            out[i, a] *= k
        gross = max_leverage
    return gross


@njit(cache=True, nogil=True, error_model="numpy")
def target_weights_rows_nb(w, n_rows, max_leverage):
    """``target_weights_nb`` on rows 0..n_rows-1 of w float64 (rows, A), in place.

    Written out rather than calling target_weights_nb per row: an inlined function with loops
    keeps Numba's atomic reference counting of its array arguments around every call."""
    for r in range(n_rows):
        gross = 0.0
        for a in range(w.shape[1]):
            x = clip_weight_nb(w[r, a], max_leverage)
            w[r, a] = x
            gross += abs(x)
        if gross > max_leverage:
            k = max_leverage / gross
            for a in range(w.shape[1]):
                w[r, a] *= k


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def target_units_nb(weight, equity_at_ref, ref_px, lot_size):
    """Units that hold ``weight`` of ``equity_at_ref`` at ``ref_px``, rounded toward zero to lots."""
    if equity_at_ref <= 0.0:
        return 0.0  # a bankrupt account can only be flattened
    units = weight * equity_at_ref / ref_px
    if lot_size > 0.0:
        # toward zero, so rounding never raises exposure above the requested weight
        units = np.trunc(units / lot_size) * lot_size
    return units


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def equity_at_nb(cash, position, i, bars, field, t):
    """cash + sum(position[i] * bars[field, t]) for env i."""
    e = cash
    for a in range(position.shape[1]):
        e += position[i, a] * bars[field, t, a]
    return e
