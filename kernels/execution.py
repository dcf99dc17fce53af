"""Execution kernels: order decisions shared by every cost model (see kernels.costs for prices
and fees).

Conventions: ``qty`` in units (buy > 0, sell < 0); prices in currency; ``*_bps`` in basis points
(1e-4) of the reference price or of traded notional; ``min_commission`` in currency per order.
Slippage always moves the price against the trader: a buyer pays up, a seller receives less.
Costs are never negative.
"""

from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def should_trade_nb(qty, target_units):
    """False for a zero order or one that is float noise around an unchanged holding."""
    # a held weight re-derived from equity/price can differ from the position by a few ulps;
    # trading that noise would charge min_commission every bar for nothing
    return abs(qty) > 1e-10 * max(abs(target_units), abs(target_units - qty))
