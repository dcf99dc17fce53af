"""A backtest run directory (written by ``python -m optrader.backtest``), read for the tear sheet.

The directory holds ``metrics.parquet`` (one row per env: env, strategy, asset, one float64
column per strategy parameter, then the metric columns), optionally ``equity.parquet``
(``timestamp`` then ``env_<i>``: currency at each bar's close, NaN-padded after an env stopped),
``trades.parquet`` (FIFO round trips, ``optrader.metrics.TRADE_DTYPE`` plus entry/exit times),
``benchmark.parquet`` (``timestamp`` then each symbol's close: buy and hold, exposure) and
``backtest.json`` (``strategy``, ``params``, ``rank_by``, ``periods_per_year``,
``annualisation``, ...).
Everything is checked here once; a problem is a ``ReportError`` whose one-line message names what
was expected and what was found. Only the selected env's equity column is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from optrader.metrics import LOWER_IS_BETTER

ID_COLUMNS = ("env", "strategy", "asset")


class ReportError(ValueError):
    """A run directory or an option the report cannot use; the message is one line."""


@dataclass(frozen=True)
class Run:
    """A loaded run directory.

    Attributes:
        path: the run directory.
        config: backtest.json as a dict ({} when the file is absent).
        metrics: metrics.parquet, one row per env.
        params: the parameter columns of ``metrics`` (backtest.json ``params``, else inferred).
        metric_names: the numeric metric columns of ``metrics`` (neither ids nor params).
        trades: trades.parquet (None when absent).
    """

    path: Path
    config: dict
    metrics: pd.DataFrame
    params: tuple[str, ...]
    metric_names: tuple[str, ...]
    trades: pd.DataFrame | None

    @property
    def equity_path(self) -> Path:
        return self.path / "equity.parquet"

    @property
    def has_equity(self) -> bool:
        return self.equity_path.is_file()

    @property
    def envs(self) -> np.ndarray:
        """The env ids of metrics.parquet, int64 (n,), sorted."""
        return np.sort(self.metrics["env"].to_numpy(np.int64))

    def row(self, env: int) -> pd.Series:
        """metrics.parquet's row of ``env`` (checked by ``select``)."""
        return self.metrics.loc[self.metrics["env"] == env].iloc[0]


class Selection(NamedTuple):
    env: int  # the env the sheet is about
    metric: str  # ranking metric (the heat map's colour)
    how: str  # one line for the sheet, e.g. "best of 12 envs by sharpe"


