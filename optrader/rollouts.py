"""Play one episode per env with an actor from Python and record what metrics need.

``play_episodes(env, actor, starts, seed)`` resets every env of a data TradingVectorEnv at
``starts`` and steps ``actor(obs) -> actions`` until each env's first done, recording per env the
equity curve, per-bar gross and traded notionals and the fill records. Used by validation
(``optrader.validate``: K episodes per policy) and by checkpoint backtests
(``optrader.backtest.agent_run``: one episode over the whole range). The env must record fills
(``execution.record_fills=true``).

Next-step autoreset: a done env's book holds its final state until its next step, which resets
it; that step's fills and values are not part of its episode and are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from kernels.enums import Account, BarField, Clock


class Rollout(NamedTuple):
    """One batch of episodes, one per env (n envs, L = env.config.env.episode_length)."""

    equity: np.ndarray  # float64 (n, L+1) currency, NaN after an episode's last bar
    gross: np.ndarray  # float64 (n, L) gross notional sum |position| x close per bar, NaN-padded
    traded: np.ndarray  # float64 (n, L) traded notional sum |qty x price| per bar, NaN-padded
    fills: np.ndarray  # FILL_DTYPE, step by step (envs interleaved, each in time order)
    steps: np.ndarray  # int64 (n,) bars played
    terminated: np.ndarray  # bool (n,) ended by a termination (bankrupt, breaker)
    final_position: np.ndarray  # float64 (n, A) units held when each episode ended


def play_episodes(env, actor: Callable[[np.ndarray], np.ndarray], starts: np.ndarray,
                  seed: int, on_step: Callable[[int, int], None] | None = None) -> Rollout:
    """Play one episode per env from ``starts`` (int64 (n,)) with ``actor``; ``on_step(k, L)``
    is called after every step (progress display)."""
    n, length = env.num_envs, env.config.env.episode_length
    close = env.market.bars[BarField.CLOSE]  # (T, A)
    acct, position = env.portfolio.acct, env.portfolio.position
    obs, _ = env.reset(seed=seed, options={"start_bars": starts})
    env.drain_fills()  # nothing should be there; keep the records of this batch only
    equity = np.full((n, length + 1), np.nan)
    equity[:, 0] = acct[:, Account.EQUITY]
    gross, traded = np.full((n, length), np.nan), np.full((n, length), np.nan)
    steps, terminated = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    alive = np.ones(n, dtype=np.bool_)
    final_pos = np.zeros_like(position)
    fills = [env.drain_fills()[:0]]
    for t in range(length):
        obs, _, term, trunc, _ = env.step(actor(obs))
        f = env.drain_fills()
        f = f[alive[f["env"]]]
        fills.append(f)
        bar = env.episode.clock[:, Clock.BAR]
        equity[alive, t + 1] = acct[alive, Account.EQUITY]
        gross[alive, t] = (np.abs(position) * close[bar]).sum(axis=1)[alive]
        traded[alive, t] = np.bincount(f["env"], weights=np.abs(f["qty"] * f["price"]),
                                       minlength=n)[alive]
        steps += alive
        done = alive & (term | trunc)
        terminated |= done & term
        final_pos[done] = position[done]
        alive &= ~done
        if on_step is not None:
            on_step(t + 1, length)
        if not alive.any():
            break
    if alive.any():  # starts leave room for a whole episode: every env truncates by then
        raise RuntimeError(f"play_episodes: envs {np.nonzero(alive)[0][:10].tolist()} did not "
                           f"finish in {length} steps")
    return Rollout(equity, gross, traded, np.concatenate(fills), steps, terminated, final_pos)
