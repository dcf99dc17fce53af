"""The files of a backtest run, in its output directory (Hydra's run dir).

Formats (read back by reports; keep them stable):

* ``metrics.parquet``: one row per env. ``env`` int64, ``strategy`` string (``"agent"`` for a
  checkpoint), ``asset`` string (the traded symbol, or ``"portfolio"`` when the env trades every
  asset), one float64 column per strategy parameter (``STRATEGY_PARAMS`` names, grid values),
  then the metric columns of ``backtest_metrics`` (``optrader.metrics.METRIC_NAMES`` order;
  max_dd_duration, n_trades, max_consec_losses int64, the rest float64).
* ``equity.parquet`` (``backtest.save_equity``): ``timestamp`` timestamp[ns, tz=UTC], the bar each
  row is marked at (row 0: the close before the first decision), then float64 ``env_0``,
  ``env_1``, ... in currency, NaN after the bar an env stopped (bankrupt or breaker).
* ``trades.parquet``: the ``optrader.metrics.TRADE_DTYPE`` columns (closed FIFO round trips)
  plus ``entry_time`` and ``exit_time`` timestamp[ns, tz=UTC] of entry_bar and exit_bar.
* ``backtest.json``: the run's summary (``SUMMARY_KEYS``).
* ``config.yaml``: the resolved config that ran.

Every file is written to a temporary name in the same directory, then renamed over the final
name, so a reader never sees a half-written file and an interrupted run leaves no partial one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optrader.metrics import trades_table

TIMESTAMP = pa.timestamp("ns", tz="UTC")
LEADING_COLUMNS = ("env", "strategy", "asset")
SUMMARY_KEYS = ("strategy", "params", "rank_by", "periods_per_year", "annualisation",
                "risk_free", "n_envs",
                "n_steps", "start", "end", "seconds", "bar_columns_per_second", "wall_seconds",
                "compile_s", "cache_load_s", "per_asset", "checkpoint")
FILE_NAMES = {"metrics": "metrics.parquet", "equity": "equity.parquet",
              "trades": "trades.parquet", "summary": "backtest.json", "config": "config.yaml"}


def metrics_table(frame) -> pa.Table:
    """The metrics DataFrame (``LEADING_COLUMNS``, parameters, metrics) as an Arrow table with
    the documented types: int64 env, string strategy and asset, every other column numeric."""
    missing = [c for c in LEADING_COLUMNS if c not in frame.columns]
    if missing or list(frame.columns[:3]) != list(LEADING_COLUMNS):
        raise ValueError(f"metrics: expected the leading columns {list(LEADING_COLUMNS)}, got "
                         f"{list(frame.columns[:3])}")
    cols = {"env": pa.array(frame["env"].to_numpy(np.int64)),
            "strategy": pa.array(frame["strategy"].astype(str).tolist(), type=pa.string()),
            "asset": pa.array(frame["asset"].astype(str).tolist(), type=pa.string())}
    for name in frame.columns[3:]:
        values = frame[name].to_numpy()
        if values.dtype.kind not in "iuf":
            raise TypeError(f"metrics[{name!r}]: expected a numeric column, got {values.dtype}")
        cols[str(name)] = pa.array(values.astype(np.int64 if values.dtype.kind in "iu"
                                                 else np.float64))
    return pa.table(cols)


def equity_table(equity: np.ndarray, timestamps: np.ndarray) -> pa.Table:
    """``timestamp`` then ``env_<i>`` float64 columns from equity (n, T+1) and int64 UTC ns
    timestamps (T+1,)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.ndim != 2 or np.shape(timestamps) != (equity.shape[1],):
        raise ValueError(f"equity, timestamps: expected shapes (n, T+1) and (T+1,), got "
                         f"{equity.shape} and {np.shape(timestamps)}")
    cols = {"timestamp": pa.array(np.asarray(timestamps, dtype=np.int64), type=TIMESTAMP)}
    cols.update({f"env_{i}": pa.array(equity[i]) for i in range(equity.shape[0])})
    return pa.table(cols)


def trades_with_times(trades: np.ndarray, market_timestamps: np.ndarray) -> pa.Table:
    """``trades_table(trades)`` plus ``entry_time`` / ``exit_time`` (null where a bar is -1, an
    open lot) from the market's int64 UTC ns timestamps (T,)."""
    trades = np.asarray(trades)
    table = trades_table(trades)
    ts = np.asarray(market_timestamps, dtype=np.int64)
    for name, bar_field in (("entry_time", "entry_bar"), ("exit_time", "exit_bar")):
        bars = np.asarray(trades[bar_field], dtype=np.int64)
        known = bars >= 0
        if (bars >= ts.shape[0]).any():
            raise ValueError(f"trades[{bar_field!r}]: expected bars below {ts.shape[0]} (the "
                             f"market's bars), got {int(bars.max())}")
        values = np.where(known, ts[np.where(known, bars, 0)], 0)
        table = table.append_column(name, pa.array(values, type=TIMESTAMP, mask=~known))
    return table


def write_outputs(out_dir: str | Path, *, metrics, trades: np.ndarray,
                  market_timestamps: np.ndarray, summary: dict, config_yaml: str,
                  equity: np.ndarray | None = None,
                  timestamps: np.ndarray | None = None) -> dict[str, Path]:
    """Write the run's files into ``out_dir`` (created if needed); returns name -> path.

    Args:
        out_dir: the run directory; nothing is written outside it.
        metrics: the metrics DataFrame (see ``metrics_table``).
        trades: TRADE_DTYPE round trips; market_timestamps int64 (T,) UTC ns of every bar.
        summary: the backtest.json content, exactly the keys ``SUMMARY_KEYS``.
        config_yaml: the resolved config as YAML text.
        equity, timestamps: float64 (n, T+1) NaN-padded curves and their int64 (T+1,) UTC ns
            bars; None skips equity.parquet.
    """
    if set(summary) != set(SUMMARY_KEYS):
        raise ValueError(f"summary: expected the keys {sorted(SUMMARY_KEYS)}, got "
                         f"{sorted(summary)}")
    # build every table before writing anything: a bad input leaves the directory untouched
    tables = {"metrics": metrics_table(metrics),
              "trades": trades_with_times(trades, market_timestamps)}
    if equity is not None:
        tables["equity"] = equity_table(equity, timestamps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, table in tables.items():
        paths[key] = _atomic(out / FILE_NAMES[key], lambda tmp, t=table: pq.write_table(t, tmp))
    text = json.dumps({k: summary[k] for k in SUMMARY_KEYS}, indent=1)
    paths["summary"] = _atomic(out / FILE_NAMES["summary"],
                               lambda tmp: Path(tmp).write_text(text + "\n"))
    paths["config"] = _atomic(out / FILE_NAMES["config"],
                              lambda tmp: Path(tmp).write_text(config_yaml))
    return paths


def _atomic(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
