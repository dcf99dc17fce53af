"""The on-disk cache never serves damaged data: every entry carries a manifest of file sizes and
CRC-32s written atomically with it; any mismatch (flipped bytes behind an intact .npy header, a
truncated or shortened array, a missing file, manifest or meta) logs a warning and the entry is
rebuilt from the source files. Expected arrays come from pandas on the frame written."""

from __future__ import annotations

import json
import logging
import zlib

import numpy as np
import pandas as pd
import pytest

import optrader
from optrader.data import MarketData, load_market
from optrader.data import cache as cache_mod
from optrader.data import loader as loader_mod

OHLCV = ["open", "high", "low", "close", "volume"]
SYMBOLS = ("AAA", "BBB")


def frame(n=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-02", periods=n, freq="1min", tz="UTC")
    parts = []
    for k, sym in enumerate(SYMBOLS):
        close = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
        open_ = np.r_[close[0], close[:-1]]
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": sym, "open": open_,
            "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
            "close": close, "volume": rng.integers(1_000, 5_000, n).astype(np.float64)}))
    return pd.concat(parts, ignore_index=True)


def expected(df: pd.DataFrame):
    wide = {c: df.pivot(index="timestamp", columns="symbol", values=c)[list(SYMBOLS)]
            for c in OHLCV}
    ns = pd.DatetimeIndex(wide["close"].index).as_unit("ns").asi8
    return np.stack([wide[c].to_numpy() for c in OHLCV]), ns


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(load(), source frame, cache root, build calls): a parquet source and a private cache."""
    monkeypatch.setenv("OPTRADER_CACHE_DIR", str(tmp_path / "env-cache"))
    df = frame()
    path = tmp_path / "bars.parquet"
    df.to_parquet(path, index=False)
    root = tmp_path / "cache"
    cfg = optrader.compose("training", ["data=parquet", f"data.path={path}",
                                        f"data.cache.dir={root}", "observation.window=4",
                                        "env.episode_length=20"])
    spec = optrader.load_spec(cfg).data
    calls = []
    original = loader_mod.build_market

    def counting(c):
        calls.append(c)
        return original(c)

    monkeypatch.setattr(loader_mod, "build_market", counting)
    return (lambda: load_market(spec)), df, root, calls


def entry_dir(root):
    [entry] = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return entry


def assert_equals_source(market: MarketData, df: pd.DataFrame):
    bars, ns = expected(df)
    np.testing.assert_array_equal(np.asarray(market.bars), bars)
    np.testing.assert_array_equal(np.asarray(market.timestamps), ns)
    assert market.symbols == SYMBOLS


def load_after_damage(setup, damage, caplog):
    """Load once (writes the entry), damage it, load again; returns the second MarketData."""
    load, df, root, calls = setup
    assert_equals_source(load(), df)
    assert len(calls) == 1
    damage(entry_dir(root))
    with caplog.at_level(logging.WARNING, logger="optrader.data.cache"):
        again = load()
    assert len(calls) == 2, "the damaged entry was used instead of rebuilt"
    warnings = [r.getMessage() for r in caplog.records if r.name == "optrader.data.cache"]
    assert len(warnings) == 1 and "is damaged" in warnings[0] and "rebuilding" in warnings[0]
    assert_equals_source(again, df)
    # the rebuilt entry is whole again: the next load is a verified hit
    third = load()
    assert len(calls) == 2 and isinstance(third.bars, np.memmap)
    assert_equals_source(third, df)
    return warnings[0]


def flip(entry, name, where="data"):
    """Invert bytes of ``name`` behind its .npy header (the header stays intact)."""
    path = entry / name
    raw = bytearray(path.read_bytes())
    if name.endswith(".npy"):
        with open(path, "rb") as fh:
            np.lib.format.read_magic(fh)
            np.lib.format.read_array_header_1_0(fh)
            start = fh.tell()
        pos = start + (len(raw) - start) // 2 if where == "data" else len(raw) - 1
    else:
        pos = len(raw) // 2
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", ["bars.npy", "timestamps.npy", "tradable.npy", "day.npy"])
def test_flipped_bytes_behind_an_intact_header_are_rebuilt(setup, caplog, name):
    msg = load_after_damage(setup, lambda e: flip(e, name), caplog)
    assert f"{name} has CRC-32 mismatch in block 0" in msg


def test_last_byte_flipped_is_rebuilt(setup, caplog):
    load_after_damage(setup, lambda e: flip(e, "bars.npy", where="end"), caplog)


def test_edited_meta_with_valid_json_is_rebuilt(setup, caplog):
    def rename_symbol(entry):
        meta = json.loads((entry / "meta.json").read_text())
        meta["symbols"] = ["BBB", "AAA"]  # valid JSON, same size, wrong assets
        (entry / "meta.json").write_text(json.dumps(meta, default=str))

    assert "meta.json has CRC-32 mismatch" in load_after_damage(setup, rename_symbol, caplog)


def test_truncated_array_is_rebuilt(setup, caplog):
    def truncate(entry):
        raw = (entry / "bars.npy").read_bytes()
        (entry / "bars.npy").write_bytes(raw[: len(raw) - 8 * 7])

    assert "bars.npy has" in load_after_damage(setup, truncate, caplog)


def test_shortened_array_with_a_valid_header_is_rebuilt(setup, caplog):
    def shorten(entry):
        ts = np.load(entry / "timestamps.npy")
        np.save(entry / "timestamps.npy", ts[:-5])  # a well-formed, shorter .npy

    assert "timestamps.npy has" in load_after_damage(setup, shorten, caplog)


def test_shortened_array_listed_in_the_manifest_still_fails_validation(setup, caplog):
    """A consistent manifest over inconsistent arrays (a writer bug): MarketData's own checks
    catch the mismatched lengths and the entry is rebuilt, not used."""

    def shorten_and_relist(entry):
        ts = np.load(entry / "timestamps.npy")
        np.save(entry / "timestamps.npy", ts[:-5])
        manifest = json.loads((entry / cache_mod.MANIFEST).read_text())
        size, crc = cache_mod.file_digest(entry / "timestamps.npy")
        manifest["files"]["timestamps.npy"] = {"size": size, "crc32": crc}
        manifest["check"] = cache_mod._listing_crc(manifest["files"])
        (entry / cache_mod.MANIFEST).write_text(json.dumps(manifest))

    msg = load_after_damage(setup, shorten_and_relist, caplog)
    assert "timestamps for" in msg


@pytest.mark.parametrize("damage", ["delete", "empty", "bad_json", "edited_crc", "other_format"])
def test_missing_or_damaged_manifest_is_rebuilt(setup, caplog, damage):
    def hurt(entry):
        path = entry / cache_mod.MANIFEST
        if damage == "delete":
            path.unlink()
        elif damage == "empty":
            path.write_text("")
        elif damage == "bad_json":
            path.write_text("{not json")
        else:
            manifest = json.loads(path.read_text())
            if damage == "edited_crc":
                manifest["files"]["bars.npy"]["crc32"] = ["00000000"]  # listing check fails
            else:
                manifest["format"] = cache_mod.CACHE_FORMAT + 1
            path.write_text(json.dumps(manifest))

    msg = load_after_damage(setup, hurt, caplog)
    assert cache_mod.MANIFEST in msg


@pytest.mark.parametrize("name", ["bars.npy", "day.npy", "meta.json"])
def test_deleted_file_is_rebuilt(setup, caplog, name):
    msg = load_after_damage(setup, lambda e: (e / name).unlink(), caplog)
    assert name in msg


def test_manifest_lists_every_file_with_size_and_crc(setup):
    load, df, root, calls = setup
    load()
    entry = entry_dir(root)
    manifest = json.loads((entry / cache_mod.MANIFEST).read_text())
    on_disk = {p.name for p in entry.iterdir()} - {cache_mod.MANIFEST}
    assert set(manifest["files"]) == on_disk
    for name, want in manifest["files"].items():
        raw = (entry / name).read_bytes()
        assert want["size"] == len(raw)
        block = cache_mod._BLOCK
        assert want["crc32"] == [f"{zlib.crc32(raw[i:i + block]):08x}"
                                 for i in range(0, len(raw), block)]


def test_interrupted_write_leaves_no_entry(setup, monkeypatch, caplog):
    """A write that fails half way (disk full, crash) never becomes visible: the next load is a
    plain miss, not a damaged hit."""
    load, df, root, calls = setup

    def fail(path, pool=None):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "file_digest", fail)
    assert_equals_source(load(), df)
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]
    assert not list(root.iterdir())  # the temporary directory was removed too
    caplog.clear()  # only what the lookup itself says (earlier loads may log at INFO)
    with caplog.at_level(logging.WARNING, logger="optrader.data.cache"):
        assert cache_mod.load_entry(root, "0" * 32) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_temporary_directory_is_never_read(setup, monkeypatch):
    """Files are written under a dot-directory and renamed into place whole: a reader looking
    up the key before the rename finds nothing."""
    load, df, root, calls = setup
    seen = []
    original = cache_mod.file_digest

    def spy(path, pool=None):
        seen.append(path.parent)
        key_dirs = [p for p in root.iterdir() if not p.name.startswith(".")]
        assert key_dirs == [], "the entry became visible before it was complete"
        return original(path, pool)

    monkeypatch.setattr(cache_mod, "file_digest", spy)
    load()
    monkeypatch.setattr(cache_mod, "file_digest", original)
    assert seen and all(p.name.startswith(".") for p in seen)
    assert (entry_dir(root) / cache_mod.MANIFEST).is_file()


def test_large_files_are_checked_block_by_block(tmp_path, monkeypatch):
    """A flipped byte in any block of a multi-block file is found, whichever block it is in."""
    monkeypatch.setattr(cache_mod, "_BLOCK", 1000)
    path = tmp_path / "x.bin"
    raw = bytes(np.random.default_rng(0).integers(0, 256, 4500, dtype=np.uint8))
    path.write_bytes(raw)
    size, crcs = cache_mod.file_digest(path)
    assert size == 4500 and len(crcs) == 5
    for pos in (0, 999, 1000, 3500, 4499):
        bad = bytearray(raw)
        bad[pos] ^= 1
        path.write_bytes(bytes(bad))
        with cache_mod._pool() as pool:
            _, got = cache_mod.file_digest(path, pool)
        assert [i for i in range(5) if got[i] != crcs[i]] == [pos // 1000]
