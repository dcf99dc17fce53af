"""PPO from Stable-Baselines3 on ``TradingVectorEnv``, through ``optrader.rl.sb3.SB3VecEnv``.

Needs the ``rl`` extra (``pip install torch==2.13.0 "optrader[rl]"``). torch and SB3 are imported
inside the functions that use them, so ``import optrader`` (and this module) never imports torch;
without them ``require_rl`` raises one ModuleNotFoundError line naming that command.

Training (``learn``): SB3's ``PPO("MlpPolicy")`` on one SB3VecEnv over the native env
(``autoreset_mode=SAME_STEP``, ``copy=True``: SB3 keeps each step's observations), separate
policy and value MLPs of ``agent.net_arch``, seeded from the config's seed (Python, numpy and
torch generators; env i resets with ``seed + i``). ``agent.budget_steps`` is rounded up to whole
rollouts of ``n_steps x num_envs`` env-steps.

Checkpoint (``policy.zip``): the zip SB3's ``PPO.save`` writes, so ``PPO.load("policy.zip")``
works, plus an entry ``optrader.json``: ``version``, ``obs_dim``, ``act_dim``, the action space,
``net_arch``, ``activation``, ``log_std_init`` and the observation names (with their sha256).
``load_checkpoint`` rebuilds the policy network from ``optrader.json`` and reads its weights
(``policy.pth``) with ``torch.load(weights_only=True)``: SB3's pickled ``data`` entry is never
unpickled. Its ``PPOPolicy`` gives deterministic actions (the Gaussian's mean clipped to the
action bounds, or the most likely level) for a batch of observations.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from optrader.agents.es import check_fits as check_layout
from optrader.agents.es import env_dims

RL_INSTALL = 'pip install torch==2.13.0 "optrader[rl]"'
CHECKPOINT_FILE = "policy.zip"
META_ENTRY = "optrader.json"  # our entry in SB3's zip; SB3 ignores entries it does not know
WEIGHTS_ENTRY = "policy.pth"  # SB3's: the policy's state_dict
CHECKPOINT_VERSION = 1


def require_rl() -> None:
    """ModuleNotFoundError, one line with the install command, unless torch and SB3 import."""
    try:
        import stable_baselines3  # noqa: F401
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"agent=ppo needs torch and stable-baselines3 (no module "
                                  f"{exc.name!r}); install them with: {RL_INSTALL}",
                                  name=exc.name) from None


# ---------------------------------------------------------------------------------------------
# Policy


def _net_kwargs(net_arch, activation: str, log_std_init: float) -> dict[str, Any]:
    """``policy_kwargs`` of SB3's ActorCriticPolicy: separate pi and vf MLPs of ``net_arch``."""
    import torch

    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
    if activation not in act:
        raise ValueError(f"activation: expected one of {list(act)}, got {activation!r}")
    arch = [int(u) for u in net_arch]
    return {"net_arch": {"pi": arch, "vf": arch}, "activation_fn": act[activation],
            "log_std_init": float(log_std_init)}


