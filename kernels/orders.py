"""Order kernels: limit/stop prices set at decision time, intrabar fills against OHLC, expiry.

Contract: pure per-env scalar functions, scalars in and scalars out; no allocation, no
exceptions, so the fused ``prange`` step kernel can inline them. Order types are ``OrderType``
codes (an unknown code acts as ``MARKET``; codes are validated in Python); ``side`` is +1 for a
buy and -1 for a sell (any ``side > 0`` reads as a buy). Prices are in currency, offsets in bps
(1e-4) of the last close. "No price" and "no fill" are NaN.

Fill rules (bar = open, high, low of the bar the order is tried in; no intrabar path is assumed
beyond "the open comes first"):

* MARKET fills at the open.
* LIMIT buy fills iff ``low <= limit``, at ``min(open, limit)``; LIMIT sell iff
  ``high >= limit``, at ``max(open, limit)``. A gap through the limit fills at the better open,
  so a limit never fills worse than its price.
* STOP buy triggers iff ``high >= stop`` and fills at ``max(open, stop)``; STOP sell iff
  ``low <= stop``, at ``min(open, stop)``. A gap through the stop fills at the worse open; without
  a gap the fill is the stop price itself.

These are reference prices: slippage (``kernels.costs``) is applied on top.
"""

import numpy as np
from numba import njit

from kernels.enums import OrderType


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def order_price_nb(order_type, side, last_close, offset_bps):
    """Limit/stop price from the last close at decision time; NaN for MARKET.

    With ``off = offset_bps * 1e-4``: LIMIT buy ``close * (1 - off)``, LIMIT sell
    ``close * (1 + off)`` (a limit waits for a better price); STOP buy ``close * (1 + off)``, STOP
    sell ``close * (1 - off)`` (a stop waits for the price to move through it).
    """
    off = offset_bps * 1e-4
    if order_type == OrderType.LIMIT:
        return last_close * (1.0 - off) if side > 0 else last_close * (1.0 + off)
    if order_type == OrderType.STOP:
        return last_close * (1.0 + off) if side > 0 else last_close * (1.0 - off)
    return np.nan


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def order_fill_nb(order_type, side, order_px, open_, high, low):
    """Reference fill price of the order in this bar, or NaN if it does not fill.

    MARKET: ``open_``. LIMIT buy: iff ``low <= order_px``, at ``min(open_, order_px)``; LIMIT
    sell: iff ``high >= order_px``, at ``max(open_, order_px)``. STOP buy: iff
    ``high >= order_px``, at ``max(open_, order_px)``; STOP sell: iff ``low <= order_px``, at
    ``min(open_, order_px)``. A NaN ``order_px`` never fills a LIMIT or STOP order.
    """
    if order_type == OrderType.LIMIT:
        if side > 0:
            return min(open_, order_px) if low <= order_px else np.nan
        return max(open_, order_px) if high >= order_px else np.nan
    if order_type == OrderType.STOP:
        if side > 0:
            return max(open_, order_px) if high >= order_px else np.nan
        return min(open_, order_px) if low <= order_px else np.nan
    return open_


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def order_expired_nb(bars_waited, time_in_force):
    """True once a resting order has waited ``time_in_force`` bars: ``bars_waited >= tif``.

    ``bars_waited`` counts the bars the order was already tried in without filling. The caller
    checks this before trying the order in a bar (True: cancel with ``FillReason.EXPIRED``) and
    increments ``bars_waited`` after a bar without a fill. So ``time_in_force = 1`` is a one-bar
    (day) order, ``k`` bars is good-for-k-bars, and ``time_in_force <= 0`` is never tried.
    """
    return bars_waited >= time_in_force
