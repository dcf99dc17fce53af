"""A whole backtest in one kernel call: every env runs a rule-based strategy (kernels.strategies)
through the fused per-env step, bar after bar, with no Python between bars.

``run_strategy_nb(n_steps, n_chunks, kind, sparams, sstate, equity_out, fills_f, fills_i,
fill_count, <the step's arguments>)``: chunks of envs run in parallel (``prange``), each chunk
through all ``n_steps`` bars on its own thread (envs are independent, so there is no barrier per
bar). Per env and bar: the strategy's weights at close t go into ``action[i]``, then the same
``step_range_nb`` as ``TradingVectorEnv.step`` executes them, so a backtest and an env stepped
from Python with the same weights agree bit for bit.

Outputs: ``equity_out`` float64 (n, n_steps + 1), the equity at the start and after every bar;
``fills_f`` float64 (n, cap, N_RECORD_F) and ``fills_i`` int64 (n, cap, N_RECORD_I), every fill
record of the run in order, and ``fill_count`` int64 (n,) the number of fills each env made
(> cap means the buffer overflowed and the records past cap were not kept). With
``reset_start`` = FROZEN a done env (bankrupt, breaker) stays as it ended: its equity curve
continues flat and ``clock[:, STEP]`` tells how many bars it traded.
"""

import numpy as np
from numba import prange

from kernels.enums import Account, Clock
from kernels.step import _RANGE_ARGS, _compile, step_range_nb
from kernels.strategies import strategy_init_nb, strategy_weights_nb

_RUN_SRC = f"""
def _run_strategy(n_steps, n_chunks, kind, sparams, sstate, equity_out, fills_f, fills_i,
                  fill_count, {_RANGE_ARGS}):
    n = action.shape[0]
    cap = fills_f.shape[1]
    n_chunks = max(1, min(n, n_chunks))
    chunk = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(n, lo + chunk)
        for i in range(lo, hi):
            strategy_init_nb(kind, i, clock[i, BAR], bars, sparams, sstate)
            equity_out[i, 0] = acct[i, EQUITY]
        for k in range(n_steps):
            for i in range(lo, hi):
                strategy_weights_nb(kind, i, clock[i, BAR], bars, sparams, sstate, action)
            step_range_nb(lo, hi, {_RANGE_ARGS})
            for i in range(lo, hi):
                equity_out[i, k + 1] = acct[i, EQUITY]
                for r in range(rec_n[i]):
                    m = fill_count[i]
                    if m < cap:
                        for q in range(fills_f.shape[2]):
                            fills_f[i, m, q] = rec_f[i, r, q]
                        for q in range(fills_i.shape[2]):
                            fills_i[i, m, q] = rec_i[i, r, q]
                    fill_count[i] = m + 1
                rec_n[i] = 0
    return 0
"""
BAR = Clock.BAR
EQUITY = Account.EQUITY
exec(compile(_RUN_SRC, __file__, "exec"), globals())  # a real file name: Numba caches by it
_run_strategy = globals()["_run_strategy"]
_USED_BY_GENERATED = (np, prange, step_range_nb, strategy_init_nb, strategy_weights_nb)

run_strategy_nb = _compile(_run_strategy, "run_strategy_nb", parallel=False)
run_strategy_par_nb = _compile(_run_strategy, "run_strategy_par_nb", parallel=True)
