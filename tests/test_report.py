"""Tear sheets of backtest run directories (``optrader.report``), on run dirs fabricated here in
the format ``python -m optrader.backtest`` writes."""

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from optrader.report import (
    ReportError,
    build_sheet,
    drawdown,
    drawdown_figure,
    equity_figure,
    load_run,
    main,
    monthly_returns,
    monthly_returns_figure,
    output_paths,
    param_grid,
    param_heatmap_figure,
    rank_envs,
    render_html,
    select,
    sheet_figure,
    trades_figure,
    write_report,
    yearly_returns,
)

FAST, SLOW = (5.0, 10.0, 20.0), (50.0, 100.0, 150.0, 200.0)
# env = 4 * i_fast + i_slow; env 7 (fast 10, slow 200) is the best, env 3 NaN ranks last
SHARPE = (0.1, 0.5, -0.2, np.nan, 0.9, 1.7, 0.3, 2.4, 0.0, 1.1, -0.6, 0.8)
B64 = "data:image/png;base64,"


def make_run(path, *, n_bars=400, curve="random", equity=True, trades=True, vary_long=False):
    """A run dir: 3 x 4 grid of fast/slow (x2 long_only with vary_long), daily bars from
    2021-01-01; env 11 stops 50 bars early, env 10 never trades."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    grid = [(f, s, lo) for lo in ((1.0, 0.0) if vary_long else (1.0,)) for f in FAST for s in SLOW]
    n = len(grid)
    times = pd.date_range("2021-01-01", periods=n_bars, freq="D", tz="UTC")
    curves = np.empty((n, n_bars))
    for e in range(n):
        steps = 1.0 + rng.normal(0.0003 * (e % 12 - 5), 0.01, n_bars - 1)
        curves[e] = 1e5 * np.concatenate([[1.0], np.cumprod(steps)]) if curve == "random" else 1e5
    if n_bars > 60:
        curves[11, -50:] = np.nan
    rows = []
    for e in range(n):
        k = 0 if e % 12 == 10 else 5 + e
        ret = rng.normal(0.005, 0.03, k)
        entry = np.sort(rng.integers(0, max(n_bars - 10, 1), k))
        exit_ = np.minimum(entry + rng.integers(1, 10, k), n_bars - 1)
        rows.append(pd.DataFrame({
            "env": np.full(k, e, np.int64), "asset": np.zeros(k, np.int64),
            "side": rng.choice(np.array([1, -1], np.int8), k), "qty": np.full(k, 10.0),
            "entry_bar": entry, "exit_bar": exit_, "entry_price": np.full(k, 100.0),
            "exit_price": 100.0 * (1 + ret), "pnl": ret * 1000.0, "return": ret,
            "bars": exit_ - entry, "commission": np.full(k, 0.5),
            "entry_fill": np.arange(k, dtype=np.int64), "exit_fill": np.arange(k, dtype=np.int64),
            "entry_time": times[entry], "exit_time": times[exit_]}))
    tr = pd.concat(rows, ignore_index=True)
    last = np.array([c[np.isfinite(c)][-1] for c in curves])
    metrics = pd.DataFrame({
        "env": np.arange(n, dtype=np.int64), "strategy": "sma_cross", "asset": "AAPL",
        "fast": [g[0] for g in grid], "slow": [g[1] for g in grid],
        "long_only": [g[2] for g in grid],
        "total_return": last / 1e5 - 1.0,
        "sharpe": np.resize(SHARPE, n) + np.repeat(np.arange(n // 12) * 0.01, 12),
        "max_drawdown": [-drawdown(pd.Series(c[np.isfinite(c)])).min() for c in curves],
        "win_rate": [(tr.loc[tr.env == e, "pnl"] > 0).mean() for e in range(n)],
        "n_trades": tr.groupby("env").size().reindex(range(n), fill_value=0).astype(float),
    })
    metrics.to_parquet(path / "metrics.parquet")
    if equity:
        eq = pd.DataFrame({"timestamp": times} | {f"env_{e}": curves[e] for e in range(n)})
        eq.to_parquet(path / "equity.parquet")
    if trades:
        tr.to_parquet(path / "trades.parquet")
    (path / "backtest.json").write_text(json.dumps({
        "strategy": "sma_cross", "params": ["fast", "slow", "long_only"], "rank_by": "sharpe",
        "periods_per_year": 252.0, "n_envs": n}))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "sma")


def html_of(path):
    return path.read_text(encoding="utf-8")


# -- files and contents -----------------------------------------------------------------------

def test_both_formats_write_non_empty_report_files(tmp_path):
    run = make_run(tmp_path / "run")
    html_path, png_path = write_report(run, fmt="both")
    assert (html_path, png_path) == (run / "report.html", run / "report.png")
    assert html_path.stat().st_size > 20_000 and png_path.stat().st_size > 20_000
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one format alone writes only its default file; our earlier reports may be replaced
    assert output_paths(run, "html", None, force=False) == [html_path]
    assert output_paths(run, "png", None, force=False) == [png_path]
    assert output_paths(run, "png", tmp_path, force=False) == [tmp_path / "report.png"]
    assert output_paths(run, "both", tmp_path / "a.b", force=False) == [tmp_path / "a.html",
                                                                         tmp_path / "a.png"]
    foreign = tmp_path / "photo.png"
    foreign.write_bytes(png_path.read_bytes()[:8] + b"someone else's picture")
    with pytest.raises(ReportError, match="photo.png' exists and was not written"):
        output_paths(run, "png", foreign, force=False)
    assert output_paths(run, "png", foreign, force=True) == [foreign]


def test_html_embeds_every_panel_and_the_best_envs_metrics(run_dir, tmp_path):
    (path,) = write_report(run_dir, out=tmp_path / "sheet.html")
    text = html_of(path)
    # equity, drawdown, rolling Sharpe, exposure, calendar returns, trades, parameter heat map
    assert text.count(B64) == 7
    assert "<h1>sma_cross · AAPL · env 7</h1>" in text
    assert "best of 12 envs by sharpe" in text
    assert "2021-01-01 to 2022-02-04 (400 bars)" in text
    assert "<th>sharpe</th><td>2.40</td>" in text and "<td>1.70</td>" not in text
    assert "<th>fast</th><td>10</td>" in text and "<th>slow</th><td>200</td>" in text
    row = load_run(run_dir).row(7)
    assert f"<th>total_return</th><td>{row.total_return:.2%}</td>" in text
    assert f"<th>n_trades</th><td>{row.n_trades:.0f}</td>" in text


def test_best_env_follows_rank_by_with_nan_last(run_dir, tmp_path):
    run = load_run(run_dir)
    ranked = rank_envs(run.metrics, "sharpe")
    assert ranked[0] == 7 and ranked[-1] == 3 and sorted(ranked) == list(range(12))
    assert select(run).env == 7
    # risks rank smallest first; other metrics largest first
    assert select(run, metric="max_drawdown").env == run.metrics.max_drawdown.idxmin()
    assert select(run, metric="total_return").env == run.metrics.total_return.idxmax()
    other = make_run(tmp_path / "tr")
    cfg = json.loads((other / "backtest.json").read_text()) | {"rank_by": "total_return"}
    (other / "backtest.json").write_text(json.dumps(cfg))
    assert select(load_run(other)).env == run.metrics.total_return.idxmax()
    m = run.metrics.assign(sharpe=np.nan)
    assert list(rank_envs(m, "sharpe")) == list(range(12))


def test_env_option_picks_that_env(run_dir, tmp_path, capsys):
    out = tmp_path / "env2.html"
    assert main([str(run_dir), "--env", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = html_of(out)
    assert "env 2 chosen, rank 10 of 12 by sharpe" in text
    assert "<th>sharpe</th><td>-0.20</td>" in text


def test_metric_option_changes_env_and_heat_map(run_dir, tmp_path):
    run = load_run(run_dir)
    sheet = build_sheet(run, select(run, metric="total_return"))
    assert sheet.selection.env == run.metrics.total_return.idxmax()
    assert "by total_return" in sheet.subtitle and sheet.grid_axes == ("fast", "slow")


# -- computations -----------------------------------------------------------------------------

def test_param_grid_matches_the_grid(run_dir):
    metrics = load_run(run_dir).metrics
    grid = param_grid(metrics, "fast", "slow", "sharpe")
    assert list(grid.columns) == list(FAST) and list(grid.index) == list(SLOW)
    for i, f in enumerate(FAST):
        for j, s in enumerate(SLOW):
            np.testing.assert_equal(grid.loc[s, f], SHARPE[4 * i + j])
    fig = param_heatmap_figure(metrics, "fast", "slow", "sharpe", highlight=(10.0, 200.0))
    drawn = fig.axes[0].images[0].get_array().filled(np.nan)
    np.testing.assert_array_equal(drawn, grid.to_numpy())


def test_param_grid_averages_other_varying_params(tmp_path):
    run = load_run(make_run(tmp_path / "r", vary_long=True, n_bars=30))
    grid = param_grid(run.metrics, "fast", "slow", "sharpe")
    # long_only 1 rows carry SHARPE, long_only 0 rows SHARPE + 0.01: the mean is + 0.005
    np.testing.assert_allclose(grid.loc[200.0, 10.0], 2.405)
    assert np.isnan(grid.loc[200.0, 5.0])  # env 3 and 15 are both NaN
    sheet = build_sheet(run, select(run))
    assert sheet.grid_axes is None and "3 parameters vary (fast, slow, long_only)" in sheet.grid_note
    (path,) = write_report(run.path)
    assert html_of(path).count(B64) == 6 and "3 parameters vary" in html_of(path)
    with pytest.raises(ValueError, match="expected a column 'fats'"):
        param_grid(run.metrics, "fats", "slow", "sharpe")


def test_monthly_returns_equal_hand_computed_values():
    jan = pd.date_range("2021-01-01", "2021-01-31", freq="D", tz="UTC")
    feb = pd.date_range("2021-02-01", "2021-02-28", freq="D", tz="UTC")
    eq = pd.Series(np.concatenate([np.linspace(100.0, 110.0, len(jan)),
                                   np.linspace(109.0, 104.5, len(feb))]), index=jan.append(feb))
    table = monthly_returns(eq)
    assert list(table.index) == [2021] and list(table.columns) == list(range(1, 13))
    np.testing.assert_allclose(table.loc[2021, [1, 2]], [0.10, -0.05])
    assert table.loc[2021, 3:].isna().all()
    fig = monthly_returns_figure(eq)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array().filled(np.nan),
                                  table.to_numpy())


def test_monthly_returns_across_a_year_end_and_a_gap():
    idx = pd.DatetimeIndex(["2020-12-15", "2020-12-31 23:00", "2021-01-01 01:00", "2021-01-31",
                            "2021-03-31"], tz="UTC")
    eq = pd.Series([100.0, 120.0, 100.0, 90.0, 99.0], index=idx)
    table = monthly_returns(eq)
    np.testing.assert_allclose(table.loc[2020, 12], 0.2)
    np.testing.assert_allclose(table.loc[2021, [1, 3]], [-0.25, 0.1])  # March spans the gap
    assert np.isnan(table.loc[2021, 2]) and np.isnan(table.loc[2020, 11])
    np.testing.assert_allclose(yearly_returns(eq).to_numpy(), [0.2, 99.0 / 120.0 - 1.0])


def test_drawdown_of_a_hand_made_curve():
    eq = pd.Series([100.0, 120.0, 90.0, 130.0, 65.0])
    np.testing.assert_allclose(drawdown(eq).to_numpy(), [0.0, 0.0, -0.25, 0.0, -0.5])


# -- degraded inputs --------------------------------------------------------------------------

def test_missing_equity_still_reports(tmp_path):
    run = make_run(tmp_path / "r", equity=False)
    html_path, png_path = write_report(run, fmt="both")
    text = html_of(html_path)
    assert "equity.parquet is absent" in text and text.count(B64) == 2  # trades + heat map
    assert "<th>sharpe</th><td>2.40</td>" in text and "(trades)" in text
    assert png_path.stat().st_size > 20_000


@pytest.mark.parametrize("curve, n_bars", [("flat", 300), ("random", 1)])
def test_flat_or_single_bar_curves_and_no_trades_do_not_crash(tmp_path, curve, n_bars):
    run = load_run(make_run(tmp_path / "r", curve=curve, n_bars=n_bars))
    sheet = build_sheet(run, select(run, env=10))
    text = render_html(sheet, log=True)
    assert "env 10 made no round trips" in text and text.count(B64) == 6
    assert f"({n_bars} bar{'s' if n_bars > 1 else ''})" in text
    assert "Equity: 100,000.00 to 100,000.00" in sheet_figure(sheet).axes[0].get_title() \
        or curve == "random"
    sheet_figure(sheet, log=True).savefig(io.BytesIO(), format="png", dpi=30)


def test_no_trades_file_and_none_inputs(tmp_path):
    run = make_run(tmp_path / "r", trades=False)
    (path,) = write_report(run)
    assert "no trades.parquet" in html_of(path)
    for fig in (equity_figure(None), drawdown_figure(None), monthly_returns_figure(None),
                trades_figure(None)):
        assert isinstance(fig, Figure)


# -- errors and output paths ------------------------------------------------------------------

def _bad_dir(tmp_path):
    d = tmp_path / "bare"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    (d / "equity.parquet").write_bytes(b"")
    return str(d)


def _a_file(tmp_path):
    """A plain file where a report's folder would be."""
    path = tmp_path / "a_file"
    path.write_text("mine")
    return path


