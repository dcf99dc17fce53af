"""One loading path for files: ``make_vec(data=PATH)``, ``data=csv|parquet data.path=PATH`` and
the dataframe source's ``data.path`` all go through ``optrader.data.loader.load_files`` (quality
gate, cleaning, alignment, calendar, cache) and split the same way: identical MarketData, splits
and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.config import FileDataConfig
from optrader.data import DataError
from optrader.data.loader import file_config

SMALL = ["observation.window=4", "env.episode_length=8"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRADER_CACHE_DIR", str(tmp_path / "cache"))


def frame(n=300, seed=0, symbols=("AAA", "BBB")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.bdate_range("2021-01-04", periods=n, tz="UTC")
    parts = []
    for k, s in enumerate(symbols):
        close = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        open_ = np.r_[close[0], close[:-1]]
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": s, "open": open_.round(6),
            "high": np.ceil(np.maximum(open_, close) * 1.002 * 1e6) / 1e6,
            "low": np.floor(np.minimum(open_, close) * 0.998 * 1e6) / 1e6,
            "close": close.round(6), "volume": rng.integers(100, 1000, n).astype(float)}))
    return pd.concat(parts, ignore_index=True)


def write(df, path):
    if str(path).endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.assign(timestamp=df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
            path, index=False)
    return path


def env_of(overrides=(), data=None):
    return optrader.make_vec(optrader.compose("training", [*SMALL, *overrides]), num_envs=2,
                             data=data)


def outcome(overrides=(), data=None):
    """(MarketData arrays, split_range, start_range) of an env, or the error it raised."""
    try:
        env = env_of(overrides, data)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)
    try:
        m = env.market
        return (m.bars.copy(), m.timestamps.copy(), m.symbols, m.day.copy(),
                None if m.tradable is None else m.tradable.copy(), m.periods_per_year,
                env.split_range, env.start_range, env.config.data)
    finally:
        env.close()


def assert_same(a, b):
    assert type(a) is type(b) and len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


@pytest.mark.parametrize(("source", "suffix"), [("csv", ".csv"), ("parquet", ".parquet")])
def test_a_path_loads_and_splits_as_the_file_source(tmp_path, source, suffix):
    path = write(frame(), tmp_path / f"bars{suffix}")
    by_config = outcome([f"data={source}", f"data.path={path}"])
    for data in (str(path), path):
        by_argument = outcome(data=data)
        assert_same(by_argument, by_config)
    # the file sources' split (0.7 / 0.15, episodes in train), not the synthetic default's
    assert by_config[6] == (0, 210)


def test_a_path_keeps_the_configured_file_settings(tmp_path):
    path = write(frame(), tmp_path / "bars.parquet")
    other = write(frame(seed=1), tmp_path / "other.parquet")
    settings = ["data=parquet", "data.split.train=0.5", "data.split.validation=0.25",
                "data.calendar.name=us_equities"]
    by_config = outcome([*settings, f"data.path={path}"])
    by_argument = outcome([*settings, f"data.path={other}"], data=str(path))  # data= wins
    assert_same(by_argument, by_config)
    assert by_config[6] == (0, 150)


def test_the_dataframe_source_path_goes_through_the_file_loader(tmp_path):
    df = frame()
    df.loc[[5, 17], "close"] = np.nan  # two defective rows: dropped with a warning
    path = write(df, tmp_path / "bars.csv")
    m = outcome(["data=dataframe", f"data.path={path}"])
    assert m[0].shape[1] == 300 - 2  # the loader's cleaning, not from_dataframe's rejection
    assert isinstance(m[-1], FileDataConfig) and m[-1].split.train == 1.0  # its own split


BAD = {
    "defective_rows": lambda df: df.assign(low=np.where(np.arange(len(df)) % 3 == 0, -1.0,
                                                        df["low"])),
    "missing_column": lambda df: df.drop(columns="volume"),
    "no_rows": lambda df: df.iloc[:0],
    "duplicates": lambda df: pd.concat([df, df]),
}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("bad", sorted(BAD))
def test_the_same_bad_file_gives_the_same_error(tmp_path, suffix, bad):
    path = write(BAD[bad](frame()), tmp_path / f"bad{suffix}")
    source = suffix[1:]
    by_config = outcome([f"data={source}", f"data.path={path}"])
    by_argument = outcome(data=str(path))
    by_dataframe_source = outcome(["data=dataframe", f"data.path={path}"])
    assert by_config[0] is DataError or issubclass(by_config[0], DataError), by_config
    assert by_argument == by_config == by_dataframe_source


def test_a_missing_path_is_the_same_error_everywhere(tmp_path):
    path = tmp_path / "nowhere" / "bars.csv"
    errors = {outcome(["data=csv", f"data.path={path}"]), outcome(data=str(path)),
              outcome(["data=dataframe", f"data.path={path}"])}
    assert len(errors) == 1
    kind, message = errors.pop()
    assert issubclass(kind, DataError) and issubclass(kind, FileNotFoundError)
    assert str(path) in message and "no such file or directory" in message


@pytest.mark.parametrize("name", ["nothing-*.csv", "nothing-*", "empty_dir", "absent_dir/x"])
def test_a_path_that_names_nothing_is_the_same_error_everywhere(tmp_path, name):
    (tmp_path / "empty_dir").mkdir()
    path = tmp_path / name
    errors = {outcome(["data=csv", f"data.path={path}"]), outcome(data=str(path))}
    assert len(errors) == 1, errors
    kind, message = errors.pop()
    assert issubclass(kind, DataError) and str(path) in message


def test_a_directory_of_files_loads_by_its_files_format(tmp_path):
    df = frame()
    folder = tmp_path / "bars"
    folder.mkdir()
    for s, part in df.groupby("symbol"):
        part.drop(columns="symbol").to_parquet(folder / f"{s}.parquet")
    assert_same(outcome(data=str(folder)), outcome(["data=parquet", f"data.path={folder}"]))


@pytest.mark.parametrize("name", ["bars.json", "bars.txt", "bars"])
def test_a_path_of_unknown_type_is_refused(tmp_path, name):
    path = tmp_path / name
    write(frame(), path)
    with pytest.raises(DataError, match=r"unsupported file type .*expected \.parquet or \.csv"):
        file_config(optrader.load_spec(optrader.compose("training")).data, str(path))
