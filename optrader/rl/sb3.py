"""Stable-Baselines3 ``VecEnv`` over a native Gymnasium vector env (``TradingVectorEnv``).

SB3 steps a ``VecEnv`` and expects its API: a step returns ``(obs, rewards, dones, infos)``
with ``dones = terminations | truncations``, envs reset in the same step (the observation
returned for a finished env is its new episode's first), and ``infos`` is a list of one dict
per env where a finished env's dict holds ``terminal_observation`` (the last observation of
the episode, which PPO bootstraps from on a truncation) and ``TimeLimit.truncated``.

The native env runs with ``autoreset_mode=SAME_STEP``: its kernel writes the final
observation of every finished env and resets it inside the same step, and ``info["final_obs"]``
(an object array, filled for finished envs only) hands those final observations out.

Cost: a per-env dict for every env on every step would cost more than the adapter's whole
budget at 1,024 envs, so envs that did not finish share read-only-by-contract empty dicts
(one per env, made once); only finished envs get a fresh dict, with ``terminal_observation``,
``TimeLimit.truncated``, ``episode`` (``{"r": return, "l": length, "t": seconds since the
adapter was made}``, as SB3's ``Monitor`` writes it, so ``ep_rew_mean`` is logged) and
``equity`` (the episode's final equity). Do not write into the dicts of envs that did not
finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector import VectorEnv as GymVectorEnv
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a Gymnasium vector env in ``SAME_STEP`` autoreset mode.

    Args:
        env: a ``gymnasium.vector.VectorEnv`` (usually ``optrader.make_vec(...,
            autoreset_mode="SameStep")``) whose ``metadata["autoreset_mode"]`` is
            ``AutoresetMode.SAME_STEP`` and whose SAME_STEP info carries ``final_obs`` (and
            optionally ``final_info["equity"]``) for finished envs.

    The spaces are the native env's single-env spaces. ``get_attr``/``env_method`` reach the
    one batched env: an attribute or method belongs to the whole batch, so each requested index
    gets the same value and a method is called once. ``seed(s)`` seeds env ``i`` with ``s + i``
    at the next ``reset()`` (the native env's ``env_seeds``), as SB3's own vec envs do.
    """

    def __init__(self, env: GymVectorEnv):
        if not isinstance(env, GymVectorEnv):
            raise TypeError(f"env: expected a gymnasium.vector.VectorEnv (optrader.make_vec(...)),"
                            f" got {type(env).__name__}")
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"env: expected autoreset_mode=SAME_STEP (SB3 resets finished envs in"
                             f" the step that ends them; make the env with "
                             f"autoreset_mode='SameStep' or use make_sb3_vec_env), got {mode}")
        self.env = env  # before VecEnv.__init__: it reads render_mode through get_attr
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        n = self.num_envs
        self._empty_infos = [{} for _ in range(n)]
        self._ep_return = np.zeros(n)
        self._ep_length = np.zeros(n, dtype=np.int64)
        self._t_start = time.time()
        self._actions: np.ndarray | None = None

    # ---------------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Reset every env (with the seeds of ``seed()`` and the options of ``set_options()``,
        once); returns the observations float32 (n, D)."""
        seeds, options = self._seeds, self._options
        native: dict[str, Any] = {}
        if any(o != options[0] for o in options):
            raise ValueError("set_options: the native env takes one options dict for the batch "
                             "(reset_mask, start_bars, env_seeds as arrays); got different "
                             "dicts per env")
        native.update(options[0])
        seed = None
        if all(s is not None for s in seeds):
            seed = int(seeds[0])
            native.setdefault("env_seeds", np.asarray(seeds, dtype=np.int64))
        elif any(s is not None for s in seeds):
            raise ValueError(f"seeds: expected a seed for every env or for none, got {seeds}")
        obs, info = self.env.reset(seed=seed, options=native or None)
        self._reset_seeds()
        self._reset_options()
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self.reset_infos = list(self._empty_infos)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        """Step every env with the actions of ``step_async``; returns ``(obs float32 (n, D),
        rewards float64 (n,), dones bool (n,), infos list of n dicts)``."""
        obs, rewards, terminations, truncations, info = self.env.step(self._actions)
        dones = terminations | truncations
        self._ep_return += rewards
        self._ep_length += 1
        infos = list(self._empty_infos)  # a new list: a caller may keep the previous one
        done = np.flatnonzero(dones)
        if done.size:
            self._add_finished(infos, done, terminations, truncations, info)
        return obs, rewards, dones, infos

    def _add_finished(self, infos: list, done: np.ndarray, terminations: np.ndarray,
                      truncations: np.ndarray, info: dict) -> None:
        """Fresh info dicts for the finished envs ``done`` (int64 indices), into ``infos``; their
        episode counters restart. Whole-array gathers and one comprehension: the step where a
        whole batch ends together builds a dict per env, about 1 us each."""
        t = round(time.time() - self._t_start, 6)
        final_equity = info.get("final_info", {}).get("equity")
        equity = (final_equity[done].tolist() if final_equity is not None
                  else [None] * done.size)
        fresh = [{"terminal_observation": obs, "TimeLimit.truncated": time_limit,
                  "episode": {"r": r, "l": length, "t": t}, "equity": eq}
                 for obs, time_limit, r, length, eq in zip(
                     info["final_obs"][done].tolist(),
                     (truncations[done] & ~terminations[done]).tolist(),
                     self._ep_return[done].tolist(), self._ep_length[done].tolist(), equity,
                     strict=True)]
        if final_equity is None:
            for d in fresh:
                del d["equity"]
        for i, d in zip(done.tolist(), fresh, strict=True):
            infos[i] = d
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0

    def close(self) -> None:
        self.env.close()

    def render(self, mode: str | None = None):
        """The native env's render (``ansi`` returns its text table, ``human`` prints it)."""
        if mode is not None and mode != self.render_mode:
            return super().render(mode)  # SB3's warning for a mode the env was not made with
        return self.env.render()

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("get_images: the trading env renders text (render_mode "
                                  "'ansi' or 'human'), not rgb_array images")

    # ---------------------------------------------------------------------------------------
    def _indices(self, indices) -> list[int]:
        idx = list(self._get_indices(indices))
        bad = [i for i in idx if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"indices: expected env indices in [0, {self.num_envs - 1}], "
                             f"got {bad}")
        return idx

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The batched env's attribute, once per requested index."""
        idx = self._indices(indices)
        value = getattr(self.env, attr_name)
        return [value] * len(idx)

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Set an attribute of the batched env; it is shared, so only for every env at once."""
        idx = self._indices(indices)
        if sorted(set(idx)) != list(range(self.num_envs)):
            raise ValueError(f"set_attr({attr_name!r}): the native env's attributes belong to "
                             f"the whole batch; expected indices=None (all {self.num_envs} "
                             f"envs), got {idx[:10]}")
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None,
                   **method_kwargs) -> list[Any]:
        """Call the batched env's method once; its result is returned for each index."""
        idx = self._indices(indices)
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class: type, indices=None) -> list[bool]:
        """True for SB3's ``Monitor`` (this adapter writes its ``episode`` info, so
        ``evaluate_policy`` reads returns from it), False for any other wrapper."""
        idx = self._indices(indices)
        return [wrapper_class is Monitor] * len(idx)


