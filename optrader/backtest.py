"""Backtests: every env of a TradingVectorEnv runs a rule-based strategy over the whole bar range
of its data split in one kernel call (``kernels.backtest``), one env per parameter set.

``run_strategy(env, "sma_cross", params)`` with params float (n, 4) (columns as documented in
``kernels.strategies``) returns a ``BacktestResult``: the equity curve of every env from its
first decision bar to the split's last bar, its fill records and how many bars it traded. The
env's own rules apply unchanged (costs, fills at next open or close, risk rules); a bankrupt or
breaker-stopped env stays as it ended. The env's buffers are reused; reset it before using it
as a Gymnasium env again.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from kernels.backtest import run_strategy_nb, run_strategy_par_nb
from kernels.enums import N_RECORD_F, N_RECORD_I, Clock
from kernels.step import FROZEN
from kernels.strategies import N_STRATEGY_PARAM, N_STRATEGY_STATE, StrategyId, strategy_warmup
from optrader.envs.vector import fill_records

STRATEGIES = {name.lower(): code for name, code in StrategyId._asdict().items()}


class BacktestResult(NamedTuple):
    start_bar: int  # the bar of the first decision (its close); equity[:, 0] is before it
    equity: np.ndarray  # float64 (n, n_steps + 1)
    timestamps: np.ndarray  # int64 (n_steps + 1,) UTC ns of the bars equity is marked at
    fills: np.ndarray  # FILL_DTYPE records of every env, in env then time order
    fill_count: np.ndarray  # int64 (n,) fills per env (all kept)
    steps: np.ndarray  # int64 (n,) bars each env traded (< n_steps if it stopped early)


def run_strategy(env, strategy: str, params, *, fill_cap: int | None = None,
                 parallel: bool | None = None) -> BacktestResult:
    """Run ``strategy`` with one parameter row per env over the env's whole split."""
    if env.simulation:
        raise ValueError("run_strategy: simulation mode has no fixed bar range; use a data env")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown name {strategy!r}; known: {sorted(STRATEGIES)}")
    kind = STRATEGIES[strategy]
    n = env.num_envs
    sparams = np.zeros((n, N_STRATEGY_PARAM))
    p = np.asarray(params, dtype=np.float64)
    if p.ndim == 1:
        p = np.broadcast_to(p, (n, p.shape[0]))
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] > N_STRATEGY_PARAM:
        raise ValueError(f"params: expected shape ({n}, <= {N_STRATEGY_PARAM}) (one row per "
                         f"env), got {np.shape(params)}")
    if not np.isfinite(p).all():
        raise ValueError("params: expected finite values, got NaN or inf")
    sparams[:, :p.shape[1]] = p
    _check_params(kind, sparams, env._n_assets)
    lo, hi = env.split_range
    start = max(env._first_bar, lo + strategy_warmup(kind, sparams))
    n_steps = env._last_bar - start
    if n_steps < 1:
        raise ValueError(f"run_strategy: the strategy needs {strategy_warmup(kind, sparams)} "
                         f"bars of history and the split has {hi - lo}; nothing left to trade")
    p_, e = env.portfolio, env.episode
    mask = np.ones(n, dtype=np.bool_)
    env._reset_kernel(mask, np.full(n, start, dtype=np.int64), env._bars, env._features_flat,
                      p_.acct, p_.position, p_.avg_px_open, e.clock, e.rng, env._obs,
                      env.risk_events, env._orders, *env._reset_scalars)
    cap = int(fill_cap) if fill_cap is not None else _default_cap(n, n_steps,
                                                                  env._rec_f.shape[1])
    fills_f = np.zeros((n, cap, N_RECORD_F))
    fills_i = np.zeros((n, cap, N_RECORD_I), dtype=np.int64)
    fill_count = np.zeros(n, dtype=np.int64)
    equity = np.empty((n, n_steps + 1))
    sstate = np.zeros((n, N_STRATEGY_STATE, env._bars.shape[2]))
    use_par = n >= 64 if parallel is None else parallel
    kernel = run_strategy_par_nb if use_par else run_strategy_nb
    n_chunks = 4 * numba.get_num_threads() if use_par else 1
    # one episode from `start` to the last bar; a done env stays as it ended
    kernel(n_steps, n_chunks, kind, sparams, sstate, equity, fills_f, fills_i, fill_count,
           *env._range_args(env._action_f64, last_start=start, episode_length=n_steps,
                            reset_start=np.full(n, FROZEN, dtype=np.int64)))
    if (fill_count > cap).any():
        raise RuntimeError(f"run_strategy: env {int(np.argmax(fill_count))} made "
                           f"{int(fill_count.max())} fills, more than fill_cap={cap}; pass a "
                           f"larger fill_cap")
    env._reset_done = False  # the env's episodes were consumed: reset before stepping it
    fills = fill_records(fills_f, fills_i, fill_count)
    ts = env.market.timestamps[start:start + n_steps + 1]
    return BacktestResult(start, equity, np.asarray(ts), fills, fill_count,
                          e.clock[:, Clock.STEP].copy())


FILL_BUFFER_BYTES = 256 * 2**20  # default budget of the fill buffers of one run


def _default_cap(n: int, n_steps: int, slots: int) -> int:
    """Fill records kept per env: every possible one (a record per bar and slot) if that fits
    in FILL_BUFFER_BYTES, else the budget's share (a run that overflows it says so)."""
    if slots <= 1:  # execution.record_fills is off: nothing is recorded
        return 1
    per_env = FILL_BUFFER_BYTES // (n * (N_RECORD_F + N_RECORD_I) * 8)
    return int(max(16, min(n_steps * slots, per_env)))


def _check_params(kind: int, p: np.ndarray, n_assets: int) -> None:
    def whole(col, name, lo=1):
        v = p[:, col]
        if not (np.all(v == np.round(v)) and np.all(v >= lo)):
            raise ValueError(f"params[:, {col}] ({name}): expected whole bars >= {lo}, got "
                             f"{v[(v != np.round(v)) | (v < lo)][:5].tolist()}")

    if kind in (StrategyId.SMA_CROSS, StrategyId.EMA_CROSS):
        whole(0, "fast")
        whole(1, "slow")
    elif kind in (StrategyId.ZSCORE, StrategyId.BOLLINGER, StrategyId.MOMENTUM, StrategyId.RSI,
                  StrategyId.PAIRS):
        whole(0, "lookback", 2 if kind in (StrategyId.ZSCORE, StrategyId.BOLLINGER,
                                           StrategyId.PAIRS) else 1)
    if kind == StrategyId.PAIRS and n_assets < 2:
        raise ValueError(f"pairs: expected at least 2 assets, got {n_assets}")
    if kind == StrategyId.RANDOM and not np.all((p[:, 0] >= 0) & (p[:, 0] <= 1)):
        raise ValueError("params[:, 0] (p_change): expected probabilities in [0, 1]")