class PPOPolicy:
    """A trained SB3 ActorCriticPolicy that acts deterministically, like ES's ``Policy``.

    Args:
        net: the SB3 ``ActorCriticPolicy`` (on cpu).
        obs_dim: D, the observation size.
        act_dim: A, the action outputs (``optrader.agents.es.env_dims``).
        net_arch, activation, log_std_init: how ``net`` was built (the checkpoint's metadata).
    """

    kind = "ppo_mlp"

    def __init__(self, net, obs_dim: int, act_dim: int, net_arch, activation: str,
                 log_std_init: float):
        self.net = net
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.net_arch = tuple(int(u) for u in net_arch)
        self.activation, self.log_std_init = activation, float(log_std_init)
        self.action_space = net.action_space
        self.hidden = self.net_arch[0]  # for the metrics' policy summary, as ES's ``hidden``
        self.n_params = int(sum(p.numel() for p in net.parameters()))

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic env actions for obs float (N, D): float32 (N, A) in the Box bounds, or
        int64 level indices (N,) / (N, A) for a discrete env."""
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape (N, {self.obs_dim}), got {obs.shape}")
        actions, _ = self.net.predict(obs, deterministic=True)  # clipped to a Box's bounds
        if isinstance(self.action_space, spaces.Box):
            return actions.astype(np.float32, copy=False)
        return actions.astype(np.int64, copy=False)

    def __repr__(self) -> str:
        return (f"PPOPolicy(obs_dim={self.obs_dim}, act_dim={self.act_dim}, "
                f"net_arch={list(self.net_arch)}, activation={self.activation!r}, "
                f"n_params={self.n_params})")


def policy_of(model, env) -> PPOPolicy:
    """The ``PPOPolicy`` of an SB3 PPO ``model`` trained with ``agent`` settings on ``env``."""
    agent = env.config.agent
    obs_dim, act_dim = env_dims(env)
    return PPOPolicy(model.policy, obs_dim, act_dim, agent.net_arch, agent.activation,
                     agent.log_std_init)


# ---------------------------------------------------------------------------------------------
# Training


def make_model(venv, agent, seed: int):
    """SB3 ``PPO("MlpPolicy", venv)`` with the hyperparameters of ``agent`` (PPOAgentConfig)."""
    require_rl()
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", venv, learning_rate=agent.learning_rate, n_steps=agent.n_steps,
               batch_size=agent.batch_size, n_epochs=agent.n_epochs, gamma=agent.gamma,
               gae_lambda=agent.gae_lambda, clip_range=agent.clip_range,
               ent_coef=agent.ent_coef, vf_coef=agent.vf_coef,
               max_grad_norm=agent.max_grad_norm,
               policy_kwargs=_net_kwargs(agent.net_arch, agent.activation, agent.log_std_init),
               device=agent.device, seed=int(seed), verbose=0)


# what ``learn`` reports per rollout from SB3's logger (the last update's statistics)
TRAIN_STATS = ("approx_kl", "clip_fraction", "entropy_loss", "value_loss", "policy_gradient_loss",
               "explained_variance", "std")


def learn(model, budget_steps: int,
          on_rollout: Callable[[int, dict[str, float]], None] | None = None) -> int:
    """Run ``model.learn`` for ``budget_steps`` env-steps (whole rollouts); returns the env-steps
    taken.

    ``on_rollout(env_steps, stats)`` is called after each rollout is collected, with
    ``mean_return`` (mean return of the last <= 100 finished episodes, NaN before the first),
    ``episodes`` (finished so far) and the ``TRAIN_STATS`` of the previous update (absent on
    the first rollout).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class _Rollouts(BaseCallback):
        episodes = 0

        def _on_step(self) -> bool:
            self.episodes += int(self.locals["dones"].sum())
            return True

        def _on_rollout_end(self) -> None:
            if on_rollout is None:
                return
            buf = self.model.ep_info_buffer
            stats = {"mean_return": float(np.mean([e["r"] for e in buf])) if buf else np.nan,
                     "episodes": float(self.episodes)}
            logged = self.model.logger.name_to_value
            stats.update({k: float(logged[f"train/{k}"]) for k in TRAIN_STATS
                          if f"train/{k}" in logged})
            on_rollout(int(self.model.num_timesteps), stats)

    model.learn(total_timesteps=int(budget_steps), callback=_Rollouts(), progress_bar=False)
    return int(model.num_timesteps)


# ---------------------------------------------------------------------------------------------
# Checkpoints


class PPOCheckpoint(NamedTuple):
    policy: PPOPolicy
    observation_names: tuple  # one name per observation element


def _space_dict(space) -> dict[str, Any]:
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "low": space.low.tolist(),
                "high": space.high.tolist()}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    raise TypeError(f"action space: expected Box, Discrete or MultiDiscrete, got {space}")


