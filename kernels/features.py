"""Feature kernels: causal per-asset features computed once at load, and one env's observation.

``compute_features_nb`` fills ``out`` float32 (T, A, F) from float64 (5, T, A) bars (see
``enums.BarField``). Every value at bar t uses bars <= t only: EWMAs start from a bias-corrected
zero (as in Adam) instead of whole-series statistics, so no feature leaks the future.

``write_observation_nb`` writes one env's row from the flat (T * A * F,) view of the features:
the window of W bars ending at bar t, oldest first, laid out (W, A, F) in C order, then, if enabled, the portfolio features: weight of each
asset (A), cash weight, unrealised P&L / equity, drawdown, fraction of the episode left.
"""

import math

import numpy as np
from numba import njit, prange

from kernels.enums import Account, BarField, FeatureId

N_PORTFOLIO_EXTRA = 4  # cash weight, unrealised P&L, drawdown, time left (plus A weights)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _clip(x, c):
    return min(c, max(-c, x))


ASSET_BLOCK = 16  # assets per thread in the load-time kernels


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def compute_features_nb(bars, feature_ids, halflife, clip, out):
    """Fill out (T, A, F) with the EWMA-normalised features named by feature_ids (F,)."""
    n_assets = bars.shape[2]
    for b in prange((n_assets + ASSET_BLOCK - 1) // ASSET_BLOCK):
        _features_block_nb(bars, feature_ids, halflife, clip, b * ASSET_BLOCK,
                           min(n_assets, b * ASSET_BLOCK + ASSET_BLOCK), out)


# Bar after bar over a block of assets, with one EWMA state per asset: the rows bars[f, t, :]
# and out[t, :, :] are contiguous, where an asset-after-asset loop strides through memory.
@njit(cache=True, nogil=True, error_model="numpy")
def _features_block_nb(bars, feature_ids, halflife, clip, a0, a1, out):
    alpha = 1.0 - math.exp(math.log(0.5) / halflife)
    k = a1 - a0
    m_ret2 = np.zeros(k)  # EWMA of squared log returns
    m_rng = np.zeros(k)  # EWMA of log(high/low)
    m_vol = np.zeros(k)  # EWMA of log volume
    m_vol2 = np.zeros(k)  # EWMA of squared log volume
    w = 0.0  # 1 - (1 - alpha)^k, the bias correction after k updates (the same for every asset)
    for t in range(bars.shape[1]):
        w = (1.0 - alpha) * w + alpha
        for j in range(k):
            a = a0 + j
            c = bars[BarField.CLOSE, t, a]
            ret = 0.0 if t == 0 else math.log(c / bars[BarField.CLOSE, t - 1, a])
            rng = math.log(bars[BarField.HIGH, t, a] / bars[BarField.LOW, t, a])
            lv = math.log(max(bars[BarField.VOLUME, t, a], 1e-12))
            m_ret2[j] = (1.0 - alpha) * m_ret2[j] + alpha * ret * ret
            m_rng[j] = (1.0 - alpha) * m_rng[j] + alpha * rng
            m_vol[j] = (1.0 - alpha) * m_vol[j] + alpha * lv
            m_vol2[j] = (1.0 - alpha) * m_vol2[j] + alpha * lv * lv
            for q in range(feature_ids.shape[0]):
                out[t, a, q] = feature_value_nb(feature_ids[q], ret, rng, lv, m_ret2[j],
                                                m_rng[j], m_vol[j], m_vol2[j], w, clip)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def feature_value_nb(fid, ret, rng, lv, m_ret2, m_rng, m_vol, m_vol2, w, clip):
    """One feature from the bar's log return, log range and log volume and the EWMAs after
    this bar (bias correction w), clipped; shared with simulation mode (kernels.sim_rows)."""
    x = 0.0
    if fid == FeatureId.LOG_RETURN:
        sd = math.sqrt(m_ret2 / w)
        x = ret / sd if sd > 0.0 else 0.0
    elif fid == FeatureId.RANGE:
        mean = m_rng / w
        x = rng / mean - 1.0 if mean > 0.0 else 0.0
    elif fid == FeatureId.VOLUME:
        mean = m_vol / w
        var = m_vol2 / w - mean * mean
        x = (lv - mean) / math.sqrt(var) if var > 1e-12 else 0.0
    return min(clip, max(-clip, x))


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def ewma_nb(x, halflife, out):
    """Causal, bias-corrected EWMA of x (T, A) into out (T, A): out[t] uses x[<= t] only."""
    n_assets = x.shape[1]
    for b in prange((n_assets + ASSET_BLOCK - 1) // ASSET_BLOCK):
        _ewma_block_nb(x, halflife, b * ASSET_BLOCK, min(n_assets, b * ASSET_BLOCK + ASSET_BLOCK),
                       out)


@njit(cache=True, nogil=True, error_model="numpy")
def _ewma_block_nb(x, halflife, a0, a1, out):
    alpha = 1.0 - math.exp(math.log(0.5) / halflife)
    m = np.zeros(a1 - a0)
    w = 0.0
    for t in range(x.shape[0]):
        w = (1.0 - alpha) * w + alpha
        for a in range(a0, a1):
            m[a - a0] = (1.0 - alpha) * m[a - a0] + alpha * x[t, a]
            out[t, a] = m[a - a0] / w


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def write_observation_nb(features, row_size, t, window, i, position, avg_px, bars, acct,
                         time_left, portfolio, clip, out):
    """Write env i's observation at bar t into out[i] (float32); see the module docstring.

    ``features`` is the flat (T * A * F,) array and ``row_size`` = A * F.

    Portfolio features are clipped to [-clip, clip] like the market features (they only leave
    that range near bankruptcy), so the observation space is bounded."""
    n_assets = position.shape[1]
    # bars t-W+1..t are one contiguous run of the flat (T, A, F) array: a plain copy loop is
    # ~4x faster in Numba than the nested 3-D indexing it replaces. row_size = A * F is passed
    # in because an integer division per env costs as much as the whole copy.
    run = row_size * window
    base = (t - window + 1) * row_size
    for k in range(run):
        out[i, k] = features[base + k]
    k = run
    if portfolio:
        equity = acct[i, Account.EQUITY]
        inv = 1.0 / equity if equity > 0.0 else 0.0
        unrealized = 0.0
        for a in range(n_assets):
            close = bars[BarField.CLOSE, t, a]
            out[i, k] = _clip(position[i, a] * close * inv, clip)
            unrealized += position[i, a] * (close - avg_px[i, a])
            k += 1
        out[i, k] = _clip(acct[i, Account.CASH] * inv, clip)
        out[i, k + 1] = _clip(unrealized * inv, clip)
        out[i, k + 2] = _clip(acct[i, Account.DRAWDOWN], clip)
        out[i, k + 3] = time_left
