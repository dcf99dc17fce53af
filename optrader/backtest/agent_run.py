"""Backtests of a trained policy: step a backtest-mode env from Python with a checkpoint's
deterministic policy, from the split's first decision bar to its last bar.

``run_agent(env, checkpoint)`` plays the episode with ``optrader.rollouts.play_episodes`` and
returns the same ``BacktestResult`` as ``run_strategy``: equity per bar (flat after an env
stopped), fill records, bars traded, exposed bars (gross notional sum |position| x close > 0 at
the close after the step) and traded notional (sum |qty x price| of the fills). Every env of the batch runs the same policy, so one env is
enough; more give identical rows.

``checkpoint`` is ``agent.checkpoint``: a ``policy.npz`` (ES), a ``policy.zip`` (PPO) or the
training run dir holding one (``optrader.checkpoints.resolve_checkpoint``), or a loaded
Checkpoint (``optrader.agents.es``) or PPOCheckpoint (``optrader.agents.ppo``). The env must
already be built for it: ``optrader.backtest.cli.run_backtest`` takes the trained run's groups
from its ``config.yaml`` (``optrader.checkpoints.checkpoint_config``) before making the env.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from optrader.agents import ppo
from optrader.agents.es import Checkpoint, check_fits
from optrader.backtest.runner import BacktestResult
from optrader.checkpoints import checkpoint_actor, load_checkpoint_file, resolve_checkpoint
from optrader.rollouts import play_episodes


def run_agent(env, checkpoint: str | Path | Checkpoint | ppo.PPOCheckpoint,
              on_step: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Backtest a checkpoint's policy on every env of ``env`` over its whole split.

    Args:
        env: a backtest-mode (``+env=backtest``) data TradingVectorEnv with
            ``execution.record_fills=true``; its buffers are reused (reset it before using it as
            a Gymnasium env again).
        checkpoint: a policy file or run dir (``optrader.checkpoints.resolve_checkpoint``), or
            a loaded Checkpoint or PPOCheckpoint.
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
    elif isinstance(checkpoint, ppo.PPOCheckpoint):
        ckpt = checkpoint
        ppo.check_fits(ckpt, env)
    else:
        path, _ = resolve_checkpoint(checkpoint)
        ckpt = load_checkpoint_file(path, env)
    n = env.num_envs
    start = env._first_bar
    n_steps = env._last_bar - start
    ep = play_episodes(env, checkpoint_actor(env, ckpt),
                       np.full(n, start, dtype=np.int64), spec.seed, on_step)
    equity = ep.equity
    for i in np.flatnonzero(ep.steps < n_steps):
        equity[i, ep.steps[i] + 1:] = equity[i, ep.steps[i]]  # a finished env stays as it ended
    env._reset_done = False  # episodes consumed: the next user must reset
    fills = ep.fills[np.argsort(ep.fills["env"], kind="stable")]  # env, then time
    ts = np.asarray(env.market.timestamps[start:start + n_steps + 1])
    return BacktestResult(start, equity, ts, fills,
                          np.bincount(fills["env"], minlength=n).astype(np.int64), ep.steps,
                          np.full(n, -1, dtype=np.int64), (ep.gross > 0.0).sum(axis=1),
                          np.nansum(ep.traded, axis=1))