@pytest.mark.parametrize("argv, words", [
    (lambda t, r: [str(t / "nope")], ["nope", "no such path"]),
    (lambda t, r: [_bad_dir(t)], ["expected metrics.parquet", "equity.parquet, notes.txt"]),
    (lambda t, r: [r, "--env", "99"], ["expected one of the env ids", "0..11", "got 99"]),
    (lambda t, r: [r, "--env", "x"], ["--env", "invalid int value: 'x'"]),
    (lambda t, r: [r, "--metric", "shrape"], ["got 'shrape'", "total_return, sharpe"]),
    (lambda t, r: [r, "--format", "pdf"], ["--format", "invalid choice: 'pdf'"]),
    (lambda t, r: [r, "--out", str(t / "x.png"), "--format", "html"], ["expected a .html path"]),
    (lambda t, r: [r, "--out", str(t / "no" / "x.html")], ["does not exist"]),
    (lambda t, r: [r, "--out", str(_a_file(t) / "x.html")], ["a_file", "is a file"]),
])
def test_bad_input_exits_2_with_one_line(tmp_path, run_dir, capsys, argv, words):
    assert main(argv(tmp_path, str(run_dir))) == 2
    err = capsys.readouterr().err
    assert err.startswith("optrader.report: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err


def test_bad_run_files_exit_2(tmp_path, capsys):
    run = make_run(tmp_path / "r", n_bars=30)
    cfg = json.loads((run / "backtest.json").read_text()) | {"rank_by": "omega"}
    (run / "backtest.json").write_text(json.dumps(cfg))
    assert main([str(run)]) == 2
    assert "rank_by (default 'sharpe') to be a metric column" in capsys.readouterr().err
    assert main([str(run), "--metric", "sharpe", "--out", str(tmp_path / "a.html")]) == 0
    capsys.readouterr()
    (run / "equity.parquet").write_bytes(b"PAR1 truncated")
    assert main([str(run), "--metric", "sharpe", "--out", str(tmp_path / "a.html")]) == 2
    assert "equity.parquet: expected a readable Parquet file" in capsys.readouterr().err
    pd.DataFrame({"id": [0, 1], "sharpe": [1.0, 2.0]}).to_parquet(run / "metrics.parquet")
    assert main([str(run)]) == 2
    assert "expected an 'env' column, found ['id', 'sharpe']" in capsys.readouterr().err
    with pytest.raises(TypeError, match="expected an equity Series indexed by timestamps"):
        monthly_returns(pd.Series([1.0, 2.0]))


def test_refuses_to_overwrite_a_foreign_file_without_force(run_dir, tmp_path, capsys):
    mine = tmp_path / "notes.html"
    mine.write_text("my notes")
    assert main([str(run_dir), "--out", str(mine)]) == 2
    assert "--force" in capsys.readouterr().err and mine.read_text() == "my notes"
    assert main([str(run_dir), "--out", str(mine), "--force"]) == 0
    assert html_of(mine).count(B64) == 7
    assert main([str(run_dir), "--out", str(mine)]) == 0  # an earlier report is ours to replace


def test_module_runs_as_a_script(run_dir, tmp_path):
    """The one subprocess test: ``python -m`` works headless (errors: see main() tests above)."""
    out = tmp_path / "cli.png"
    ok = subprocess.run([sys.executable, "-m", "optrader.report", str(run_dir), "--out", str(out),
                         "--env", "4", "--log"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(out) and out.stat().st_size > 20_000


# ---- tear sheet: numbers, long histories, buy and hold, agent runs, annualisation -------------
def test_numbers_are_formatted_for_people():
    from optrader.report.calc import format_number, format_run_value

    assert format_run_value("bar_columns_per_second", 2420706.9160044827) == "2.42 M/s"
    assert format_run_value("seconds", 92.990123) == "92.99 s"
    assert format_number(19899) == "19,899" and format_number(0.123456) == "0.1235"
    assert format_run_value("annualisation", {"periods_per_year": 6240.0, "source": "inferred",
                                              "basis": "1h bars"}) == \
        "6,240 bars/year (inferred: 1h bars)"


def test_long_histories_get_a_yearly_grid_with_a_row_per_decade():
    from optrader.report.figures import calendar_height, draw_calendar_returns

    times = pd.bdate_range("1990-01-01", "2049-12-31", tz="UTC")
    eq = pd.Series(100.0 * 1.0002 ** np.arange(len(times)), index=times)
    ax = Figure().add_subplot()
    draw_calendar_returns(ax, eq)
    assert ax.get_title().startswith("Yearly returns")
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{d}s" for d in range(1990, 2050, 10)]
    assert calendar_height(eq) < 4.0  # 60 years: 7 rows, not 60
    short = eq["2040":]
    ax = Figure().add_subplot()
    draw_calendar_returns(ax, short)
    assert ax.get_title().startswith("Monthly returns")


def test_buy_and_hold_exposure_and_rolling_sharpe():
    from optrader.report.calc import buy_and_hold, exposure, rolling_sharpe

    times = pd.date_range("2021-01-01", periods=6, freq="D", tz="UTC")
    closes = pd.DataFrame({"A": [10.0, 11, 12, 11, 10, 12], "B": [20.0, 20, 22, 24, 22, 20]},
                          index=times)
    eq = pd.Series([1000.0, 1100, 1200, 1100, 1000, 1200], index=times)
    np.testing.assert_allclose(buy_and_hold(closes, ["A"], eq), [1000, 1100, 1200, 1100, 1000,
                                                                1200])
    np.testing.assert_allclose(buy_and_hold(closes, ["A", "B"], eq),
                               1000 * (closes / closes.iloc[0]).mean(axis=1))
    trades = pd.DataFrame({"entry_time": [times[1]], "exit_time": [times[4]], "side": [1],
                           "qty": [50.0], "asset": [0]})
    np.testing.assert_allclose(exposure(trades, eq, closes),
                               [0, 550 / 1100, 600 / 1200, 550 / 1100, 0, 0])
    np.testing.assert_allclose(exposure(trades, eq), [0, 1, 1, 1, 0, 0])
    r = eq.pct_change()
    want = r.iloc[-3:].mean() / r.iloc[-3:].std(ddof=1) * np.sqrt(252)
    assert rolling_sharpe(eq, 3, 252.0).iloc[-1] == pytest.approx(want)


def test_sheet_states_annualisation_and_agent_runs_have_no_heat_map(tmp_path):
    path = make_run(tmp_path / "r")
    config = json.loads((path / "backtest.json").read_text())
    config.update(strategy="agent", checkpoint="x/policy.npz",
                  annualisation={"periods_per_year": 6240.0, "source": "inferred",
                                 "basis": "1h bars, 24/5 (FX): 260 days x 24 bars"})
    (path / "backtest.json").write_text(json.dumps(config))
    run = load_run(path)
    sheet = build_sheet(run, select(run))
    assert sheet.agent and "annualised with 6,240 bars/year (inferred: 1h bars" in sheet.subtitle
    text = render_html(sheet)
    assert "<h2>Parameters</h2>" not in text and "6,240 bars/year" in text
    titles = [ax.get_title() for ax in sheet_figure(sheet).axes]
    assert not any(" by " in t and "sharpe" in t for t in titles)
    assert any(t.startswith("Rolling Sharpe") and "6,240 bars/year" in t for t in titles)
