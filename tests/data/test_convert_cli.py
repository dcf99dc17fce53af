"""``python -m optrader.data convert`` never writes defective rows silently: without --clean it
refuses (exit 1, one line naming the defects, nothing written); with --clean it drops them and
says what it dropped. It never overwrites a source, and a DST that is a directory or cannot be
written is a one-line error (exit 2). ``validate --json`` to a bad place likewise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optrader.data.__main__ import main as cli_main
from optrader.data.io import read_bars
from optrader.data.quality import ERROR, quality_report


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # narrow: a long message must still be one line


def frame(n=50) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "symbol": "AAA", "open": close.round(4), "high": (close * 1.01).round(4),
        "low": (close * 0.99).round(4), "close": close.round(4), "volume": 1000.0})


def defective() -> pd.DataFrame:
    df = frame()
    df.loc[7, "close"] = np.nan  # non_finite
    df.loc[9, "low"] = -1.0  # non_positive_price
    return pd.concat([df, df.iloc[[20]]], ignore_index=True)  # a duplicate of row 20


def fingerprint(path):
    return path.read_bytes(), path.stat().st_mtime_ns


def one_line(capsys) -> str:
    """The one line a command printed: a result on stdout, or an error on stderr (and then
    nothing on stdout), ``optrader.data: message`` like every command's errors."""
    out, err = capsys.readouterr()
    lines = [ln for ln in (err or out).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    if err:
        assert not out.strip() and lines[0].startswith("optrader.data: "), (out, err)
    return lines[0]


def test_defective_rows_are_refused_without_clean(tmp_path, capsys):
    src = tmp_path / "src.csv"
    defective().to_csv(src, index=False)
    dst = tmp_path / "dst.parquet"
    assert cli_main(["convert", str(src), str(dst)]) == 1
    line = one_line(capsys)
    assert "1 duplicate" in line and "1 non_finite" in line and "1 non_positive_price" in line
    assert "nothing written" in line and "--clean" in line
    assert not dst.exists()


def test_clean_drops_them_and_says_what_it_dropped(tmp_path, capsys):
    src = tmp_path / "src.csv"
    defective().to_csv(src, index=False)
    before = fingerprint(src)
    dst = tmp_path / "dst.parquet"
    assert cli_main(["convert", str(src), str(dst), "--clean"]) == 0
    line = one_line(capsys)
    assert "wrote 48 rows" in line and "dropped 3 rows with defects" in line
    assert "1 duplicate" in line and "1 non_finite" in line
    written = read_bars(dst)
    assert len(written) == 48
    report = quality_report(written)
    assert not [i for i in report.issues if i.severity == ERROR and i.kind != "missing_bars"]
    assert fingerprint(src) == before


def test_a_clean_file_converts_without_a_note(tmp_path, capsys):
    src = tmp_path / "src.csv"
    frame().to_csv(src, index=False)
    dst = tmp_path / "dst.parquet"
    assert cli_main(["convert", str(src), str(dst)]) == 0
    line = one_line(capsys)
    assert "wrote 50 rows" in line and "dropped" not in line


@pytest.mark.parametrize("force", [False, True])
def test_the_source_is_never_overwritten(tmp_path, capsys, force):
    src = tmp_path / "bars.parquet"
    frame().assign(timestamp=lambda d: pd.to_datetime(d["timestamp"])).to_parquet(src)
    before = fingerprint(src)
    for dst in (src, tmp_path / "." / "bars.parquet"):
        assert cli_main(["convert", str(src), str(dst), *(["--force"] if force else [])]) == 2
        assert "never overwrites its source" in one_line(capsys)
    assert fingerprint(src) == before


def test_a_directory_destination_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "src.csv"
    frame().to_csv(src, index=False)
    folder = tmp_path / "out"
    folder.mkdir()
    for flags in ([], ["--force"]):
        assert cli_main(["convert", str(src), str(folder), *flags]) == 2
        assert "is a directory" in one_line(capsys)
    assert list(folder.iterdir()) == []


def test_an_unwritable_destination_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "src.csv"
    frame().to_csv(src, index=False)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert cli_main(["convert", str(src), str(blocker / "dst.parquet")]) == 2
    line = one_line(capsys)
    assert line.startswith("optrader.data: DST:") and "file.txt" in line and "is a file" in line
    assert blocker.read_text() == "not a folder"


def test_validate_json_to_a_bad_place_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "src.csv"
    frame().to_csv(src, index=False)
    folder = tmp_path / "report"
    folder.mkdir()
    assert cli_main(["validate", str(src), "--json", str(folder)]) == 2
    assert "--json" in one_line(capsys)  # checked before the file is read: no report printed
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    for where in (blocker / "r.json", tmp_path / "missing" / "r.json"):
        assert cli_main(["validate", str(src), "--json", str(where)]) == 2
        line = one_line(capsys)
        assert ("is a file" in line) if where.parent == blocker else ("does not exist" in line)
        assert ".tmp" not in line
    assert blocker.read_text() == "not a folder"