def load_run(run_dir: str | Path) -> Run:
    """Read and check a run directory's metrics, trades and backtest.json (not the equity)."""
    path = Path(run_dir)
    if not path.exists():
        raise ReportError(f"run dir: expected a backtest run directory, got {str(path)!r} "
                          "(no such path)")
    if not path.is_dir():
        raise ReportError(f"run dir: expected a backtest run directory, got the file {str(path)!r}")
    metrics_path = path / "metrics.parquet"
    if not metrics_path.is_file():
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        listing = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
        raise ReportError(f"{path}: expected metrics.parquet (written by python -m "
                          f"optrader.backtest), found {listing or 'an empty directory'}")
    config = _read_config(path / "backtest.json")
    metrics = read_parquet(metrics_path)
    if "env" not in metrics.columns:
        raise ReportError(f"{metrics_path}: expected an 'env' column, found {list(metrics.columns)}")
    if metrics.empty:
        raise ReportError(f"{metrics_path}: expected one row per env, found no rows")
    envs = metrics["env"].to_numpy(np.float64)
    if not (np.isfinite(envs) & (envs == np.round(envs))).all():
        raise ReportError(f"{metrics_path}: expected integer env ids, got {metrics['env'].dtype} "
                          "values that are not all integers")
    metrics["env"] = envs.astype(np.int64)
    if metrics["env"].duplicated().any():
        dup = sorted(set(metrics.loc[metrics["env"].duplicated(), "env"]))[:5]
        raise ReportError(f"{metrics_path}: expected one row per env, found env ids {dup} twice")
    numeric = [c for c in metrics.columns
               if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(metrics[c])]
    listed = config.get("params")
    if isinstance(listed, list):
        params = tuple(p for p in listed if p in numeric)
    else:  # no backtest.json: every numeric column that is not a known metric is a parameter
        from optrader.metrics import METRIC_NAMES

        params = tuple(c for c in numeric if c not in METRIC_NAMES)
    trades_path = path / "trades.parquet"
    trades = read_parquet(trades_path) if trades_path.is_file() else None
    return Run(path, config, metrics, params, tuple(c for c in numeric if c not in params), trades)


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet file as a DataFrame; an unreadable file is a ReportError naming it."""
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"{path}: expected a readable Parquet file, got an error: {reason}") \
            from None


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: expected a JSON object, got an error: {exc}") from None
    if not isinstance(config, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def rank_envs(metrics: pd.DataFrame, metric: str) -> np.ndarray:
    """Env ids int64 (n,), best first by ``metric``; NaN ranks last, ties by env id.

    The largest value is best, except for ``LOWER_IS_BETTER`` metrics (risks, losses).
    """
    values = metrics[metric].to_numpy(np.float64)
    key = values if metric in LOWER_IS_BETTER else -values
    key = np.where(np.isnan(key), np.inf, key)
    envs = metrics["env"].to_numpy(np.int64)
    order = np.lexsort((envs, np.isnan(values), key))
    return envs[order]


def select(run: Run, env: int | None = None, metric: str | None = None) -> Selection:
    """The env of the sheet: ``env``, else the best by ``metric`` (default: backtest.json rank_by).

    Raises:
        ReportError: an env id not in metrics.parquet, or a metric that is not a metric column.
    """
    names = ", ".join(run.metric_names) or "none"
    if metric is None:
        metric = run.config.get("rank_by", "sharpe")
        if metric not in run.metric_names:
            raise ReportError(f"rank_by: expected backtest.json's rank_by (default 'sharpe') to be "
                              f"a metric column of metrics.parquet ({names}), got {metric!r}; "
                              "pass --metric NAME")
    elif metric not in run.metric_names:
        raise ReportError(f"--metric: expected one of the metric columns of metrics.parquet "
                          f"({names}), got {metric!r}")
    ranked = rank_envs(run.metrics, metric)
    n = len(ranked)
    if env is None:
        how = f"best of {n} envs by {metric}"
        if np.isnan(run.row(int(ranked[0]))[metric]):
            how += f" (every env's {metric} is NaN: lowest env id)"
        return Selection(int(ranked[0]), metric, how)
    if isinstance(env, bool) or not isinstance(env, (int, np.integer)) or env not in set(ranked):
        raise ReportError(f"--env: expected one of the env ids of metrics.parquet "
                          f"({_id_list(run.envs)}), got {env!r}")
    rank = int(np.flatnonzero(ranked == env)[0]) + 1
    return Selection(int(env), metric, f"env {env} chosen, rank {rank} of {n} by {metric}")


def _id_list(ids: np.ndarray) -> str:
    if len(ids) and ids[-1] - ids[0] == len(ids) - 1:
        return f"{ids[0]}..{ids[-1]}" if len(ids) > 1 else str(ids[0])
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (", ..." if len(ids) > 10 else "")


def env_equity(run: Run, env: int) -> tuple[pd.Series | None, str]:
    """Env ``env``'s equity curve and, when there is none, a note saying why.

    Returns:
        (equity float64 (T,) in currency indexed by UTC bar-close timestamps with the NaN padding
        dropped, "") or (None, note).
    """
    if not run.has_equity:
        return None, ("no equity curve: equity.parquet is absent "
                      "(the backtest ran with save_equity=false)")
    column = f"env_{env}"
    try:
        names = pq.read_schema(run.equity_path).names
    except (OSError, pa.ArrowException) as exc:
        raise ReportError(f"{run.equity_path}: expected a readable Parquet file, got an error: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None
    if "timestamp" not in names or column not in names:
        missing = "timestamp" if "timestamp" not in names else column
        return None, f"no equity curve: equity.parquet has no column {missing!r}"
    frame = read_parquet(run.equity_path, ["timestamp", column])
    index = _utc_index(frame["timestamp"])
    equity = pd.Series(frame[column].to_numpy(np.float64), index=index, name=column)
    equity = equity[~np.isnan(equity.to_numpy()) & ~index.isna()]
    if equity.empty:
        return None, f"no equity curve: env {env}'s column of equity.parquet is all NaN"
    return equity, ""


def env_trades(run: Run, env: int) -> tuple[pd.DataFrame | None, str]:
    """Env ``env``'s round trips (rows of trades.parquet) or (None, a note saying why not)."""
    if run.trades is None:
        return None, "no trades.parquet in the run directory"
    if "env" not in run.trades.columns or "return" not in run.trades.columns:
        return None, "trades.parquet has no 'env' or 'return' column"
    trades = run.trades.loc[run.trades["env"] == env]
    if trades.empty:
        return None, f"env {env} made no round trips"
    return trades, ""


