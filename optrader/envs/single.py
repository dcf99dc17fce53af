"""TradingEnv: a single ``gymnasium.Env`` (what ``gymnasium.make`` returns) over a one-env batch.

Same config, kernels and timing as the vector env; observations are (D,) float32, the action is
(A,) float32 (continuous) or an int / (A,) ints (discrete), and info values are unbatched.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from kernels.enums import Account
from optrader.envs.vector import TradingVectorEnv


class RenderModeError(TypeError, ValueError):
    """An unsupported ``render_mode``. A TypeError because ``gymnasium.make``'s callers retry
    without ``render_mode`` on one (SB3's ``make_vec_env`` asks for ``rgb_array`` first); a
    ValueError like the vector env's error for the same argument."""


class TradingEnv(gym.Env):
    """One trading env. Keyword arguments as ``TradingVectorEnv`` (env, overrides, cfg, data)."""

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}
    risk_event_names = TradingVectorEnv.risk_event_names  # info["risk_events"]'s entries

    def __init__(self, env: str = "training", overrides=(), cfg=None, data=None,
                 render_mode: str | None = None, max_episode_steps: int | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise RenderModeError(f"render_mode: expected None, 'ansi' or 'human' (a text "
                                  f"table; there is no rgb_array image), got {render_mode!r}")
        self._vec = TradingVectorEnv(num_envs=1, cfg=cfg, data=data, env=env,
                                     overrides=overrides, render_mode=render_mode,
                                     max_episode_steps=max_episode_steps, copy=False,
                                     parallel=False)
        self.render_mode = render_mode
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._action_text = str(self.action_space)  # made now: see TradingVectorEnv
        self.observation_names = self._vec.observation_names
        self.market = self._vec.market
        self.config = self._vec.config
        self._discrete = self._vec._discrete
        self._batch_shape = self._vec.action_space.shape
        self._action_size = int(np.prod(self._batch_shape))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, _ = self._vec.reset(seed=seed, options=options)  # checks first: may raise
        super().reset(seed=None if seed is None else int(seed))
        return obs[0].copy(), self._info()

    def step(self, action):
        a = np.asarray(action)
        if self._discrete and a.ndim == 0:
            a = a.reshape(1)
        if a.ndim > 1 or a.size != self._action_size:
            raise ValueError(f"action: expected shape {self.action_space.shape} "
                             f"({self._action_text}), got {a.shape}")
        vec = self._vec
        if not vec._reset_done:  # also after close()
            raise RuntimeError(vec._not_ready("step"))
        vec._run_step_kernel(a.reshape(self._batch_shape))
        return (vec._obs[0].copy(), float(vec._rewards[0]), bool(vec._terminations[0]),
                bool(vec._truncations[0]), self._info())

    def _info(self) -> dict:
        """Unbatched info read straight from the one-env book (cheaper than unbatching)."""
        level = self._vec._info_level
        if level == "none":
            return {}
        acct = self._vec.portfolio.acct[0]
        if level == "minimal":
            return {"equity": float(acct[Account.EQUITY])}
        info = {"equity": float(acct[Account.EQUITY]), "cash": float(acct[Account.CASH]),
                "position": self._vec.portfolio.position[0].copy(),
                "drawdown": float(acct[Account.DRAWDOWN]),
                "bar": self._vec.bar_of(0),
                "cost": float(acct[Account.COST])}
        if self._vec._events_possible:
            info["risk_events"] = self._vec.risk_events[0].copy()
        return info

    def render(self):
        return self._vec.render()

    def close(self):
        self._vec.close()
        super().close()
