"""Risk kernels: causal volatility/ATR series computed once at load, position sizing, stops.

Load time. ``compute_risk_series_nb`` fills three float64 (T, A) arrays from the float64 (5, T, A)
bars (see ``enums.BarField``); every value at bar t uses bars <= t only:

* ``vol``: EWMA volatility of the log close-to-close return r_t = log(c_t / c_{t-1}), per bar
  (not annualised). RiskMetrics zero-mean convention, as in ``features.py``:
  vol_t = sqrt(EWMA(r^2)_t). It is the root of the second moment, not of the centred variance,
  so a steady trend with no noise still has a volatility and is not sized to infinity.
* ``mean``: EWMA of r_t, per bar.
* ``atr``: Wilder's average true range over ``atr_period`` bars, in price units.

The EWMAs start from zero with the Adam-style bias correction of ``features.py`` (weights
alpha (1 - alpha)^(t - k), divided by their sum), alpha = 1 - 0.5^(1 / halflife). There is no
return at t = 0, so the EWMAs start with r_1 (unlike ``features.py``, no fictitious zero return
is averaged in) and vol = mean = 0 at t = 0. The result equals pandas
``Series(r[1:]).ewm(halflife=halflife, adjust=True).mean()``.

Per step (one env, scalars in and out, no allocation, no exceptions):

* ``size_weight_nb``: a target weight sized by a ``SizingRule``, capped at +-max_abs_weight.
* ``stop_levels_nb``: stop-loss, take-profit and trailing-stop prices of a position.
* ``stop_exit_nb``: whether and at what price one bar hits those levels (a ``FillReason``).
* ``update_trail_ref_nb``: the highest high (long) / lowest low (short) since entry.

Conventions: ``side`` is +1 long, -1 short, 0 flat (no levels, no exit). Prices in currency.
A level that is off is NaN. Intended order in a step, for a held position at bar t:
``stop_levels_nb`` (with the reference of bars before t and the ATR of bar t-1, the last closed
bar), ``stop_exit_nb`` on bar t, then ``update_trail_ref_nb`` with bar t, so no bar's own
extreme moves the stop that bar is checked against. On entry, set trail_ref to the fill price.
"""

import math

import numpy as np
from numba import njit, prange

