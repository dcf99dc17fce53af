"""Market data entry points: ``load_market(data_cfg, data)`` -> MarketData.

Sources: ``synthetic`` (the embedded generator), ``dataframe`` (a DataFrame or one file passed
in Python), ``parquet`` / ``csv`` (files read with pyarrow, quality-checked, aligned, resampled,
cached: ``optrader.data.loader``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from optrader.data.market import (
    OHLCV,
    DataError,
    MarketData,
    from_arrays,
    from_dataframe,
    from_path,
)

__all__ = ["OHLCV", "DataError", "MarketData", "from_arrays", "from_dataframe", "from_path",
           "load_market", "synthetic_market"]


def synthetic_market(cfg) -> MarketData:
    """MarketData from a validated ``SyntheticDataConfig``."""
    from optrader.data.synthetic import generate_synthetic, synthetic_timestamps

    bars = generate_synthetic(
        n_bars=cfg.n_bars, n_assets=cfg.n_assets, seed=cfg.seed, drift=cfg.drift,
        volatility=cfg.volatility, correlation=cfg.correlation, ar1=cfg.ar1,
        jump_intensity=cfg.jumps.intensity, jump_mean=cfg.jumps.mean, jump_std=cfg.jumps.std,
        regimes=cfg.regimes.enabled, regime_p_stay=cfg.regimes.p_stay,
        regime_vol_mult=cfg.regimes.vol_mult, regime_drift_mult=cfg.regimes.drift_mult,
        init_price=cfg.init_price, base_volume=cfg.base_volume, intrabar_vol=cfg.intrabar_vol,
        periods_per_year=cfg.periods_per_year)
    try:  # stamps that agree with periods_per_year (freq "auto": business days for 252)
        ns = synthetic_timestamps(cfg.start, cfg.n_bars, cfg.freq, cfg.periods_per_year)
    except ValueError as exc:
        raise DataError(f"data.{exc}") from None  # the message starts with the key
    symbols = [f"SYN{a}" for a in range(cfg.n_assets)]
    return from_arrays(*(bars[c] for c in OHLCV), timestamps=ns,
                       symbols=symbols, periods_per_year=cfg.periods_per_year,
                       source="synthetic market")


def load_market(data_cfg, data=None) -> MarketData:
    """Resolve the ``data`` argument (MarketData, DataFrame, path or None) against the config."""
    if isinstance(data, MarketData):
        return data
    if isinstance(data, pd.DataFrame):  # the synthetic group's periods_per_year is its own
        return from_dataframe(data, None if data_cfg.source == "synthetic"
                              else data_cfg.periods_per_year)
    if data is not None and not isinstance(data, (str, Path)):
        raise TypeError(f"data: expected a pandas DataFrame, a path, MarketData or None, got "
                        f"{type(data).__name__}")
    if data is None and data_cfg.source == "synthetic":
        return synthetic_market(data_cfg)
    from optrader.data.loader import file_config, load_files

    # one path for files: make_vec(data=PATH) loads exactly as data=csv|parquet data.path=PATH
    data_cfg = file_config(data_cfg, data)
    if data_cfg.source == "dataframe":
        raise DataError("data.source=dataframe needs data=<DataFrame> or data.path=<file>")
    return load_files(data_cfg)
