"""Periods per year inferred from bar timestamps (optrader.annualisation), synthetic timestamps
that agree with their periods_per_year, and the annualisation the entry points state."""

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.annualisation import annualisation_for, infer_periods_per_year
from optrader.config import load_spec
from optrader.data.synthetic import synthetic_timestamps


def ns(index) -> np.ndarray:
    return pd.DatetimeIndex(index).as_unit("ns").asi8


def fx_hours(weeks=6):
    """Hourly FX: Sunday 22:00 to Friday 22:00 UTC."""
    t = pd.date_range("2024-01-07 22:00", periods=24 * 7 * weeks, freq="h", tz="UTC")
    wd, h = t.day_of_week, t.hour
    return t[~((wd == 5) | ((wd == 6) & (h < 22)) | ((wd == 4) & (h >= 22)))]


def sessions(freq, days=30, tz="America/New_York"):
    parts = [pd.date_range(f"{d.date()} 09:30", f"{d.date()} 15:59", freq=freq, tz=tz)
             for d in pd.bdate_range("2024-01-02", periods=days)]
    return np.concatenate([ns(p) for p in parts])


@pytest.mark.parametrize(("stamps", "ppy"), [
    (ns(pd.date_range("2024-01-01", periods=2000, freq="h", tz="UTC")), 365.25 * 24),  # crypto
    (ns(pd.date_range("2024-01-01", periods=500, freq="4h", tz="UTC")), 365.25 * 6),
    (ns(fx_hours()), 260 * 24),  # FX
    (sessions("1min"), 252 * 390),  # intraday equities
    (sessions("5min"), 252 * 78),
    (sessions("1h"), 252 * 7),  # 09:30 .. 15:30
    (ns(pd.bdate_range("2010-01-04", periods=800, tz="UTC")), 252),  # daily weekdays
    (ns(pd.date_range("2010-01-04", periods=800, freq="D", tz="UTC")), 365.25),  # daily 24/7
    (ns(pd.date_range("2010-01-08", periods=200, freq="W-FRI", tz="UTC")), 52),
    (ns(pd.date_range("2010-01-31", periods=100, freq="ME", tz="UTC")), 12),
    (ns(pd.date_range("2010-03-31", periods=40, freq="QE", tz="UTC")), 4),
    (ns(pd.date_range("2010-01-04", periods=300, freq="2D", tz="UTC")), 365.25 / 2),
])
def test_inferred_from_spacing_and_calendar(stamps, ppy):
    got = infer_periods_per_year(stamps)
    assert got.source == "inferred" and got.periods_per_year == pytest.approx(ppy)
    assert got.basis  # says from what
    # order and duplicates do not matter
    shuffled = np.random.default_rng(0).permutation(np.concatenate([stamps, stamps[:5]]))
    assert infer_periods_per_year(shuffled).periods_per_year == got.periods_per_year


def test_calendar_name_fixes_the_kind_of_market():
    few = ns(fx_hours(weeks=1))[:30]  # 30 hours: no weekend seen
    assert infer_periods_per_year(few, "fx").periods_per_year == 260 * 24
    assert infer_periods_per_year(few, "always_open").periods_per_year == 365.25 * 24
    daily = ns(pd.date_range("2024-01-01", periods=400, freq="D", tz="UTC"))
    assert infer_periods_per_year(daily, "XNYS").periods_per_year == 252


@pytest.mark.parametrize(("stamps", "error", "match"), [
    (np.array([5], np.int64), ValueError, "at least 2 distinct"),
    (np.array([5, 5], np.int64), ValueError, "at least 2 distinct"),
    (np.array([1.0, 2.0]), TypeError, "int64 UTC nanoseconds"),
])
def test_bad_timestamps_are_named(stamps, error, match):
    with pytest.raises(error, match=match):
        infer_periods_per_year(stamps)


@pytest.mark.parametrize("ppy", [252.0, 365.0, 365.25, 52.0, 12.0, 252.0 * 390, 252.0 * 7,
                                 260.0 * 24, 365.25 * 24, 1000.0])
