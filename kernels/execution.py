"""Execution kernels: whether an order is worth sending (prices and fees: kernels.costs).

``qty`` and ``target_units`` in units of the asset (buy > 0, sell < 0).
"""

from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def should_trade_nb(qty, target_units):
    """False for a zero order or one that is float noise around an unchanged holding."""
    # a held weight re-derived from equity/price can differ from the position by a few ulps;
    # trading that noise would charge min_commission every bar for nothing
    return abs(qty) > 1e-10 * max(abs(target_units), abs(target_units - qty))
