"""Backtests: every env of a TradingVectorEnv runs a rule-based strategy over the whole bar range
of its data split in one kernel call (``kernels.backtest``), one env per parameter set.

``run_strategy(env, "sma_cross", {"fast": [5, 10], "slow": 50, "long_only": 0})`` (named
parameters: a mapping of name -> scalar or one value per env, or a DataFrame with one column per
parameter; or the kernel's raw params float (n, 4), columns as in ``kernels.strategies``)
returns a ``BacktestResult``: the equity curve of every env from its
first decision bar to the split's last bar, its fill records, how many bars it traded, its
exposure and traded notional. The env's own rules apply unchanged (costs, fills at next open or
close, risk rules); a bankrupt or breaker-stopped env stays as it ended. The env's buffers are
reused; reset it before using it as a Gymnasium env again.

Two kernels, one result: configs without risk rules, working orders or latency run the lean
kernel (``run_strategy_lean_nb``: no observations or rewards, each env through all its bars in
one pass); the rest run the fused step (``run_strategy_nb``). Both give the same equity and fills
bit for bit (tests/envs/test_backtest_runner.py). ``assets=`` (one asset per env: a single-asset
backtest on that column, e.g. a sweep over assets x parameters) needs the lean kernel.

``backtest_metrics(env, result, periods_per_year=...)`` turns a result into the metrics table
(one row per env) and its FIFO round trips.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import NamedTuple

import numba
import numpy as np

from kernels.backtest import (
    compact_records_nb,
    copy_columns_nb,
    run_strategy_lean_nb,
    run_strategy_nb,
    run_strategy_par_nb,
)
from kernels.enums import (
    N_RECORD_F,
    N_RECORD_I,
    Clock,
    OrderType,
    RiskParam,
    SizingRule,
    StopKind,
)
from kernels.step import FROZEN
from kernels.strategies import N_STRATEGY_PARAM, N_STRATEGY_STATE, StrategyId, strategy_warmup
from optrader.envs.vector import FILL_DTYPE, RANGE_ARG_NAMES, fill_records
from optrader.metrics import check_equity, compute_metrics, exposure_turnover, round_trips
from optrader.research_config import STRATEGY_PARAMS, check_strategy_rows

STRATEGIES = {name.lower(): code for name, code in StrategyId._asdict().items()}


class BacktestResult(NamedTuple):
    start_bar: int  # the bar of the first decision (its close); equity[:, 0] is before it
    equity: np.ndarray  # float64 (n, n_steps + 1)
    timestamps: np.ndarray  # int64 (n_steps + 1,) UTC ns of the bars equity is marked at
    fills: np.ndarray  # FILL_DTYPE records of every env, in env then time order
    fill_count: np.ndarray  # int64 (n,) fills per env (all kept)
    steps: np.ndarray  # int64 (n,) bars each env traded (< n_steps if it stopped early)
    assets: np.ndarray  # int64 (n,) the asset each env traded alone, -1: all assets
    exposed_bars: np.ndarray  # int64 (n,) traded bars with gross notional > 0 at the close
    traded_notional: np.ndarray  # float64 (n,) sum of |qty x price| over the env's fills


_NO_FEATURES = np.zeros(0, dtype=np.float32)
# a fill in the lean kernel's pool (FILL_DTYPE) or the step's buffers (float and int columns)
_RECORD_BYTES = max(FILL_DTYPE.itemsize, (N_RECORD_F + N_RECORD_I) * 8)
# default budget of the fill buffers of one run: address space reserved up front, of which only
# the pages the fills are written to become memory (a sweep of fast signals on 100 k bars makes
# ~15 k fills per env; an env past its share of the budget runs again)
FILL_BUFFER_BYTES = 2**30
_LEAN_SCALARS = ("slippage_model", "commission_model", "fill_mode", "max_leverage", "lot_size",
                 "allow_short", "initial_cash", "bankrupt_fraction")  # the lean kernel's, in order


def run_strategy(env, strategy: str, params, *, assets=None, fill_cap: int | None = None,
                 parallel: bool | None = None, memory_budget_mb: float | None = None,
                 lean: bool | None = None, rebalance: str = "on_change") -> BacktestResult:
    """Run ``strategy`` with one parameter row per env over the env's whole split.

    Args:
        env: a data-mode TradingVectorEnv; one env per parameter row.
        strategy: a name of ``STRATEGIES``.
        params: the strategy's parameters by name (``STRATEGY_SPECS``), every one given: a
            mapping name -> a number (every env) or n numbers (one per env), or a DataFrame
            with one column per parameter and n rows; or the kernel's params float (n, <= 4)
            (columns as in ``kernels.strategies``; unused columns 0), or (4,) for every env.
            Ranges and relations (e.g. fast < slow) are checked per env.
        assets: int (n,) the asset each env trades alone (a single-asset backtest on that
            column), or None: every env trades all assets.
        fill_cap: fill records kept per env (None: every possible one within FILL_BUFFER_BYTES).
        parallel: threads over envs (None: when n >= 64).
        memory_budget_mb: refuse (ValueError, before allocating) if the equity curves and fill
            buffers would take more.
        lean: None picks the lean kernel when the config allows it; False forces the fused
            step; True requires the lean kernel.
        rebalance: "on_change" trades an asset only when the strategy's target weight changes
            (a held signal keeps its units, like an order-based backtester; lean kernel only);
            "every_bar" rebalances to the target weight every bar, as the env's step does.
    """
    if env.simulation:
        raise ValueError("run_strategy: simulation mode has no fixed bar range; use a data env")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown name {strategy!r}; known: {sorted(STRATEGIES)}")
    kind = STRATEGIES[strategy]
    n = env.num_envs
    n_assets = env._n_assets
    sparams = _kernel_params(strategy, params, n)
    sel = _check_assets(assets, n, n_assets, kind)
    _check_params(strategy, sparams, 1 if sel is not None else n_assets)
    lo, hi = env.split_range
    start = max(env._first_bar, lo + strategy_warmup(kind, sparams))
    n_steps = env._last_bar - start
    if n_steps < 1:
        raise ValueError(f"run_strategy: the strategy needs {strategy_warmup(kind, sparams)} "
                         f"bars of history and the split has {hi - lo}; nothing left to trade")
    # the observation features only matter to the fused step (which reads its own arguments)
    args = dict(zip(RANGE_ARG_NAMES, env._range_args(env._action_f64, features=_NO_FEATURES),
                    strict=True))
    why_not = lean_blockers(args)
    if rebalance not in ("on_change", "every_bar"):
        raise ValueError(f"rebalance: expected 'on_change' or 'every_bar', got {rebalance!r}")
    if lean is None:
        lean = not why_not
    if lean and why_not:
        raise ValueError(f"run_strategy: lean=True needs a config without {why_not[0]}")
    if rebalance == "on_change" and not lean:
        raise ValueError(f"rebalance: 'on_change' runs on the lean kernel, and this config has "
                         f"{why_not[0] if why_not else 'lean=False'}; use rebalance='every_bar' "
                         f"(backtest.rebalance=every_bar: the env's rule, a rebalance to the "
                         f"target weight every bar) or drop that rule")
    if sel is not None and not lean:
        raise ValueError(f"assets: single-asset envs run on the lean kernel only, and this "
                         f"config has {why_not[0]}; drop assets= (one env per parameter row "
                         f"trades every asset) or drop that rule")
    # the lean kernel always records (at most one market fill per asset and bar); the step
    # records only with execution.record_fills (slots <= 1 when off)
    slots = env._rec_f.shape[1]
    if fill_cap is not None:
        cap = int(fill_cap)
    elif lean:
        cap = _default_cap(n, n_steps, 1 if sel is not None else n_assets)
    else:
        cap = 1 if slots <= 1 else _default_cap(n, n_steps, slots)
    need = estimate_backtest_bytes(n, n_steps, cap)
    if memory_budget_mb is not None and need > memory_budget_mb * 2**20:
        raise ValueError(
            f"backtest: {n} envs x {n_steps + 1} bars need about {need / 2**20:,.0f} MB "
            f"(equity curves {n * (n_steps + 1) * 8 / 2**20:,.0f} MB + fill buffers), over the "
            f"budget of {memory_budget_mb:g} MB (backtest.memory_budget_mb); use fewer "
            f"parameter sets, a shorter range (data.split / data.start, data.end) or a larger "
            f"budget")
    use_par = n >= 64 if parallel is None else parallel
    n_chunks = 4 * numba.get_num_threads() if use_par else 1
    fill_count = np.zeros(n, dtype=np.int64)
    equity = np.empty((n, n_steps + 1))
    exposed = np.zeros(n, dtype=np.int64)
    traded = np.zeros(n)
    steps = np.zeros(n, dtype=np.int64)
    if lean:
        on_change = rebalance == "on_change"
        parts = _run_lean(env, args, kind, sparams, sel, np.arange(n), start, n_steps, n_chunks,
                          on_change, (equity, exposed, traded, steps), fill_count, room=cap)
        if fill_cap is not None and (fill_count > cap).any():
            overflow = fill_count > cap
        else:
            overflow = np.zeros(n, dtype=bool)
            lost = _unrecorded(parts, n)
            if lost.any():
                # envs whose records did not fit the pool (sized from the budget) run again
                # with room for exactly the fills they made; only their records are kept
                rows = np.flatnonzero(lost)
                extra = int(fill_count[rows].sum()) * _RECORD_BYTES
                if memory_budget_mb is not None and need + extra > memory_budget_mb * 2**20:
                    raise RuntimeError(
                        f"run_strategy: envs {rows[:10].tolist()} made up to "
                        f"{int(fill_count[rows].max())} fills; keeping them needs "
                        f"{extra / 2**20:,.0f} MB more than the budget of "
                        f"{memory_budget_mb:g} MB (backtest.memory_budget_mb)")
                scratch = (np.empty((rows.size, 2)), np.zeros(rows.size, dtype=np.int64),
                           np.zeros(rows.size), np.zeros(rows.size, dtype=np.int64))
                again = np.zeros(rows.size, dtype=np.int64)
                parts = [p._replace(kept=p.kept & ~lost[p.envs]) for p in parts]
                parts += _run_lean(env, args, kind, sparams, sel, rows, start, n_steps,
                                   n_chunks, on_change, scratch, again, exact=fill_count[rows])
        fills = _pool_records(parts, fill_count)
    else:
        fills_f = np.zeros((n, cap, N_RECORD_F))
        fills_i = np.zeros((n, cap, N_RECORD_I), dtype=np.int64)
        p_, e = env.portfolio, env.episode
        env._reset_kernel(np.ones(n, dtype=np.bool_), np.full(n, start, dtype=np.int64),
                          env._bars, env._features_flat, p_.acct, p_.position, p_.avg_px_open,
                          e.clock, e.rng, env._obs, env.risk_events, env._orders,
                          *env._reset_scalars)
        sstate = np.zeros((n, N_STRATEGY_STATE, n_assets))
        kernel = run_strategy_par_nb if use_par else run_strategy_nb
        # one episode from `start` to the last bar; a done env stays as it ended
        kernel(n_steps, n_chunks, kind, sparams, sstate, equity, fills_f, fills_i, fill_count,
               exposed, traded,
               *env._range_args(env._action_f64, last_start=start, episode_length=n_steps,
                                reset_start=np.full(n, FROZEN, dtype=np.int64)))
        steps = e.clock[:, Clock.STEP].copy()
        overflow = fill_count > cap
        fills = fill_records(fills_f, fills_i, np.minimum(fill_count, cap))
    if overflow.any():
        worst = int(np.argmax(np.where(overflow, fill_count, -1)))
        raise RuntimeError(f"run_strategy: env {worst} made {int(fill_count[worst])} fills, over "
                           f"the fill_cap of {cap}; pass a larger fill_cap")
    env._reset_done = False  # the env's episodes were consumed: reset before stepping it
    if (steps < n_steps).any():
        equity = pad_stopped(equity, steps)  # an env that stopped has no bars after its last
    if sel is not None:
        fills["asset"] = sel[fills["env"]]  # the lean kernel saw one column: asset 0
    ts = env.market.timestamps[start:start + n_steps + 1]
    return BacktestResult(start, equity, np.asarray(ts), fills, fill_count, steps,
                          sel if sel is not None else np.full(n, -1, dtype=np.int64),
                          exposed, traded)


def lean_blockers(args: dict) -> list[str]:
    """What keeps a config (the step's arguments by name) off the lean kernel; [] if nothing."""
    rp = args["risk_params"]
    out = []
    if args["sizing_rule"] != SizingRule.DIRECT:
        out.append("a position sizing rule (risk.sizing)")
    if np.any(rp[:, RiskParam.MAX_WEIGHT] < args["max_leverage"]):
        out.append("a per-asset weight cap (risk.max_weight)")
    if (args["sl_kind"] != StopKind.NONE or args["tp_kind"] != StopKind.NONE
            or args["trail_kind"] != StopKind.NONE):
        out.append("stop orders (risk stop_loss / take_profit / trailing)")
    for col, name in ((RiskParam.MAX_DRAWDOWN, "risk.max_drawdown"),
                      (RiskParam.MAX_DAILY_LOSS, "risk.max_daily_loss"),
                      (RiskParam.MAINT_MARGIN, "risk.maintenance_margin")):
        if np.any(rp[:, col] > 0.0):
            out.append(f"a portfolio limit ({name})")
    if args["default_order_type"] != OrderType.MARKET or np.any(args["order_sel"] >= 0):
        out.append("limit or stop orders (execution.order_type)")
    if args["ring_w"].shape[1] > 1 or np.any(args["latency"] > 0):
        out.append("latency (execution.latency)")
    return out


class _PoolPart(NamedTuple):
    """Where one lean kernel call put its fill records: env ids (k,), the first pool row of each
    env's records, its fill count (all fills, kept or not), whether all of them were kept, and
    the FILL_DTYPE pool (its env field unset)."""

    envs: np.ndarray
    start: np.ndarray
    count: np.ndarray
    kept: np.ndarray
    pool: np.ndarray


ASSET_BATCH = 16  # single-asset envs: assets whose envs run in one kernel call


def _run_lean(env, args, kind, sparams, sel, rows, start, n_steps, n_chunks, on_change, outs,
              fill_count, *, room: int | None = None, exact=None) -> list[_PoolPart]:
    """The lean kernel over envs ``rows``: row k of each output in ``outs`` (equity, exposed,
    traded, steps) and of ``fill_count`` is env rows[k].

    Fill records go to one pool for the call, split into one region per chunk of envs:
    ``room`` records per env of the chunk, or, with ``exact``, room for exactly exact[k]
    records of env rows[k]. Single-asset envs run ``ASSET_BATCH`` assets at a time, each env on
    a contiguous one-column copy of its asset's bars (read every bar) and on its asset's cost
    series in place (read only at fills)."""
    bars, tradable = _read_only(args["bars"]), _read_only(args["tradable"])
    rest = [args[k] for k in _LEAN_SCALARS]
    if sel is None:
        batches = [(np.arange(rows.size), None)]
    else:
        assets = sel[rows]
        uniq = np.unique(assets)
        batches = [(np.flatnonzero(np.isin(assets, uniq[j:j + ASSET_BATCH])),
                    uniq[j:j + ASSET_BATCH]) for j in range(0, uniq.size, ASSET_BATCH)]
        width = min(ASSET_BATCH, uniq.size)
        column_bars = np.empty((width, bars.shape[0], bars.shape[1], 1))
        column_tradable = np.empty((width, bars.shape[1], 1), dtype=np.bool_)
    plans = []
    base = 0
    for pos, batch_assets in batches:
        k = pos.size
        chunk = -(-k // max(1, min(k, n_chunks)))
        first = np.arange(0, k, chunk)
        if exact is None:
            region = np.diff(np.append(first, k)) * int(room)
        else:
            region = np.add.reduceat(np.asarray(exact)[pos], first)
        region_start = base + np.concatenate([[0], np.cumsum(region)]).astype(np.int64)
        base = int(region_start[-1])
        plans.append((pos, batch_assets, chunk, region_start))
    pool = np.empty(base, dtype=FILL_DTYPE)  # address space; pages only where fills go
    parts = []
    for pos, batch_assets, chunk, region_start in plans:
        k = pos.size
        envs = rows[pos]
        if batch_assets is None:
            columns, column_of = bars[None], np.zeros(k, dtype=np.int64)
            trad, series_col = tradable[None], np.zeros(k, dtype=np.int64)
        else:
            copy_columns_nb(bars, tradable, batch_assets, column_bars, column_tradable)
            columns = _read_only(column_bars[:batch_assets.size])
            trad = _read_only(column_tradable[:batch_assets.size])
            series_col = sel[envs].astype(np.int64)
            column_of = np.searchsorted(batch_assets, series_col).astype(np.int64)
        width = columns.shape[3]
        # consecutive rows (every env, or a batch of an asset-major sweep) are written in
        # place; other row sets go through a copy
        lo = int(pos[0])
        in_place = pos[-1] - lo == k - 1
        out = tuple(x[lo:lo + k] if in_place else np.ascontiguousarray(x[pos]) for x in outs)
        last_w, position, avg_px = (np.zeros((k, width)) for _ in range(3))
        events = np.zeros((k, env.risk_events.shape[1]), dtype=np.int64)
        sstate = np.zeros((k, N_STRATEGY_STATE, width))
        fill_start = np.zeros(k, dtype=np.int64)
        count = np.zeros(k, dtype=np.int64)
        run_strategy_lean_nb(chunk, kind, np.ascontiguousarray(sparams[envs]), sstate, start,
                             n_steps, columns, column_of, args["series"], series_col, trad,
                             np.ascontiguousarray(args["cost_params"][envs]), *rest, on_change,
                             last_w, position, avg_px, events, out[0], pool, region_start,
                             fill_start, count, *out[1:])
        if not in_place:
            for dst, src in zip(outs, out, strict=True):
                dst[pos] = src
        fill_count[pos] = count
        env.risk_events[envs] = events
        region_end = region_start[1:][np.arange(k) // chunk]
        parts.append(_PoolPart(envs, fill_start, count, fill_start + count <= region_end, pool))
    return parts


def _read_only(x: np.ndarray) -> np.ndarray:
    """A read-only view: the kernel then compiles once for market arrays and column copies."""
    v = x.view()
    v.setflags(write=False)
    return v


def _unrecorded(parts: list[_PoolPart], n: int) -> np.ndarray:
    """bool (n,): envs some of whose fill records did not fit their pool region."""
    lost = np.zeros(n, dtype=bool)
    for p in parts:
        lost[p.envs[~p.kept]] = True
    return lost


def _pool_records(parts: list[_PoolPart], fill_count: np.ndarray) -> np.ndarray:
    """FILL_DTYPE records of every env, env-major, from the parts that kept them (each env's
    records in exactly one part). When one pool holds every env's records in env order, they
    are moved down over the gaps in place and the result is a view of the pool (no second copy
    of what can be millions of records); otherwise they are copied out."""
    offset = np.concatenate([[0], np.cumsum(fill_count)])
    total = int(offset[-1])
    envs = np.concatenate([p.envs for p in parts])
    start = np.concatenate([p.start for p in parts])
    one_pool = all(p.pool is parts[0].pool for p in parts)
    if (one_pool and all(p.kept.all() for p in parts) and envs.size == fill_count.size
            and (np.diff(envs) > 0).all() and (offset[envs] <= start).all()
            and (np.diff(start) >= 0).all()):
        pool = parts[0].pool
        compact_records_nb(pool, start, fill_count[envs], offset[envs])
        out = pool[:total]
    else:
        out = np.empty(total, dtype=FILL_DTYPE)
        for p in parts:
            _copy_kept(p, offset, out)
    out["env"] = np.repeat(np.arange(fill_count.size), fill_count)
    return out


def _copy_kept(p: _PoolPart, offset: np.ndarray, out: np.ndarray) -> None:
    """Copy the kept records of part p to out at each env's offset."""
    envs, start, count = p.envs[p.kept], p.start[p.kept], p.count[p.kept]
    if envs.size == 0:
        return
    dst = offset[envs]
    # runs of envs whose records lie back to back in the pool and in the output (an env chunk
    # of consecutive envs is one run) are copied as one slice each
    cut = np.flatnonzero((start[1:] != start[:-1] + count[:-1])
                         | (dst[1:] != dst[:-1] + count[:-1])) + 1
    bounds = np.concatenate([[0], cut, [envs.size]])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        m = int(start[hi - 1] + count[hi - 1] - start[lo])
        out[dst[lo]:dst[lo] + m] = p.pool[start[lo]:start[lo] + m]


def pad_stopped(equity: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Equity float64 (n, T+1) with NaN after each env's last traded bar: row i keeps columns
    0..steps[i] (column steps[i] is the bar it stopped on). A copy; the input is unchanged."""
    equity = np.array(equity, dtype=np.float64)
    steps = np.asarray(steps)
    if steps.shape != (equity.shape[0],):
        raise ValueError(f"steps: expected shape ({equity.shape[0]},) (one per env), got "
                         f"{steps.shape}")
    equity[np.arange(equity.shape[1])[None, :] > steps[:, None]] = np.nan
    return equity


def estimate_backtest_bytes(n_envs: int, n_steps: int, fill_cap: int) -> int:
    """Bytes a run allocates at most: equity curves plus fill buffers (the env itself excluded;
    fill buffers become memory only as fills are written)."""
    return int(n_envs * ((n_steps + 1) * 8 + fill_cap * _RECORD_BYTES))


def backtest_metrics(env, result: BacktestResult, *, periods_per_year: float,
                     risk_free: float = 0.0, params: Mapping | None = None):
    """(metrics DataFrame with one row per env, its TRADE_DTYPE round trips) of a backtest.

    Exposure and turnover come from the run's per-env sums (``exposed_bars``,
    ``traded_notional``), with ``kernels.metrics``' definitions."""
    n = result.equity.shape[0]
    trades = round_trips(result.fills, n, env._n_assets)
    equity = check_equity(result.equity)  # one scan for both calls
    frame = compute_metrics(equity, periods_per_year=periods_per_year, rf_annual=risk_free,
                            trades=trades, params=params)
    exposure, turnover = exposure_turnover(result.exposed_bars, result.traded_notional, equity,
                                           periods_per_year=periods_per_year)
    frame["exposure"] = exposure
    frame["turnover"] = turnover
    return frame, trades


def _kernel_params(name: str, params, n: int) -> np.ndarray:
    """The kernel's params float64 (n, N_STRATEGY_PARAM) from named or raw parameters."""
    if isinstance(params, Mapping) or hasattr(params, "columns"):
        return _named_params(name, params, n)
    sparams = np.zeros((n, N_STRATEGY_PARAM))
    try:
        p = np.asarray(params, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"params: expected numbers (n, <= {N_STRATEGY_PARAM}) or a mapping of "
                        f"parameter names, got {type(params).__name__}") from None
    if p.ndim == 1:
        p = np.broadcast_to(p, (n, p.shape[0]))
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] > N_STRATEGY_PARAM:
        raise ValueError(f"params: expected shape ({n}, <= {N_STRATEGY_PARAM}) (one row per "
                         f"env), got {np.shape(params)}")
    if not np.isfinite(p).all():
        raise ValueError("params: expected finite values, got NaN or inf")
    sparams[:, :p.shape[1]] = p
    used = {spec.column for spec in STRATEGY_PARAMS[name]}
    for col in range(N_STRATEGY_PARAM):
        if col not in used and np.any(sparams[:, col] != 0.0):
            r = int(np.argmax(sparams[:, col] != 0.0))
            cols = ", ".join(f"{s.name}={s.column}" for s in STRATEGY_PARAMS[name]) or "none"
            raise ValueError(f"params[:, {col}]: strategy {name!r} has no parameter in column "
                             f"{col} (its columns: {cols}); expected 0, got "
                             f"{sparams[r, col]:g} at params row {r}")
    return sparams


def _named_params(name: str, params, n: int) -> np.ndarray:
    """Kernel params from a mapping (or DataFrame) of parameter name -> scalar or (n,) values."""
    specs = STRATEGY_PARAMS[name]
    known = [s.name for s in specs]
    given = [str(k) for k in (params.columns if hasattr(params, "columns") else params.keys())]
    missing = [k for k in known if k not in given]
    unknown = [k for k in given if k not in known]
    if missing or unknown:
        parts = []
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, missing or known, n=1)
                hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
            parts.append(f"unknown {', '.join(hints)}")
        if missing:  # with the config's defaults, to copy in
            default = {s.name: s.default for s in specs}
            parts.append(f"missing {', '.join(map(repr, missing))} (the config's defaults: "
                         f"{', '.join(f'{k}={default[k]:g}' for k in missing)})")
        raise ValueError(f"params: strategy {name!r} takes {known or 'no parameters'}; "
                         f"{'; '.join(parts)}")
    if hasattr(params, "columns") and len(params) != n:
        raise ValueError(f"params: expected {n} rows (one per env), got a DataFrame of "
                         f"{len(params)} rows")
    sparams = np.zeros((n, N_STRATEGY_PARAM))
    for spec in specs:
        raw = params[spec.name]
        raw = raw.to_numpy() if hasattr(raw, "to_numpy") else raw
        try:
            v = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"params[{spec.name!r}]: expected a number or {n} numbers, got "
                            f"{raw!r}") from None
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != n):
            raise ValueError(f"params[{spec.name!r}]: expected a number or {n} numbers (one "
                             f"per env), got shape {v.shape}")
        sparams[:, spec.column] = v
    return sparams


