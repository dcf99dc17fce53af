"""Backtests of a trained policy: step a backtest-mode env from Python with a checkpoint's
deterministic policy, from the split's first decision bar to its last bar.

``run_agent(env, checkpoint)`` returns the same ``BacktestResult`` as ``run_strategy``: equity
per bar, fill records (``drain_fills``), bars traded, exposed bars (gross notional
sum |position| x close > 0 at the close after the step) and traded notional
(sum |qty x price| of the fills). Every env of the batch runs the same policy, so one env is
enough; more give identical rows.

``checkpoint`` is ``agent.checkpoint``: a ``policy.npz`` or the training run dir holding one
(``optrader.checkpoints.resolve_checkpoint``), or a loaded Checkpoint. The env must already be
built for it: ``optrader.backtest.cli.run_backtest`` takes the trained run's groups from its
``config.yaml`` (``optrader.checkpoints.checkpoint_config``) before making the env.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from kernels.enums import Account, BarField, Clock
from optrader.agents.es import Checkpoint, check_fits, to_env_actions
from optrader.backtest.runner import BacktestResult
from optrader.checkpoints import load_checkpoint_file, resolve_checkpoint


def run_agent(env, checkpoint: str | Path | Checkpoint,
              on_step: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Backtest a checkpoint's policy on every env of ``env`` over its whole split.

    Args:
        env: a backtest-mode (``+env=backtest``) data TradingVectorEnv with
            ``execution.record_fills=true``; its buffers are reused (reset it before using it as
            a Gymnasium env again).
        checkpoint: a policy file or run dir (``optrader.checkpoints.resolve_checkpoint``), or
            a loaded Checkpoint.
        on_step: called as ``on_step(steps_done, n_steps)`` after every bar (progress display).

    Returns:
        A ``BacktestResult`` with ``assets`` all -1 (every env trades every asset).

    Raises:
        ValueError: the env is not a backtest-mode data env, does not record fills, or the
            checkpoint is missing, unreadable, or does not fit its observation layout or action
            space.
    """
    spec = env.config
    if env.simulation or spec.env.mode != "backtest":
        raise ValueError(f"run_agent: expected a data env in backtest mode (+env=backtest), got "
                         f"env.mode={spec.env.mode!r}")
    if not spec.execution.record_fills:
        raise ValueError("run_agent: expected execution.record_fills=true (fills are part of the "
                         "result), got false")
    if isinstance(checkpoint, Checkpoint):
        ckpt = checkpoint
        check_fits(ckpt, env)
    else:
        path, _ = resolve_checkpoint(checkpoint)
        ckpt = load_checkpoint_file(path, env)
    n = env.num_envs
    start = env._first_bar
    n_steps = env._last_bar - start
    obs, _ = env.reset(seed=spec.seed, options={"start_bars": np.full(n, start, dtype=np.int64)})
    env.drain_fills()
    acct, position = env.portfolio.acct, env.portfolio.position
    close = env.market.bars[BarField.CLOSE]  # (T, A)
    equity = np.empty((n, n_steps + 1))
    equity[:, 0] = acct[:, Account.EQUITY]
    alive = np.ones(n, dtype=np.bool_)
    steps = np.zeros(n, dtype=np.int64)
    exposed = np.zeros(n, dtype=np.int64)
    traded = np.zeros(n)
    fills = []
    k = 0
    while k < n_steps and alive.any():
        actions = to_env_actions(env, ckpt.policy.act(ckpt.params, obs))
        obs, _, terminated, truncated, _ = env.step(actions)
        f = env.drain_fills()
        f = f[alive[f["env"]]]  # a finished env autoresets on its next step: not part of it
        fills.append(f)
        traded += np.bincount(f["env"], weights=np.abs(f["qty"] * f["price"]), minlength=n)
        gross = np.abs(position * close[env.episode.clock[:, Clock.BAR]]).sum(axis=1)
        exposed += alive & (gross > 0.0)
        steps += alive
        equity[:, k + 1] = np.where(alive, acct[:, Account.EQUITY], equity[:, k])
        alive &= ~(terminated | truncated)
        k += 1
        if on_step is not None:
            on_step(k, n_steps)
    equity[:, k + 1:] = equity[:, k:k + 1]  # a finished env stays as it ended
    env._reset_done = False  # episodes consumed: the next user must reset
    all_fills = np.concatenate(fills) if fills else env.drain_fills()[:0]
    all_fills = all_fills[np.argsort(all_fills["env"], kind="stable")]  # env, then time
    ts = np.asarray(env.market.timestamps[start:start + n_steps + 1])
    return BacktestResult(start, equity, ts, all_fills,
                          np.bincount(all_fills["env"], minlength=n).astype(np.int64), steps,
                          np.full(n, -1, dtype=np.int64), exposed, traded)
