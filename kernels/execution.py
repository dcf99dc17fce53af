"""Execution kernels: fill price after slippage and the commission of one order.

Conventions: ``qty`` in units (buy > 0, sell < 0); prices in currency; ``*_bps`` in basis points
(1e-4) of the reference price or of traded notional; ``min_commission`` in currency per order.
Slippage always moves the price against the trader: a buyer pays up, a seller receives less.
Costs are never negative.
"""

from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def fill_price_nb(qty, ref_px, slippage_bps, half_spread_bps):
    """Reference price moved against the order by fixed slippage plus half the spread."""
    side = 1.0 if qty > 0.0 else -1.0
    return ref_px * (1.0 + side * (slippage_bps + half_spread_bps) * 1e-4)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def commission_nb(qty, fill_px, commission_bps, min_commission):
    """Commission in currency: bps of traded notional, at least min_commission per order."""
    return max(abs(qty) * fill_px * commission_bps * 1e-4, min_commission)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def should_trade_nb(qty, target_units):
    """False for a zero order or one that is float noise around an unchanged holding."""
    # a held weight re-derived from equity/price can differ from the position by a few ulps;
    # trading that noise would charge min_commission every bar for nothing
    return abs(qty) > 1e-10 * max(abs(target_units), abs(target_units - qty))
