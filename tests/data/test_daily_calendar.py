"""Missing bars are counted only against the sessions a feed really has: ``data.calendar.name=auto``
(the default) infers 24/7, weekday-only and exchange-hours feeds and counts daily bars per trading
date; every calendar hint a failed load prints is a setting that makes the same load pass; calendar
names are checked (unknown: ValueError listing the known ones; an exchange code without
exchange_calendars: install hint)."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.data import DataError, load_market
from optrader.data.__main__ import main as cli_main
from optrader.data.calendar import MissingCalendarPackage
from optrader.data.sessions import expected_bars


def ohlcv(index: pd.DatetimeIndex, seed: int = 0, symbol: str = "AAA") -> pd.DataFrame:
    """A clean long frame on ``index`` (prices rounded so that CSV text round-trips them)."""
    rng = np.random.default_rng(seed)
    n = len(index)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"timestamp": index, "symbol": symbol, "open": open_.round(6),
                         "high": np.ceil(np.maximum(open_, close) * 1.001 * 1e6) / 1e6,
                         "low": np.floor(np.minimum(open_, close) * 0.999 * 1e6) / 1e6,
                         "close": close.round(6),
                         "volume": rng.integers(1_000, 10_000, n).astype(np.float64)})


def sessions(days, tz: str, *ranges, freq: str) -> pd.DatetimeIndex:
    """Bars every ``freq`` inside local ``(start, last)`` offsets of each of ``days`` in ``tz``."""
    parts = [pd.date_range(d + pd.Timedelta(a), d + pd.Timedelta(b), freq=freq)
             for d in days for a, b in ranges]
    return pd.DatetimeIndex(np.concatenate([p.as_unit("ns").asi8 for p in parts])
                            .view("M8[ns]")).tz_localize(tz).tz_convert("UTC")


BDAYS = pd.bdate_range("2023-01-02", "2023-03-31")
FEEDS = {
    "business_days": lambda: pd.bdate_range("2020-01-01", periods=300, tz="UTC"),
    # across the switch to daylight saving (2023-03-12): the session moves an hour in UTC
    "ny_minutes": lambda: sessions(BDAYS[(BDAYS >= "2023-03-01") & (BDAYS < "2023-03-22")],
                                   "America/New_York", ("9h30min", "15h59min"), freq="1min"),
    "fx_24_5": lambda: _fx_hours(),
    "crypto_24_7": lambda: pd.date_range("2023-01-01", periods=3000, freq="15min", tz="UTC"),
}


def _fx_hours() -> pd.DatetimeIndex:
    h = pd.date_range("2023-01-01", "2023-04-01", freq="h", tz="UTC", inclusive="left")
    wd, hr = h.day_of_week, h.hour
    return h[~((wd == 5) | ((wd == 6) & (hr < 22)) | ((wd == 4) & (hr >= 22)))]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRADER_CACHE_DIR", str(tmp_path / "cache"))


def write(df: pd.DataFrame, path) -> str:
    df.assign(timestamp=df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(path,
                                                                                  index=False)
    return str(path)


def load(path, *overrides):
    cfg = optrader.compose("training", ["data=csv", f"data.path={path}",
                                        "data.cache.enabled=false", *overrides])
    return load_market(optrader.load_spec(cfg).data)


def hint_overrides(message: str) -> list[str]:
    """The ``key=value`` settings a hint line proposes."""
    hints = [line for line in message.splitlines() if line.startswith("hint:")]
    return [m for line in hints for m in re.findall(r"(data\.[\w.]+=\S+)", line)]


# ---------------------------------------------------------------------------------------------
# daily bars on weekdays load by default


def test_business_day_daily_csv_loads_by_default(tmp_path):
    df = ohlcv(FEEDS["business_days"]())
    market = load(write(df, tmp_path / "daily.csv"))
    assert market.quality.score == 1.0
    assert market.n_bars == 300
    assert "daily bars, Mon-Fri (inferred" in market.quality.expected_from
    # so does make_vec(data=PATH), the same load
    env = optrader.make_vec(optrader.compose("training", ["observation.window=4",
                                                          "env.episode_length=8"]),
                            num_envs=1, data=str(tmp_path / "daily.csv"))
    try:
        np.testing.assert_array_equal(env.market.bars, market.bars)
    finally:
        env.close()


def test_business_day_daily_bars_under_us_equities_pass(tmp_path):
    # the calendar the old hint proposed: daily bars count per trading date of the calendar
    df = ohlcv(FEEDS["business_days"]())
    market = load(write(df, tmp_path / "daily.csv"), "data.calendar.name=us_equities")
    assert market.quality.score == 1.0


def test_daily_gaps_on_trading_days_still_count(tmp_path):
    df = ohlcv(FEEDS["business_days"]())
    df = df.drop(index=range(100, 120)).reset_index(drop=True)  # four weeks of weekdays gone
    with pytest.raises(DataError, match=r"20 missing bars") as exc:
        load(write(df, tmp_path / "gappy.csv"))
    assert "hint" not in str(exc.value)  # no calendar explains a gap on trading days


# ---------------------------------------------------------------------------------------------
# inferred session patterns


@pytest.mark.parametrize(("feed", "phrase"), [
    ("business_days", "daily bars, Mon-Fri (inferred, dates in UTC)"),
    ("ny_minutes", "1min bars, Mon-Fri 09:30-16:00 America/New_York (inferred)"),
    ("fx_24_5", "1h bars, Mon-Fri 00:00-24:00"),
    ("crypto_24_7", "15min bars, every day 00:00-24:00 UTC (inferred)"),
])
def test_session_patterns_are_inferred(feed, phrase):
    idx = FEEDS[feed]()
    e = expected_bars(idx.as_unit("ns").asi8, None)
    assert phrase in e.describe()
    # FX's Friday-evening hours are the only bars a Mon-Fri day calendar expects but never sees
    assert e.missing <= (2 * 13 if feed == "fx_24_5" else 0)


def test_a_lunch_break_splits_the_inferred_session():
    idx = sessions(BDAYS[:10], "Asia/Tokyo", ("9h", "11h"), ("12h30min", "14h30min"),
                   freq="30min")
    e = expected_bars(idx.as_unit("ns").asi8, None)
    assert e.missing == 0
    assert len(e.calendar.sessions) == 2


def test_daily_bars_stamped_at_the_new_york_close_are_dated_in_new_york():
    idx = pd.DatetimeIndex([d + pd.Timedelta("16h") for d in pd.bdate_range("2023-01-02",
                                                                             "2023-12-29")])
    e = expected_bars(idx.tz_localize("America/New_York").as_unit("ns").asi8, None)
    assert e.missing == 0 and e.date_zone == "America/New_York"
    assert e.calendar.weekdays == (0, 1, 2, 3, 4)


# ---------------------------------------------------------------------------------------------
# every hint works


CALENDARS = ("always_open", "us_equities", "auto")


@pytest.mark.parametrize("feed", sorted(FEEDS))
@pytest.mark.parametrize("calendar", CALENDARS)
def test_every_printed_hint_makes_the_load_pass(tmp_path, feed, calendar):
    path = write(ohlcv(FEEDS[feed]()), tmp_path / f"{feed}.csv")
    try:
        load(path, f"data.calendar.name={calendar}")
        return
    except DataError as exc:
        message = str(exc)
    fix = hint_overrides(message)
    # feeds with closed hours or days fail under always_open, and the hint names the fix
    assert fix or calendar != "always_open" or feed == "crypto_24_7", message
    if fix:
        assert load(path, *fix).quality.score >= 0.95


@pytest.mark.parametrize("feed", ["business_days", "ny_minutes", "fx_24_5"])
def test_always_open_on_feeds_with_closed_hours_prints_a_working_hint(tmp_path, feed):
    path = write(ohlcv(FEEDS[feed]()), tmp_path / f"{feed}.csv")
    with pytest.raises(DataError) as exc:
        load(path, "data.calendar.name=always_open")
    fix = hint_overrides(str(exc.value))
    assert fix == ["data.calendar.name=auto"]
    assert load(path, *fix).quality.score >= 0.95


def test_the_validate_cli_hint_works(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    path = write(ohlcv(FEEDS["business_days"]()), tmp_path / "daily.csv")
    assert cli_main(["validate", path]) == 0  # --calendar auto is the default
    assert cli_main(["validate", path, "--calendar", "always_open"]) == 1
    out = capsys.readouterr().out
    flags = re.search(r"hint: .*pass (--calendar \S+)", out).group(1).split()
    assert cli_main(["validate", path, *flags]) == 0


# ---------------------------------------------------------------------------------------------
# calendar names


@pytest.mark.parametrize("hide_package", [False, True])
@pytest.mark.parametrize("name", ["nyse", "us-equities", "weekdays"])
def test_an_unknown_calendar_name_is_a_value_error_listing_the_known_names(
        tmp_path, monkeypatch, hide_package, name):
    if hide_package:
        monkeypatch.setitem(sys.modules, "exchange_calendars", None)
    path = write(ohlcv(FEEDS["business_days"]()), tmp_path / "daily.csv")
    with pytest.raises(ValueError, match=rf"unknown calendar name '{name}'( \(did you mean "
                                         r"[^)]+\))?; expected auto, always_open, us_equities, "
                                         r"custom or an exchange code") as exc:
        load(path, f"data.calendar.name={name}")
    assert not isinstance(exc.value, ImportError)


def test_an_exchange_code_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "exchange_calendars", None)
    path = write(ohlcv(FEEDS["business_days"]()), tmp_path / "daily.csv")
    with pytest.raises(MissingCalendarPackage, match=r"pip install optrader\[calendars\]"):
        load(path, "data.calendar.name=XNYS")
    assert cli_main(["validate", path, "--calendar", "XNYS"]) == 2


def test_exchange_calendar_holidays_are_not_missing_bars(tmp_path):
    xcals = pytest.importorskip("exchange_calendars")
    sessions_2023 = xcals.get_calendar("XNYS", start="2023-01-01",
                                       end="2023-12-31").sessions
    idx = pd.DatetimeIndex(sessions_2023).tz_localize(None).tz_localize("UTC")
    path = write(ohlcv(idx), tmp_path / "nyse_daily.csv")
    n_holidays = len(pd.bdate_range(idx[0], idx[-1])) - len(idx)  # weekdays without a session
    assert n_holidays >= 9
    # the built-in preset knows no holidays: each one is a missing bar
    market = load(path, "data.calendar.name=us_equities")
    assert market.quality.per_symbol["AAA"]["missing_bars"] == n_holidays
    market = load(path, "data.calendar.name=XNYS")
    assert market.quality.per_symbol["AAA"]["missing_bars"] == 0
    assert market.quality.score == 1.0
    # intraday too: no bars on 2023-07-04 and none expected
    days = pd.DatetimeIndex(sessions_2023).tz_localize(None)
    days = days[(days >= "2023-06-26") & (days <= "2023-07-14")]
    minutes = sessions(days, "America/New_York", ("9h30min", "15h59min"), freq="5min")
    path = write(ohlcv(minutes), tmp_path / "nyse_5min.csv")
    assert load(path, "data.calendar.name=XNYS").quality.per_symbol["AAA"]["missing_bars"] == 0
    with pytest.raises(DataError, match=r"78 missing bars"):  # the 4th of July's 5-minute bars
        load(path, "data.calendar.name=us_equities")
