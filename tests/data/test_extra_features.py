"""Extra data columns as observation features, and off-hours bars flagged at load."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.config import ConfigError

WINDOW, EPISODE = 3, 10


def minute_frame(n=200, symbols=("AAA", "BBB"), start="2024-01-03 14:30", seed=0):
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    parts = []
    for k, s in enumerate(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        open_ = np.r_[100.0, close[:-1]]
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": s, "open": open_,
            "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
            "close": close, "volume": 1000.0 + k,
            "signal": np.sin(np.arange(n) / 7.0) * (k + 1) * 20.0}))  # beyond clip for BBB
    return pd.concat(parts, ignore_index=True)


def make(tmp_path, df, extra=(), overrides=()):
    path = tmp_path / "bars.parquet"
    df.to_parquet(path)
    over = ["data=parquet", f"data.path={path}", f"data.cache.dir={tmp_path / 'cache'}",
            f"observation.window={WINDOW}", f"env.episode_length={EPISODE}", "data.split.use=all",
            f"data.extra_columns=[{','.join(extra)}]", *overrides]
    return optrader.make_vec(optrader.compose("training", over), num_envs=2, parallel=False)


def test_extra_columns_are_observed_per_asset_and_clipped(tmp_path):
    df = minute_frame()
    env = make(tmp_path, df, extra=("signal",),
               overrides=["observation.extra_features=[signal]", "observation.portfolio=false"])
    names = env.observation_names
    assert len(names) == WINDOW * 2 * 2  # window x assets x (log_return, signal)
    assert names[:4] == ["log_return[AAA][t-2]", "signal[AAA][t-2]", "log_return[BBB][t-2]",
                         "signal[BBB][t-2]"]
    obs, _ = env.reset(seed=0, options={"start_bars": np.array([50, 120])})
    for i, start in enumerate((50, 120)):
        for k in range(WINDOW):
            t = start - (WINDOW - 1 - k)
            for sym in ("AAA", "BBB"):
                want = df[df.symbol == sym]["signal"].to_numpy()[t]
                got = obs[i, names.index(f"signal[{sym}][t-{WINDOW - 1 - k}]")]
                assert got == np.float32(np.clip(want, -10.0, 10.0))


def test_unknown_extra_feature_is_an_error_naming_the_columns(tmp_path):
    with pytest.raises(ValueError, match=r"\['nope'\] not in the data's extra columns"):
        make(tmp_path, minute_frame(), extra=("signal",),
             overrides=["observation.extra_features=[nope]"])


def test_extra_features_refused_in_simulation_mode():
    with pytest.raises(ConfigError, match="simulated markets have no extra columns"):
        optrader.make_vec(optrader.compose("simulation", ["observation.extra_features=[x]"]))


def test_off_hours_bars_are_flagged_with_a_session_calendar(tmp_path, caplog):
    # 14:30 UTC on 2024-01-03 is 09:30 in New York; the session closes 390 bars later
    df = minute_frame(n=450)  # 09:30 + 450 min = 17:00 New York: 60 bars after the close
    with caplog.at_level(logging.WARNING, logger="optrader.data.loader"):
        make(tmp_path, df, overrides=["data.calendar.name=us_equities",
                                      "data.quality.min_score=0.5"])
    msgs = [r.getMessage() for r in caplog.records if "outside the calendar" in r.getMessage()]
    assert len(msgs) == 1 and "60 of 450 bars" in msgs[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optrader.data.loader"):
        make(tmp_path, minute_frame(n=300))  # always_open: nothing is off-hours
    assert not [r for r in caplog.records if "outside the calendar" in r.getMessage()]
