"""Shared fixtures: small, valid OHLCV frames (a random walk with consistent OHLC)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def random_walk_bars(n_bars: int = 300, n_assets: int = 1, seed: int = 0, *,
                     long: bool | None = None, start: str = "2020-01-01",
                     freq: str = "D") -> pd.DataFrame:
    """A valid OHLCV DataFrame of a geometric random walk.

    Args:
        n_bars: bars per asset.
        n_assets: number of symbols (``SYM0``, ``SYM1``, ...).
        seed: seed of the random walk.
        long: a long frame (``symbol`` column, timestamps repeated per symbol); default: long
            when ``n_assets > 1``, else wide (DatetimeIndex + open/high/low/close/volume).
        start, freq: timestamps of the bars (``pd.date_range``), index named ``timestamp``.

    Returns:
        A DataFrame with float64 open/high/low/close/volume, low <= open, close <= high,
        prices > 0, volume > 0 and strictly increasing timestamps per symbol.
    """
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n_bars, freq=freq, name="timestamp")
    frames = []
    for a in range(n_assets):
        log_ret = rng.normal(0.0, 0.01, n_bars)
        close = 100.0 * (1 + a) * np.exp(np.cumsum(log_ret))
        gap = np.exp(rng.normal(0.0, 0.002, n_bars))
        open_ = np.r_[100.0 * (1 + a), close[:-1]] * gap
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.003, n_bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.003, n_bars)))
        volume = rng.uniform(1e3, 1e4, n_bars)
        df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                           "volume": volume}, index=ts)
        if long or (long is None and n_assets > 1):
            df.insert(0, "symbol", f"SYM{a}")
        frames.append(df)
    return pd.concat(frames) if len(frames) > 1 else frames[0]


@pytest.fixture(scope="session")
def make_bars():
    """The ``random_walk_bars(n_bars, n_assets, seed, long=None)`` factory."""
    return random_walk_bars


@pytest.fixture(scope="session")
def bars() -> pd.DataFrame:
    """300 bars of one asset, wide. Shared: copy before mutating."""
    return random_walk_bars(300, 1, seed=0)