def test_synthetic_timestamps_agree_with_their_periods_per_year(ppy):
    ts = synthetic_timestamps("2000-01-03", 3000, "auto", ppy)
    assert ts.dtype == np.int64 and ts.shape == (3000,) and (np.diff(ts) > 0).all()
    assert infer_periods_per_year(ts).periods_per_year == pytest.approx(ppy, rel=0.01)


def test_synthetic_default_market_is_business_days():
    env = optrader.make_vec(optrader.compose("training", ["data.n_bars=600"]), num_envs=1)
    ts = env.market.timestamps
    env.close()
    assert (pd.DatetimeIndex(ts).day_of_week < 5).all()
    years = (ts[-1] - ts[0]) / (365.25 * 86_400e9)
    assert (len(ts) - 1) / years == pytest.approx(252, rel=0.05)  # 1.04: no holidays


def test_synthetic_freq_that_contradicts_periods_per_year_is_refused():
    with pytest.raises(ValueError, match="freq: expected bars that make periods_per_year=252"):
        synthetic_timestamps("2000-01-03", 500, "1D", 252.0)
    with pytest.raises(optrader.data.DataError, match="data.freq"):
        optrader.make_vec(optrader.compose("training", ["data.n_bars=600", "data.freq=1h"]),
                          num_envs=1)
    assert synthetic_timestamps("2000-01-03", 500, "1h", 8766.0).shape == (500,)


def test_entry_points_infer_from_the_data_not_252():
    cfg = optrader.compose("training", ["data=dataframe"])
    spec = load_spec(cfg)
    bars = fx_hours()

    class Market:
        timestamps = ns(bars)

    ann = annualisation_for(spec, Market())
    assert ann.source == "inferred" and ann.periods_per_year == 260 * 24
    spec = load_spec(optrader.compose("training", ["data=dataframe",
                                                   "metrics.periods_per_year=1000"]))
    assert annualisation_for(spec, Market()).as_dict() == {
        "periods_per_year": 1000.0, "source": "configured", "basis": "metrics.periods_per_year"}
    synthetic = load_spec(optrader.compose("training", ["data.periods_per_year=365"]))
    assert annualisation_for(synthetic, None).source == "synthetic"


def test_file_data_periods_per_year_is_inferred_for_the_env_and_the_metrics(tmp_path):
    """data.periods_per_year: 0 (the file groups' default) is read off the bars, so the env's
    per-bar conversions (borrow, cash rate, vol targets) use the same year as the metrics."""
    import pandas as pd

    import optrader
    from kernels.enums import CostParam
    from optrader.annualisation import annualisation_for
    from optrader.config import load_spec

    idx = pd.date_range("2024-01-01", periods=24 * 60, freq="h", tz="UTC")
    idx = idx[idx.day_of_week < 5]  # FX: 24 hours on weekdays
    close = 1.1 + 0.001 * np.sin(np.arange(len(idx)) / 9.0)
    frame = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999,
                          "close": close, "volume": 1e6}, index=idx)
    path = tmp_path / "eurusd.csv"
    frame.rename_axis("timestamp").to_csv(path)
    cfg = optrader.compose(env="training", overrides=["execution.borrow_bps_annual=100"])
    for data in (frame, str(path)):
        envs = optrader.make_vec(cfg, num_envs=1, data=data)
        assert envs.market.periods_per_year == 260 * 24
        assert annualisation_for(envs.config, envs.market).periods_per_year == 260 * 24
        assert envs._cost_params[0, CostParam.BORROW_PER_BAR] == 100e-4 / (260 * 24)
    fixed = optrader.compose(env="training", overrides=["data=csv", f"data.path={path}",
                                                         "data.periods_per_year=252"])
    envs = optrader.make_vec(fixed, num_envs=1)
    assert envs.market.periods_per_year == 252
    ann = annualisation_for(load_spec(fixed), envs.market)
    assert (ann.periods_per_year, ann.source) == (252, "configured")
