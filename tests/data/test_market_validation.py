"""MarketData validates itself however it is built: by hand, with ``dataclasses.replace``, from
arrays, frames, files, the cache or the synthetic generator. Every defect is an error naming the
field, the symbol, the row and the value, before any env exists."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import optrader
from optrader.data import DataError, MarketData, from_arrays

T, A = 40, 2
DAY = 86_400 * 10**9


def clean_arrays(n_bars=T, n_assets=A):
    """(bars float64 (5, T, A), timestamps int64 (T,)) of a valid random walk."""
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (n_bars, n_assets)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.002, close.shape))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    bars = np.ascontiguousarray(np.stack([open_, high, low, close, np.full_like(close, 5.0)]))
    return bars, np.arange(n_bars, dtype=np.int64) * DAY


def by_hand(**changes):
    bars, ts = clean_arrays()
    kwargs = dict(bars=bars, timestamps=ts, symbols=("AAA", "BBB"))
    kwargs.update(changes)
    return MarketData(**kwargs)


@pytest.fixture(scope="module")
def small_cfg():
    return optrader.compose(overrides=["observation.window=4", "env.episode_length=8"])


# ---------------------------------------------------------------------------------------------
# The two examples, through make_vec


def test_nan_bar_in_a_hand_built_market_is_rejected_before_make_vec(small_cfg):
    bars, ts = clean_arrays()
    bars[3, 7, 1] = np.nan
    with pytest.raises(DataError, match=r"MarketData: column 'close' must be finite, got NaN or "
                                        r"inf at row 7 \(BBB\) = nan$"):
        MarketData(bars, ts, ("AAA", "BBB"))


def test_more_timestamps_than_bars_is_rejected(small_cfg):
    good = by_hand()
    longer = np.arange(6 * T, dtype=np.int64) * DAY
    with pytest.raises(DataError, match=rf"^MarketData: {6 * T} timestamps for {T} bars$"):
        dataclasses.replace(good, timestamps=longer)
    with pytest.raises(DataError, match=rf"{T // 2} timestamps for {T} bars"):
        by_hand(timestamps=longer[: T // 2])


def test_a_valid_hand_built_market_runs_in_make_vec(small_cfg):
    bars, ts = clean_arrays()
    market = MarketData(bars, ts, ["AAA", "BBB"], periods_per_year=365)
    assert market.symbols == ("AAA", "BBB")  # a list becomes a tuple
    env = optrader.make_vec(small_cfg, num_envs=2, data=market)
    try:
        env.reset(seed=0)
        env.step(np.zeros((2, 2)))
        assert env.market is market
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# Values: field, symbol, row and value in every message


def put(k, t, a, value):
    bars, ts = clean_arrays()
    bars[k, t, a] = value
    return bars, ts


@pytest.mark.parametrize(("k", "value", "pattern"), [
    (0, np.inf, r"column 'open' must be finite, got NaN or inf at row 5 \(BBB\) = inf$"),
    (1, -np.inf, r"column 'high' must be finite, got NaN or inf at row 5 \(BBB\) = -inf$"),
    (4, np.nan, r"column 'volume' must be finite, got NaN or inf at row 5 \(BBB\) = nan$"),
    (4, np.inf, r"column 'volume' must be finite, got NaN or inf at row 5 \(BBB\) = inf$"),
    (2, 0.0, r"column 'low' must be > 0, got non-positive prices at row 5 \(BBB\) = 0\.0$"),
    (3, -2.5, r"column 'close' must be > 0, got non-positive prices at row 5 \(BBB\) = -2\.5$"),
    (4, -1.0, r"column 'volume' must be >= 0, got negative at row 5 \(BBB\) = -1\.0$"),
])
def test_bad_value_names_field_symbol_row_and_value(k, value, pattern):
    bars, ts = put(k, 5, 1, value)
    with pytest.raises(DataError, match=pattern):
        MarketData(bars, ts, ("AAA", "BBB"))


@pytest.mark.parametrize(("name", "k", "factor"), [
    ("open", 0, 1.5), ("open", 0, 0.5), ("close", 3, 1.5), ("close", 3, 0.5)])
def test_open_close_outside_the_range_show_the_range(name, k, factor):
    bars, ts = clean_arrays()
    bars[k, 9, 0] *= factor
    got, low, high = (repr(float(bars[j, 9, 0])) for j in (k, 2, 1))
    with pytest.raises(DataError, match=re.escape(
            f"column {name!r} outside [low, high] at row 9 (AAA): {got} not in [{low}, {high}]")):
        MarketData(bars, ts, ("AAA", "BBB"))


def test_high_below_low_shows_both():
    bars, ts = clean_arrays()
    bars[1, 4, 1], bars[2, 4, 1] = 90.0, 110.0
    bars[0, 4, 1] = bars[3, 4, 1] = 100.0
    with pytest.raises(DataError, match=r"high < low at row 4 \(BBB\): high 90\.0 < low 110\.0; "
                                        r"expected low <= high$"):
        MarketData(bars, ts, ("AAA", "BBB"))


@pytest.mark.parametrize(("swap", "kind"), [(False, "duplicate timestamps"),
                                            (True, "timestamps not sorted ascending")])
def test_timestamps_must_increase_strictly(swap, kind):
    bars, ts = clean_arrays()
    if swap:
        ts[[11, 12]] = ts[[12, 11]]
    else:
        ts[12] = ts[11]
    with pytest.raises(DataError, match=rf"{kind} at rows \[12\]; expected strictly increasing, "
                                        rf"got 1970-01-1\dT00:00:00\+00:00 at row 12 after "):
        MarketData(bars, ts, ("AAA", "BBB"))


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, layout


@pytest.mark.parametrize(("change", "error", "pattern"), [
    (dict(bars=np.ones((4, T, A))), DataError, r"bars has shape \(4, 40, 2\), expected \(5, T, A\)"),
    (dict(bars=np.ones((5, T))), DataError, r"bars has shape \(5, 40\), expected \(5, T, A\)"),
    (dict(bars=np.ones((5, 0, A))), DataError, r"no rows"),
    (dict(symbols=("AAA",)), DataError, r"1 symbols for 2 assets"),
    (dict(symbols=("AAA", "AAA")), DataError, r"symbols \['AAA'\] appear more than once"),
    (dict(symbols=("AAA", 7)), TypeError, r"expected str names, got 7 \(int\)"),
    (dict(symbols="AB"), TypeError, r"symbols: expected a tuple of 2 str, got str"),
    (dict(periods_per_year=0.0), DataError, r"periods_per_year must be finite and > 0, got 0\.0"),
    (dict(periods_per_year=float("nan")), DataError, r"periods_per_year must be finite"),
    (dict(periods_per_year="252"), TypeError, r"periods_per_year: expected a number, got str"),
    (dict(timestamps=np.arange(T, dtype=np.float64)), TypeError,
     r"MarketData\.timestamps: expected dtype int64, got float64"),
    (dict(timestamps=list(range(T))), TypeError,
     r"MarketData\.timestamps: expected a numpy array of int64, got list"),
    (dict(spread=np.zeros((T, A + 1))), DataError,
     r"column 'spread' has shape \(40, 3\), expected \(40, 2\)"),
    (dict(spread=np.full((T, A), -1.0)), DataError, r"'spread' must be >= 0 bps.*row 0 \(AAA\)"),
    (dict(spread=np.full((T, A), np.inf)), DataError, r"'spread' must be >= 0 bps"),
    (dict(tradable=np.ones((T - 1, A), dtype=bool)), DataError,
     r"tradable mask has shape \(39, 2\), expected \(40, 2\)"),
    (dict(tradable=np.ones((T, A))), TypeError, r"MarketData\.tradable: expected dtype bool"),
    (dict(day=np.zeros(T + 1, dtype=np.int64)), DataError, r"day ids .* got shape \(41,\)"),
    (dict(day=np.r_[np.zeros(20), np.ones(10), np.zeros(10)].astype(np.int64)), DataError,
     r"day ids must be non-decreasing.*got 0 at row 30 after 1"),
    (dict(extra={"funding": np.zeros((T, 1))}), DataError,
     r"extra column 'funding' has shape \(40, 1\), expected \(40, 2\)"),
    (dict(extra={"funding": np.zeros((T, A), dtype=np.float32)}), TypeError,
     r"MarketData\.extra\['funding'\]: expected dtype float64, got float32"),
    (dict(extra=[1, 2]), TypeError, r"MarketData\.extra: expected a dict"),
])
def test_field_checks(change, error, pattern):
    with pytest.raises(error, match=pattern):
        by_hand(**change)


def test_dtype_and_layout_the_kernels_need():
    bars, ts = clean_arrays()
    with pytest.raises(TypeError, match=r"MarketData\.bars: expected dtype float64, got float32 "
                                        r"\(optrader\.data\.from_arrays converts\)"):
        MarketData(bars.astype(np.float32), ts, ("AAA", "BBB"))
    fortran = np.asfortranarray(bars)
    with pytest.raises(DataError, match=r"MarketData\.bars: expected a C-contiguous array"):
        MarketData(fortran, ts, ("AAA", "BBB"))
    with pytest.raises(DataError, match=r"MarketData\.timestamps: expected a C-contiguous"):
        MarketData(bars, (np.arange(2 * T, dtype=np.int64) * DAY)[::2], ("AAA", "BBB"))


def test_replace_is_validated_too():
    good = by_hand()
    bad = np.array(good.bars)
    bad[2, 0, 0] = bad[1, 0, 0] * 2  # low above high
    with pytest.raises(DataError, match=r"high < low at row 0 \(AAA\)"):
        dataclasses.replace(good, bars=bad)


def test_hand_built_arrays_are_exposed_read_only_without_touching_the_caller():
    bars, ts = clean_arrays()
    tradable = np.ones((T, A), dtype=bool)
    market = MarketData(bars, ts, ("AAA", "BBB"), tradable=tradable,
                        extra={"f": np.zeros((T, A))})
    for x in (market.bars, market.timestamps, market.tradable, market.extra["f"]):
        assert not x.flags.writeable
    assert bars.flags.writeable and ts.flags.writeable and tradable.flags.writeable
    assert np.shares_memory(market.bars, bars)  # a view, not a copy
    with pytest.raises(ValueError, match="read-only"):
        market.bars[0, 0, 0] = 1.0


def test_from_arrays_reports_through_the_same_gate():
    bars, ts = put(2, 3, 0, np.nan)
    with pytest.raises(DataError, match=r"^mine: column 'low' must be finite, got NaN or inf at "
                                        r"row 3 \(X\) = nan$"):
        from_arrays(*bars[:, :, :1], timestamps=ts, symbols=["X"], source="mine")
    with pytest.raises(DataError, match=r"^mine: 3 timestamps for 40 bars$"):
        from_arrays(*bars, timestamps=ts[:3], source="mine")


def test_synthetic_market_is_validated(monkeypatch):
    from optrader.data import synthetic, synthetic_market

    real = synthetic.generate_synthetic

    def broken(**kw):
        out = real(**kw)
        out["high"] = out["high"].copy()
        out["high"][2, 0] = np.nan
        return out

    monkeypatch.setattr(synthetic, "generate_synthetic", broken)
    spec = optrader.load_spec(optrader.compose(overrides=["data.n_bars=50"]))
    with pytest.raises(DataError, match=r"synthetic market: column 'high' must be finite, got "
                                        r"NaN or inf at row 2 \(SYN0\) = nan"):
        synthetic_market(spec.data)