def _utc_index(ts: pd.Series) -> pd.DatetimeIndex:
    """Timestamps (datetime, naive = UTC, or int64 ns) as a UTC DatetimeIndex."""
    if pd.api.types.is_integer_dtype(ts):
        return pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True))
    index = pd.DatetimeIndex(pd.to_datetime(ts))
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def closes(run: Run) -> pd.DataFrame | None:
    """benchmark.parquet as float64 closes (one column per symbol, asset order) indexed by UTC
    time, or None when the run directory has none (runs written before it existed)."""
    path = run.path / "benchmark.parquet"
    if not path.is_file():
        return None
    frame = read_parquet(path)
    if "timestamp" not in frame.columns or len(frame.columns) < 2:
        raise ReportError(f"{path}: expected a 'timestamp' column and one close column per "
                          f"symbol, found {list(frame.columns)}")
    index = _utc_index(frame.pop("timestamp"))
    return frame.set_axis(index).astype(np.float64)


def env_benchmark(run: Run, env: int, equity: pd.Series | None,
                  prices: pd.DataFrame | None) -> tuple[pd.Series | None, str]:
    """(buy-and-hold curve on the equity's bars, its label) of env ``env``: its asset's close
    from the equity's first bar and value, or the equal-weight mean of every symbol for a
    portfolio env; (None, a note saying why not) without prices or equity."""
    from optrader.report.calc import buy_and_hold

    if equity is None:
        return None, "no equity curve"
    if prices is None:
        return None, "no buy and hold: benchmark.parquet is absent (an older run directory)"
    asset = str(run.row(env).get("asset", "portfolio"))
    if asset in prices.columns:
        columns, label = [asset], f"buy and hold {asset} (no costs)"
    else:
        columns = list(prices.columns)
        label = ("buy and hold (no costs)" if len(columns) == 1 else
                 f"equal-weight buy and hold of {len(columns)} assets (no costs)")
    curve = buy_and_hold(prices, columns, equity)
    if curve.isna().all():
        return None, "no buy and hold: benchmark.parquet has no bars of the equity curve"
    return curve, label


def run_annualisation(run: Run, equity: pd.Series | None) -> dict | None:
    """How the run's metrics were annualised: backtest.json's ``annualisation``, else its
    ``periods_per_year`` (configured), else inferred from the equity's timestamps
    (``optrader.annualisation``); None when none of these exists."""
    ann = run.config.get("annualisation")
    if isinstance(ann, dict) and isinstance(ann.get("periods_per_year"), (int, float)):
        return ann
    ppy = run.config.get("periods_per_year")
    if isinstance(ppy, (int, float)) and not isinstance(ppy, bool) and ppy > 0:
        return {"periods_per_year": float(ppy), "source": "configured",
                "basis": "backtest.json periods_per_year"}
    if equity is None or len(equity) < 2:
        return None
    from optrader.annualisation import infer_periods_per_year

    return infer_periods_per_year(equity.index.as_unit("ns").asi8).as_dict()


def is_agent_run(run: Run) -> bool:
    """Whether the run is a trained policy's (backtest of agent.checkpoint): no parameters."""
    if run.config.get("strategy") == "agent" or run.config.get("checkpoint"):
        return True
    return "strategy" in run.metrics.columns and bool((run.metrics["strategy"] == "agent").all())