def make_sb3_vec_env(cfg=None, num_envs: int = 1, data=None, *, env: str = "training",
                     overrides: Iterable[str] = (), **kwargs) -> SB3VecEnv:
    """An ``SB3VecEnv`` over a new ``TradingVectorEnv`` in SAME_STEP mode.

    Args:
        cfg: a composed config (``optrader.compose``); None composes ``env`` + ``overrides``.
        num_envs: batch size.
        data: as ``optrader.make_vec`` (None: the configured source).
        env, overrides: the mode and Hydra overrides, used when ``cfg`` is None.
        **kwargs: more ``TradingVectorEnv`` arguments (``parallel``, ``per_env``,
            ``max_episode_steps``, ``render_mode``); ``autoreset_mode`` is always SAME_STEP and
            ``copy`` always True (SB3 keeps the last observation across the next step).
    """
    from optrader.envs.vector import TradingVectorEnv

    if not kwargs.get("copy", True):
        raise ValueError("copy: SB3 keeps each step's observations while it takes the next "
                         "step, so the env must return fresh buffers; expected copy=True, got "
                         "False")
    if "autoreset_mode" in kwargs and AutoresetMode(kwargs["autoreset_mode"]) \
            != AutoresetMode.SAME_STEP:
        raise ValueError(f"autoreset_mode: SB3 needs SAME_STEP, got {kwargs['autoreset_mode']!r}")
    kwargs["autoreset_mode"] = AutoresetMode.SAME_STEP
    vec = TradingVectorEnv(num_envs=num_envs, cfg=cfg, data=data, env=env,
                           overrides=tuple(overrides), **kwargs)
    return SB3VecEnv(vec)