def _space_of(d: dict[str, Any]):
    if d["type"] == "Box":
        return spaces.Box(np.asarray(d["low"], dtype=np.float32),
                          np.asarray(d["high"], dtype=np.float32), tuple(d["shape"]), np.float32)
    if d["type"] == "Discrete":
        return spaces.Discrete(int(d["n"]))
    if d["type"] == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(d["nvec"], dtype=np.int64))
    raise ValueError(f"action space: expected type Box, Discrete or MultiDiscrete, got "
                     f"{d['type']!r}")


def save_checkpoint(path: str | Path, model, policy: PPOPolicy, observation_names) -> Path:
    """``model.save(path)`` (SB3's zip) plus the ``optrader.json`` entry; returns the path."""
    names = [str(x) for x in observation_names]
    if len(names) != policy.obs_dim:
        raise ValueError(f"observation_names: expected {policy.obs_dim} names, got {len(names)}")
    path = Path(path)
    if path.suffix != ".zip":  # SB3 would append .zip
        raise ValueError(f"path: expected a .zip file name, got {str(path)!r}")
    model.save(path)
    meta = {"version": CHECKPOINT_VERSION, "kind": policy.kind, "obs_dim": policy.obs_dim,
            "act_dim": policy.act_dim, "action_space": _space_dict(policy.action_space),
            "net_arch": list(policy.net_arch), "activation": policy.activation,
            "log_std_init": policy.log_std_init, "observation_names": names,
            "observation_names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(META_ENTRY, json.dumps(meta, indent=1))
    return path


def is_ppo_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a zip holding SB3's weights entry (``policy.pth``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return WEIGHTS_ENTRY in z.namelist()


def load_checkpoint(path: str | Path, env=None) -> PPOCheckpoint:
    """Read a ``policy.zip``; with ``env``, raise ValueError unless it fits that env's
    observation layout (size and names) and action space. Weights that are not all finite (a
    diverged run, a damaged file) are a ValueError naming the tensor."""
    require_rl()
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    with zipfile.ZipFile(path) as z:
        missing = sorted({META_ENTRY, WEIGHTS_ENTRY} - set(z.namelist()))
        if missing:
            raise ValueError(f"checkpoint {path}: not an optrader PPO checkpoint, missing the "
                             f"zip entries {missing}")
        meta = json.loads(z.read(META_ENTRY))
        state = torch.load(io.BytesIO(z.read(WEIGHTS_ENTRY)), map_location="cpu",
                           weights_only=True)
    for name, tensor in state.items():
        bad = ~torch.isfinite(tensor)
        if bad.any():
            raise ValueError(f"agent.checkpoint: {path}: the policy weights {name!r} hold "
                             f"{int(bad.sum())} non-finite value(s) of {tensor.numel()} (NaN or "
                             f"inf); the training run diverged or the file is damaged")
    obs_dim = int(meta["obs_dim"])
    obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    net = ActorCriticPolicy(obs_space, _space_of(meta["action_space"]), lambda _: 0.0,
                            **_net_kwargs(meta["net_arch"], meta["activation"],
                                          meta["log_std_init"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # shapes or names that do not match the recorded net_arch
        raise ValueError(f"checkpoint {path}: its weights do not match its optrader.json "
                         f"(net_arch {meta['net_arch']}): {str(exc).splitlines()[0]}") from None
    net.set_training_mode(False)
    policy = PPOPolicy(net, obs_dim, int(meta["act_dim"]), meta["net_arch"], meta["activation"],
                       meta["log_std_init"])
    ckpt = PPOCheckpoint(policy, tuple(str(x) for x in meta["observation_names"]))
    if env is not None:
        check_fits(ckpt, env, path)
    return ckpt


def check_fits(ckpt: PPOCheckpoint, env, source="checkpoint") -> None:
    """Raise ValueError naming expected (env) vs got (checkpoint) if ckpt cannot drive env:
    the action space, then the observation layout (``optrader.agents.es.check_fits``)."""
    want, got = env.single_action_space, ckpt.policy.action_space
    if want != got:
        raise ValueError(f"{source} does not fit this env: action space expected {want} (env), "
                         f"got {got} (checkpoint); check the action group")
    check_layout(ckpt, env, source)
