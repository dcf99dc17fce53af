"""The load-time kernels (features, average volume, risk series) run bar after bar over blocks of
assets in parallel; every asset must come out exactly as if computed alone."""

from __future__ import annotations

import numpy as np

from kernels.enums import BarField
from kernels.features import ASSET_BLOCK, compute_features_nb, ewma_nb
from kernels.risk import compute_risk_series_nb


def _bars(n_bars, n_assets, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0))
    bars = np.empty((5, n_bars, n_assets))
    bars[BarField.OPEN] = close * np.exp(rng.normal(0, 0.002, close.shape))
    bars[BarField.HIGH] = np.maximum(bars[BarField.OPEN], close) * 1.003
    bars[BarField.LOW] = np.minimum(bars[BarField.OPEN], close) * 0.997
    bars[BarField.CLOSE] = close
    bars[BarField.VOLUME] = rng.uniform(0, 1e6, close.shape)
    return bars


def test_every_asset_equals_the_kernels_on_that_asset_alone():
    n_assets = 2 * ASSET_BLOCK + 5  # full blocks and a partial one
    bars = _bars(300, n_assets)
    ids = np.array([0, 1, 2], dtype=np.int64)
    feats = np.empty((300, n_assets, 3), dtype=np.float32)
    compute_features_nb(bars, ids, 12.0, 5.0, feats)
    avg_vol = np.empty((300, n_assets))
    ewma_nb(np.ascontiguousarray(bars[BarField.VOLUME]), 20.0, avg_vol)
    risk = [np.empty((300, n_assets)) for _ in range(3)]
    compute_risk_series_nb(bars, 15.0, 14, *risk)
    for a in (0, ASSET_BLOCK - 1, ASSET_BLOCK, n_assets - 1):
        one = np.ascontiguousarray(bars[:, :, a:a + 1])
        f1 = np.empty((300, 1, 3), dtype=np.float32)
        compute_features_nb(one, ids, 12.0, 5.0, f1)
        np.testing.assert_array_equal(feats[:, a], f1[:, 0])
        v1 = np.empty((300, 1))
        ewma_nb(np.ascontiguousarray(one[BarField.VOLUME]), 20.0, v1)
        np.testing.assert_array_equal(avg_vol[:, a], v1[:, 0])
        r1 = [np.empty((300, 1)) for _ in range(3)]
        compute_risk_series_nb(one, 15.0, 14, *r1)
        for got, want in zip(risk, r1, strict=True):
            np.testing.assert_array_equal(got[:, a], want[:, 0])
