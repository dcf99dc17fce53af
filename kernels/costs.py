"""Cost kernels: slippage models, commissions, maker/taker fees and order-size constraints.

Contract: pure per-env scalar functions, scalars in and scalars out. They allocate nothing and
never raise, so the fused ``prange`` step kernel can inline them. Parameters (model codes,
non-negative bps, lot sizes, ...) are validated once on the Python side; the only runtime
inputs handled here are market data that may be missing (a NaN spread, volume or volatility).

Units: ``qty`` in units of the asset (buy > 0, sell < 0); prices in currency; ``*_bps`` in
basis points (1 bps = 1e-4) of the reference price or of traded notional; volumes in units per
bar; ``sigma`` a per-bar standard deviation of returns as a fraction (0.01 = 1 %); commissions
in currency. Slippage always moves the price against the trader and costs are never negative.
"""

import numpy as np
from numba import njit

from kernels.enums import CommissionModel, OrderType, SlippageModel


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def slippage_bps_nb(model, qty, fixed_bps, half_spread_bps, spread_bps_bar, bar_volume,
                    avg_volume, sigma, impact_coef):
    """Slippage in bps (>= 0) that moves the fill price against the trader.

    ``model`` is a ``SlippageModel`` code:

    * ``FIXED``: ``fixed_bps + half_spread_bps``.
    * ``SPREAD_COLUMN``: ``fixed_bps + spread_bps_bar / 2``, where ``spread_bps_bar`` is the
      bar's quoted (full) spread in bps; a NaN spread counts as 0. ``half_spread_bps`` is not
      added: the bar's spread replaces it.
    * ``LINEAR_IMPACT``: ``fixed_bps + half_spread_bps + impact_coef * p * 1e4`` with the
      participation ``p = |qty| / bar_volume`` (dimensionless; ``p = 1`` if ``bar_volume <= 0``
      or NaN). ``impact_coef`` is the price move, as a fraction, of trading a whole bar's volume.
    * ``SQRT_IMPACT``: ``fixed_bps + half_spread_bps + impact_coef * sigma * sqrt(p) * 1e4`` with
      ``p = |qty| / avg_volume`` (``p = 1`` if ``avg_volume <= 0`` or NaN) and ``sigma`` the
      per-bar volatility of returns as a fraction; a NaN or non-positive ``sigma`` (e.g. during
      the warm-up of its estimate) adds no impact. ``impact_coef`` is dimensionless (the
      square-root law's Y, typically ~0.5-1).

    An unknown code is treated as ``FIXED`` (codes are validated in Python).
    """
    if model == SlippageModel.SPREAD_COLUMN:
        spread = spread_bps_bar if spread_bps_bar == spread_bps_bar else 0.0  # NaN -> 0
        return fixed_bps + 0.5 * spread
    base = fixed_bps + half_spread_bps
    if model == SlippageModel.LINEAR_IMPACT:
        # `not (v > 0)` also catches a NaN volume: charge as if the order took the whole bar
        participation = abs(qty) / bar_volume if bar_volume > 0.0 else 1.0
        return base + impact_coef * participation * 1e4
    if model == SlippageModel.SQRT_IMPACT:
        if not sigma > 0.0:
            return base
        participation = abs(qty) / avg_volume if avg_volume > 0.0 else 1.0
        return base + impact_coef * sigma * np.sqrt(participation) * 1e4
    return base


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def fill_price_with_slippage_nb(qty, ref_px, slip_bps):
    """``ref_px * (1 + sign(qty) * slip_bps * 1e-4)``: a buyer pays up, a seller receives less,
    but never a negative price (a seller's slippage beyond 10,000 bps gives a price of 0).

    ``qty == 0`` returns ``ref_px`` unchanged."""
    if qty > 0.0:
        return ref_px * (1.0 + slip_bps * 1e-4)
    if qty < 0.0:
        return ref_px * max(0.0, 1.0 - slip_bps * 1e-4)
    return ref_px


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def commission_cost_nb(model, qty, fill_px, bps, per_share, min_commission):
    """Commission in currency (>= 0) of one order, at least ``min_commission``.

    ``CommissionModel.BPS``: ``|qty| * fill_px * bps * 1e-4``; ``PER_SHARE``:
    ``|qty| * per_share``; then ``max(that, min_commission)``. ``qty == 0`` is no order and
    costs 0 (no minimum). An unknown code is treated as ``BPS``.
    """
    if qty == 0.0:
        return 0.0
    if model == CommissionModel.PER_SHARE:
        fee = abs(qty) * per_share
    else:
        fee = abs(qty) * fill_px * bps * 1e-4
    return max(fee, min_commission)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def maker_taker_bps_nb(order_type, commission_bps, maker_bps, taker_bps):
    """Commission rate in bps for an ``OrderType``: LIMIT pays maker, MARKET and STOP pay taker.

    A negative (or NaN) ``maker_bps``/``taker_bps`` means "not set" and falls back to
    ``commission_bps``. Maker rebates are not modelled: a set ``maker_bps`` is >= 0 (a negative
    value would read as "not set"), so commissions stay non-negative.
    """
    # a resting limit order adds liquidity (maker); market and triggered stop orders take it
    rate = maker_bps if order_type == OrderType.LIMIT else taker_bps
    return rate if rate >= 0.0 else commission_bps


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def cap_participation_nb(qty, bar_volume, max_participation):
    """``qty`` cut to ``|qty| <= max_participation * bar_volume``, sign kept.

    An empty bar (``bar_volume <= 0`` or NaN) trades nothing: returns 0.0. The kernels call it
    whenever ``max_participation <= 1`` (1.0: never more than the bar traded) and skip it for
    ``inf``, which stands for ``execution.max_participation: null`` (volume ignored).
    """
    if not bar_volume > 0.0:
        return 0.0
    cap = max_participation * bar_volume
    if qty > cap:
        return cap
    if qty < -cap:
        return -cap
    return qty


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def round_lot_nb(qty, lot_size):
    """``qty`` rounded toward zero to a whole number of ``lot_size`` (``lot_size <= 0``: unchanged).

    Never increases ``|qty|`` and keeps its sign (or returns 0). A ``qty`` within a relative
    1e-11 of a whole number of lots (float noise, ~45,000 ulps) is returned as is.
    """
    if not lot_size > 0.0:
        return qty
    n = abs(qty) / lot_size
    whole = np.floor(n + 0.5)
    if whole >= 1.0 and abs(n - whole) <= 1e-11 * whole:
        # already a multiple up to float noise (0.7 / 0.1 = 6.999999999999999): truncating would
        # drop a whole lot and leave dust when flattening a position built from lots; returning
        # qty itself (not whole * lot_size, which can be an ulp larger) keeps |result| <= |qty|
        return qty
    units = np.floor(n) * lot_size
    return units if qty >= 0.0 else -units


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def below_min_trade_nb(qty, px, min_trade_value):
    """True if the order's notional ``|qty * px|`` (currency) is below ``min_trade_value``."""
    return abs(qty * px) < min_trade_value
