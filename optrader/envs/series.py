"""Load-time causal estimates the kernels read per bar: ``market_series`` -> float64
(N_SERIES, T, A) laid out as ``kernels.enums.SeriesField`` (average volume, volatility, mean
return, ATR, spread). Every value at bar t uses bars <= t only."""

from __future__ import annotations

import numpy as np

from kernels.enums import N_SERIES, BarField, SeriesField
from kernels.features import ewma_nb
from kernels.risk import compute_risk_series_nb


def market_series(market, volume_halflife: float, vol_halflife: float,
                  atr_period: int) -> np.ndarray:
    """Series for the cost and risk models of ``market`` (a MarketData)."""
    n_bars, n_assets = market.n_bars, market.n_assets
    out = np.empty((N_SERIES, n_bars, n_assets))
    ewma_nb(market.bars[BarField.VOLUME], float(volume_halflife), out[SeriesField.AVG_VOLUME])
    compute_risk_series_nb(market.bars, float(vol_halflife), int(atr_period),
                           out[SeriesField.SIGMA], out[SeriesField.RET_MEAN],
                           out[SeriesField.ATR])
    spread = getattr(market, "spread", None)
    out[SeriesField.SPREAD_BPS] = np.nan if spread is None else spread
    out.setflags(write=False)
    return out
