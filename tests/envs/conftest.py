"""Fixtures for env tests: small random-walk bars as a DataFrame, and a builder of envs."""

import numpy as np
import pandas as pd
import pytest

import optrader


def bars_frame(n_bars=400, n_assets=1, seed=0, vol=0.01):
    """Consistent OHLCV random walk; wide for one asset, long (symbol column) for several."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2021-01-01", periods=n_bars, freq="h", tz="UTC")
    parts = []
    for a in range(n_assets):
        close = 50.0 * (a + 1) * np.exp(np.cumsum(rng.normal(0, vol, n_bars)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, vol / 4, n_bars))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n_bars)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n_bars)))
        vol_ = rng.lognormal(12, 0.3, n_bars)
        df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                           "volume": vol_}, index=ts)
        if n_assets > 1:
            df.insert(0, "symbol", f"S{a}")
        parts.append(df)
    return pd.concat(parts) if n_assets > 1 else parts[0]


SMALL = ["observation.window=4", "env.episode_length=20"]


def make_env(num_envs=4, overrides=(), data=None, **kw):
    cfg = optrader.compose("training", [*SMALL, *overrides])
    return optrader.make_vec(cfg, num_envs=num_envs, data=bars_frame() if data is None else data,
                             **kw)


@pytest.fixture
def frame():
    return bars_frame()