def _check_assets(assets, n: int, n_assets: int, kind: int) -> np.ndarray | None:
    if assets is None:
        return None
    a = np.asarray(assets)
    if a.shape != (n,) or a.dtype.kind not in "iu":
        raise ValueError(f"assets: expected an integer array of shape ({n},) (one asset per "
                         f"env), got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n_assets):
        raise ValueError(f"assets: expected asset indices in [0, {n_assets - 1}], got values in "
                         f"[{a.min()}, {a.max()}]")
    if kind == StrategyId.PAIRS:
        raise ValueError("assets: pairs trades two assets; it cannot run one asset per env")
    return a.astype(np.int64)


def _default_cap(n: int, n_steps: int, slots: int) -> int:
    """Fill records kept per env: every possible one (a record per bar and slot) if that fits
    in FILL_BUFFER_BYTES, else the budget's share (a run that overflows it says so)."""
    per_env = FILL_BUFFER_BYTES // (n * _RECORD_BYTES)
    return int(max(16, min(n_steps * slots, per_env)))


def _check_params(name: str, p: np.ndarray, n_assets: int) -> None:
    """Every env's parameters against the strategy's table (``STRATEGY_SPECS``: ranges and
    relations, the config's own check), naming the first offending params row."""
    cols = [spec.column for spec in STRATEGY_PARAMS[name]]
    check_strategy_rows(name, p[:, cols], lambda r: f"params row {r} (env {r})",
                        prefix="params.")
    if name == "pairs" and n_assets < 2:
        raise ValueError(f"pairs: expected at least 2 assets, got {n_assets}")