from kernels.enums import BarField, FillReason, SizingRule, StopKind
from kernels.features import ASSET_BLOCK


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def wilder_atr_step_nb(atr, tr, t, atr_period):
    """The ATR after bar t's true range tr (shared with simulation mode, kernels.sim_rows)."""
    if t < atr_period:
        # running mean of the first t+1 true ranges; at t = n-1 it is Wilder's SMA seed
        return atr + (tr - atr) / (t + 1.0)
    n = float(atr_period)
    return (atr * (n - 1.0) + tr) / n  # Wilder smoothing, alpha = 1/n


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def compute_risk_series_nb(bars, halflife, atr_period, out_vol, out_mean, out_atr):
    """Fill out_vol, out_mean, out_atr (T, A) float64 causally; see the module docstring."""
    n_assets = bars.shape[2]
    for b in prange((n_assets + ASSET_BLOCK - 1) // ASSET_BLOCK):
        _risk_series_block_nb(bars, halflife, atr_period, b * ASSET_BLOCK,
                              min(n_assets, b * ASSET_BLOCK + ASSET_BLOCK), out_vol, out_mean,
                              out_atr)


# Bar after bar over a block of assets (contiguous rows), as kernels.features does.
@njit(cache=True, nogil=True, error_model="numpy")
def _risk_series_block_nb(bars, halflife, atr_period, a0, a1, out_vol, out_mean, out_atr):
    alpha = 1.0 - math.exp(math.log(0.5) / halflife)
    m1 = np.zeros(a1 - a0)  # EWMA of r
    m2 = np.zeros(a1 - a0)  # EWMA of r^2
    atr = np.zeros(a1 - a0)
    w = 0.0  # sum of the EWMA weights so far, the bias correction (the same for every asset)
    for t in range(bars.shape[1]):
        if t > 0:
            w = (1.0 - alpha) * w + alpha
        for a in range(a0, a1):
            j = a - a0
            high = bars[BarField.HIGH, t, a]
            low = bars[BarField.LOW, t, a]
            if t == 0:
                out_vol[t, a] = 0.0
                out_mean[t, a] = 0.0
                tr = high - low
            else:
                prev = bars[BarField.CLOSE, t - 1, a]
                r = math.log(bars[BarField.CLOSE, t, a] / prev)
                m1[j] = (1.0 - alpha) * m1[j] + alpha * r
                m2[j] = (1.0 - alpha) * m2[j] + alpha * r * r
                out_vol[t, a] = math.sqrt(m2[j] / w)
                out_mean[t, a] = m1[j] / w
                tr = max(high - low, abs(high - prev), abs(low - prev))
            atr[j] = wilder_atr_step_nb(atr[j], tr, t, atr_period)
            out_atr[t, a] = atr[j]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def size_weight_nb(rule, weight, vol_bar, mean_bar, fraction, target_vol_annual, kelly_fraction,
                   periods_per_year, max_abs_weight):
    """The target ``weight`` sized by ``rule`` (a SizingRule), clipped to +-max_abs_weight.

    Args:
        rule: SizingRule code.
        weight: the requested signed weight (fraction of equity), e.g. the agent's action.
        vol_bar: per-bar volatility of the asset's log returns (``compute_risk_series_nb``).
        mean_bar: per-bar EWMA mean of the asset's log returns.
        fraction: FIXED_FRACTION multiplier.
        target_vol_annual: VOL_TARGET annualised volatility target (0.1 = 10 %/year).
        kelly_fraction: KELLY multiplier (0.5 = half Kelly).
        periods_per_year: bars per year, annualises vol_bar by sqrt(periods_per_year).
        max_abs_weight: cap on the absolute sized weight.

    Returns:
        DIRECT: weight; FIXED_FRACTION: weight * fraction; VOL_TARGET: weight * target_vol_annual
        / (vol_bar * sqrt(periods_per_year)); KELLY: weight * kelly_fraction * mean_bar /
        vol_bar^2, Merton's continuous-time leverage mu / sigma^2 (per-bar units cancel, so no
        annualisation). VOL_TARGET and KELLY give 0.0 when vol_bar <= 0 or NaN: with no
        volatility estimate (the first bar) the safe exposure is none, not an unbounded one.
        An unknown rule gives 0.0 (the Python layer validates rules).
    """
    if rule == SizingRule.DIRECT:
        w = weight
    elif rule == SizingRule.FIXED_FRACTION:
        w = weight * fraction
    elif rule == SizingRule.VOL_TARGET:
        if not vol_bar > 0.0:
            return 0.0
        w = weight * target_vol_annual / (vol_bar * math.sqrt(periods_per_year))
    elif rule == SizingRule.KELLY:
        var = vol_bar * vol_bar
        if not (vol_bar > 0.0 and var > 0.0):  # var underflows to 0 for vol < ~1e-162
            return 0.0
        w = weight * kelly_fraction * mean_bar / var
    else:
        return 0.0
    # an overflow to +-inf is clipped to the cap like any other oversized weight
    return min(max_abs_weight, max(-max_abs_weight, w))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _level_nb(side, ref_px, atr, kind, value):
    """ref_px moved by ``value`` (a fraction, or ATR multiples) in the direction ``side``."""
    if kind == StopKind.PCT:
        return ref_px * (1.0 + side * value)
    if kind == StopKind.ATR:
        return ref_px + side * value * atr
    return math.nan


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def stop_levels_nb(side, entry_px, trail_ref_px, atr, sl_kind, sl_value, tp_kind, tp_value,
                   trail_kind, trail_value):
    """(stop_px, take_px, trail_px) of a position; NaN for a level whose kind is NONE or when flat.

    Long (side = +1): stop = entry (1 - sl) [PCT] or entry - sl atr [ATR]; take = entry (1 + tp)
    or entry + tp atr; trail = trail_ref (1 - tr) or trail_ref - tr atr, trail_ref the highest
    high since entry before this bar. Short (side = -1) mirrored, trail_ref the lowest low.
    Values are positive distances. With an ATR trail the level can fall (long) when the ATR
    widens: it is a chandelier exit, not a ratchet.
    """
    if side > 0:
        s = 1.0
    elif side < 0:
        s = -1.0
    else:
        return math.nan, math.nan, math.nan
    stop_px = _level_nb(-s, entry_px, atr, sl_kind, sl_value)
    take_px = _level_nb(s, entry_px, atr, tp_kind, tp_value)
    trail_px = _level_nb(-s, trail_ref_px, atr, trail_kind, trail_value)
    return stop_px, take_px, trail_px


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def stop_exit_nb(side, stop_px, take_px, trail_px, open_, high, low):
    """(exit_px, reason) of a position on one bar; (NaN, FillReason.NONE) when nothing is hit.

    Long: the protective level P = max(stop_px, trail_px), NaNs ignored, reason STOP_LOSS or
    TRAILING_STOP after the higher one (a tie is STOP_LOSS). Gaps first: open_ <= P exits at
    open_, open_ >= take_px exits at open_ (TAKE_PROFIT). Then within the bar: low <= P exits at
    P, else high >= take_px exits at take_px. When both are touched within the bar their order is
    unknown and the adverse one is assumed first (exit at P). Short mirrored: P = min(stop,
    trail), gaps at open_ >= P or open_ <= take_px, then high >= P, then low <= take_px.
    """
    if side == 0:
        return math.nan, FillReason.NONE
    is_long = side > 0
    # protective level: the tighter of stop and trail (higher for a long, lower for a short)
    p = stop_px
    p_reason = FillReason.STOP_LOSS
    if trail_px == trail_px:  # not NaN
        if p != p or (trail_px > p if is_long else trail_px < p):
            p = trail_px
            p_reason = FillReason.TRAILING_STOP
    has_p = p == p
    has_take = take_px == take_px
    if is_long:
        if has_p and open_ <= p:
            return float(open_), p_reason  # gapped through: the first price available
        if has_take and open_ >= take_px:
            return float(open_), FillReason.TAKE_PROFIT
        if has_p and low <= p:
            return float(p), p_reason
        if has_take and high >= take_px:
            return float(take_px), FillReason.TAKE_PROFIT
    else:
        if has_p and open_ >= p:
            return float(open_), p_reason
        if has_take and open_ <= take_px:
            return float(open_), FillReason.TAKE_PROFIT
        if has_p and high >= p:
            return float(p), p_reason
        if has_take and low <= take_px:
            return float(take_px), FillReason.TAKE_PROFIT
    return math.nan, FillReason.NONE


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def update_trail_ref_nb(side, trail_ref, high, low):
    """The trailing reference after a bar: max(trail_ref, high) long, min(trail_ref, low) short.

    A NaN trail_ref is replaced by the bar's extreme; flat (side 0) gives NaN. Call after
    ``stop_exit_nb`` of the same bar."""
    if side > 0:
        return high if not trail_ref >= high else trail_ref
    if side < 0:
        return low if not trail_ref <= low else trail_ref
    return math.nan
