"""TradingEnv: a single ``gymnasium.Env`` (what ``gymnasium.make`` returns) over a one-env batch.

Same config, kernels and timing as the vector env; observations are (D,) float32, the action is
(A,) float32 (continuous) or an int / (A,) ints (discrete), and info values are unbatched.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from optrader.envs.vector import TradingVectorEnv


class TradingEnv(gym.Env):
    """One trading env. Keyword arguments as ``TradingVectorEnv`` (env, overrides, cfg, data)."""

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(self, env: str = "training", overrides=(), cfg=None, data=None,
                 render_mode: str | None = None, max_episode_steps: int | None = None):
        self._vec = TradingVectorEnv(num_envs=1, cfg=cfg, data=data, env=env,
                                     overrides=overrides, render_mode=render_mode,
                                     max_episode_steps=max_episode_steps, copy=False,
                                     parallel=False)
        self.render_mode = render_mode
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self.observation_names = self._vec.observation_names
        self.market = self._vec.market
        self.config = self._vec.config
        self._discrete = self._vec._discrete
        self._batch_shape = self._vec.action_space.shape

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._vec.reset(seed=seed, options=options)
        return obs[0].copy(), _unbatch(info)

    def step(self, action):
        a = np.asarray(action)
        if self._discrete and a.ndim == 0:
            a = a.reshape(1)
        if a.size != int(np.prod(self._batch_shape)) or a.ndim > 1:
            raise ValueError(f"action: expected shape {self.action_space.shape} "
                             f"({self.action_space}), got {a.shape}")
        obs, rew, term, trunc, info = self._vec.step(a.reshape(self._batch_shape))
        return obs[0].copy(), float(rew[0]), bool(term[0]), bool(trunc[0]), _unbatch(info)

    def render(self):
        return self._vec.render()

    def close(self):
        self._vec.close()
        super().close()


def _unbatch(info: dict) -> dict:
    return {k: (v[0].copy() if v.ndim > 1 else v[0].item()) for k, v in info.items()
            if not k.startswith("_")}
