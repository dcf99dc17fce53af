"""Evolution strategies (OpenAI-ES) for ``TradingVectorEnv``, in numpy: one perturbation per env.

A generation: draw ``P/2`` Gaussian directions ``eps_k``; env ``2k`` runs ``theta + sigma*eps_k``
and env ``2k+1`` runs ``theta - sigma*eps_k`` (antithetic pairs); every env is reset together and
plays one episode; its fitness is the sum of its rewards until its first done. Fitnesses become
centered ranks ``u`` in [-0.5, 0.5] and the ascent direction is
``g = sum_k (u_2k - u_2k+1) eps_k / (P sigma) - weight_decay * theta``, applied by Adam or SGD.

Pairs share their episode start (common random numbers): the two members of a pair see the same
bars, so their fitness difference measures the perturbation, not the market (see
``episode_returns(paired=True)``).

Policy parameters are one flat float64 vector; ``Policy.layout`` names its segments (D = obs size,
A = action dims, H = hidden units), each block row-major:

* ``linear``: ``W (D, A) | b (A,)`` and ``action = tanh(obs @ W + b)``;
* ``mlp``: ``W1 (D, H) | b1 (H,) | W2 (H, A) | b2 (A,)`` and
  ``action = tanh(tanh(obs @ W1 + b1) @ W2 + b2)``.

Actions are target weights in [-1, 1]; for a discrete env each output picks the nearest entry of
``action.levels``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
from gymnasium import spaces

POLICY_KINDS = ("linear", "mlp")
OPTIMIZERS = ("adam", "sgd")
CHECKPOINT_VERSION = 1

Actor = Callable[[np.ndarray], np.ndarray]  # obs (N, D) float32 -> env actions (N, ...)


# ---------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class Policy:
    """Shapes of a deterministic tanh policy; parameters live outside, as flat float64 vectors.

    Args:
        kind: ``linear`` or ``mlp`` (one tanh hidden layer).
        obs_dim: D, the observation size.
        act_dim: A, the number of action outputs (assets).
        hidden: H, hidden units of the mlp (ignored by linear).
    """

    kind: str
    obs_dim: int
    act_dim: int
    hidden: int = 32

    def __post_init__(self):
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy: expected one of {list(POLICY_KINDS)}, got {self.kind!r}")
        for name in ("obs_dim", "act_dim", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"policy.{name}: expected an integer >= 1, got {v!r}")

    @classmethod
    def for_env(cls, env, kind: str | None = None, hidden: int | None = None) -> Policy:
        """The policy shapes of ``env``; kind and hidden default to ``env.config.agent``."""
        agent = env.config.agent
        obs_dim, act_dim = env_dims(env)
        return cls(kind or agent.policy, obs_dim, act_dim,
                   int(hidden if hidden is not None else agent.hidden))

    @cached_property  # a frozen dataclass still has an instance __dict__ for the cache
    def layout(self) -> dict[str, tuple[slice, tuple[int, ...]]]:
        """Segment name -> (slice of the flat vector, block shape), in storage order."""
        d, a, h = self.obs_dim, self.act_dim, self.hidden
        shapes = {"W": (d, a), "b": (a,)} if self.kind == "linear" else \
            {"W1": (d, h), "b1": (h,), "W2": (h, a), "b2": (a,)}
        out, start = {}, 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            out[name] = (slice(start, start + size), shape)
            start += size
        return out

    @cached_property
    def n_params(self) -> int:
        return sum(s.stop - s.start for s, _ in self.layout.values())

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Initial parameters (n_params,) float64: zeros, except a 1/sqrt(D)-scaled mlp W1 so the
        hidden layer is not degenerate; the first action is 0 (flat) either way."""
        theta = np.zeros(self.n_params)
        if self.kind == "mlp":
            s, shape = self.layout["W1"]
            theta[s] = rng.standard_normal(math.prod(shape)) / math.sqrt(self.obs_dim)
        return theta

    def unpack(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Views of the blocks of params (P, n_params): name -> (P, *block shape)."""
        p = params.shape[0]
        return {name: params[:, s].reshape((p, *shape)) for name, (s, shape) in
                self.layout.items()}

    def act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Batched forward, each row with its own parameters.

        Args:
            params: float (P, n_params), or (n_params,) shared by every row.
            obs: float (P, D).

        Returns:
            float64 (P, A) in [-1, 1].
        """
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape (P, {self.obs_dim}), got {obs.shape}")
        params = np.asarray(params, dtype=np.float64)
        if params.ndim == 1:
            params = params[None, :]
        if params.ndim != 2 or params.shape[1] != self.n_params or \
                params.shape[0] not in (1, obs.shape[0]):
            raise ValueError(f"params: expected shape ({obs.shape[0]}, {self.n_params}) or "
                             f"({self.n_params},) for a {self.kind} policy, got {params.shape}")
        x = obs.astype(np.float64)[:, None, :]  # (P, 1, D): batched row-vector matmul
        if self.kind == "linear":
            w = self.unpack(params)
            y = np.matmul(x, w["W"])[:, 0, :] + w["b"]
        else:
            w = self.unpack(params)
            h = np.tanh(np.matmul(x, w["W1"]) + w["b1"][:, None, :])
            y = np.matmul(h, w["W2"])[:, 0, :] + w["b2"]
        return np.tanh(y, out=y)


def env_dims(env) -> tuple[int, int]:
    """(observation size D, action outputs A) of a vector env."""
    obs_space, act_space = env.single_observation_space, env.single_action_space
    if isinstance(act_space, spaces.Box):
        act_dim = int(np.prod(act_space.shape))
    elif isinstance(act_space, spaces.Discrete):
        act_dim = 1
    elif isinstance(act_space, spaces.MultiDiscrete):
        act_dim = int(act_space.nvec.size)
    else:
        raise TypeError(f"action space: expected Box, Discrete or MultiDiscrete, got {act_space}")
    return int(np.prod(obs_space.shape)), act_dim


def to_env_actions(env, y: np.ndarray) -> np.ndarray:
    """Policy outputs (N, A) in [-1, 1] -> what ``env.step`` takes: float32 target weights, or
    the index of the nearest level of ``env.config.action.levels`` for a discrete env."""
    act_space = env.single_action_space
    if isinstance(act_space, spaces.Box):
        return y.astype(np.float32)
    levels = np.asarray(env.config.action.levels, dtype=np.float64)
    idx = np.abs(y[..., None] - levels).argmin(axis=-1)
    return idx[:, 0] if isinstance(act_space, spaces.Discrete) else idx


# ---------------------------------------------------------------------------------------------
# Evolution strategy


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of x (P,) mapped linearly onto [-0.5, 0.5]; they sum to 0. Ties break by index."""
    x = np.asarray(x)
    ranks = np.empty(x.shape[0])
    ranks[np.argsort(x, kind="stable")] = np.arange(x.shape[0])
    return ranks / max(x.shape[0] - 1, 1) - 0.5


class EvolutionStrategy:
    """Antithetic Gaussian ES with ask/tell.

    Args:
        policy: the parameter layout.
        population: P, even; one perturbation per env.
        sigma: perturbation std.
        learning_rate: Adam step size, or SGD multiplier of the gradient estimate.
        weight_decay: L2 pull of theta toward 0, added to the ascent direction.
        optimizer: ``adam`` or ``sgd``.
        seed: seeds ``np.random.default_rng``; the same seed gives the same run.
        theta: initial parameters (n_params,); default ``policy.init(rng)``.
    """

    def __init__(self, policy: Policy, population: int, sigma: float = 0.05,
                 learning_rate: float = 0.03, weight_decay: float = 0.0,
                 optimizer: str = "adam", seed: int = 0, theta: np.ndarray | None = None):
        if isinstance(population, bool) or not isinstance(population, (int, np.integer)) \
                or population < 2 or population % 2:
            raise ValueError(f"population: expected an even integer >= 2 (antithetic pairs), "
                             f"got {population!r}")
        if not sigma > 0 or not learning_rate > 0 or not weight_decay >= 0:
            raise ValueError(f"sigma, learning_rate: expected > 0 and weight_decay >= 0, got "
                             f"{sigma!r}, {learning_rate!r}, {weight_decay!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {optimizer!r}")
        self.policy = policy
        self.population = int(population)
        self.sigma, self.learning_rate = float(sigma), float(learning_rate)
        self.weight_decay, self.optimizer = float(weight_decay), optimizer
        self.rng = np.random.default_rng(seed)
        n = policy.n_params
        self.theta = policy.init(self.rng) if theta is None else \
            np.array(theta, dtype=np.float64).reshape(n)
        self.generation = 0
        self._eps = np.zeros((self.population // 2, n))
        self._pop = np.zeros((self.population, n))
        self._m = np.zeros(n)  # Adam first and second moments
        self._v = np.zeros(n)
        self._asked = False

    @classmethod
    def from_config(cls, policy: Policy, agent, seed: int) -> EvolutionStrategy:
        """Build from an ``AgentConfig`` (``env.config.agent``)."""
        return cls(policy, agent.num_envs, agent.sigma, agent.learning_rate, agent.weight_decay,
                   agent.optimizer, seed)

    def ask(self) -> np.ndarray:
        """The population (P, n_params): row 2k = theta + sigma eps_k, row 2k+1 = theta - sigma
        eps_k. The returned buffer is reused by the next ask."""
        self._eps[:] = self.rng.standard_normal(self._eps.shape)
        np.add(self.theta, self.sigma * self._eps, out=self._pop[0::2])
        np.subtract(self.theta, self.sigma * self._eps, out=self._pop[1::2])
        self._asked = True
        return self._pop

    def tell(self, fitness: np.ndarray) -> dict[str, float]:
        """Update theta from the fitness (P,) of the last ``ask``; returns generation stats."""
        fitness = np.asarray(fitness, dtype=np.float64)
        if not self._asked:
            raise RuntimeError("tell() called without a preceding ask()")
        if fitness.shape != (self.population,):
            raise ValueError(f"fitness: expected shape ({self.population},), got {fitness.shape}")
        if not np.isfinite(fitness).all():
            raise ValueError(f"fitness: expected finite values, got NaN/inf at rows "
                             f"{np.nonzero(~np.isfinite(fitness))[0][:10].tolist()}")
        u = centered_ranks(fitness)
        grad = (u[0::2] - u[1::2]) @ self._eps / (self.population * self.sigma)
        grad -= self.weight_decay * self.theta
        self.generation += 1
        if self.optimizer == "adam":
            b1, b2, t = 0.9, 0.999, self.generation
            self._m = b1 * self._m + (1 - b1) * grad
            self._v = b2 * self._v + (1 - b2) * grad * grad
            step = self.learning_rate * (self._m / (1 - b1**t)) / (
                np.sqrt(self._v / (1 - b2**t)) + 1e-8)
        else:
            step = self.learning_rate * grad
        self.theta += step
        self._asked = False
        return {"mean_return": float(fitness.mean()), "max_return": float(fitness.max()),
                "min_return": float(fitness.min()), "grad_norm": float(np.linalg.norm(grad)),
                "step_norm": float(np.linalg.norm(step)),
                "theta_norm": float(np.linalg.norm(self.theta))}


# ---------------------------------------------------------------------------------------------
# Rollouts and evaluation


def episode_returns(env, actor: Actor, seed: int,
                    paired: bool = False) -> tuple[np.ndarray, int]:
    """Reset every env with ``seed`` and play until each has finished its first episode.

    Args:
        env: a TradingVectorEnv (any autoreset mode).
        actor: obs (N, D) -> env actions.
        seed: reset seed; the same seed gives the same episode starts whatever the actor does.
        paired: envs 2k and 2k+1 start on the same bar, or in simulation mode on the same
            path (common random numbers for antithetic pairs; needs an even num_envs).

    Returns:
        (returns float64 (N,) = sum of rewards up to and including each env's first done,
        env-steps consumed = N x steps taken).
    """
    n = env.num_envs
    obs, _ = env.reset(seed=int(seed))
    if paired:
        obs = _pair_starts(env, seed)
    total = np.zeros(n)
    alive = np.ones(n, dtype=np.bool_)
    steps = 0
    while alive.any():
        obs, reward, terminated, truncated, _ = env.step(actor(obs))
        steps += 1
        total += np.where(alive, reward, 0.0)  # a done env autoresets; its next episode is ignored
        alive &= ~(terminated | truncated)
    return total, steps * n


def _pair_starts(env, seed: int) -> np.ndarray:
    """Reset so env 2k+1 starts on env 2k's bar (seeded draws in ``env.start_range``), or in
    simulation mode on env 2k's path (equal ``env_seeds``); return obs."""
    if env.num_envs % 2:
        raise ValueError(f"paired: expected an even num_envs, got {env.num_envs}")
    rng = np.random.default_rng(seed)
    if getattr(env, "simulation", False):
        draws = rng.integers(0, 2**62, size=env.num_envs // 2)
        obs, _ = env.reset(options={"env_seeds": np.repeat(draws, 2)})
        return obs
    lo, hi = env.start_range
    draws = rng.integers(lo, hi, size=env.num_envs // 2, endpoint=True)
    obs, _ = env.reset(options={"start_bars": np.repeat(draws, 2)})
    return obs


def policy_actor(env, policy: Policy, params: np.ndarray) -> Actor:
    """An actor running ``policy`` with params (n_params,) or (N, n_params) on ``env``."""
    return lambda obs: to_env_actions(env, policy.act(params, obs))


def random_actor(env, seed: int) -> Actor:
    """Uniform random target weights in [-1, 1], or uniform level indices for a discrete env,
    drawn from its own seeded generator."""
    rng = np.random.default_rng(seed)
    n, (_, act_dim) = env.num_envs, env_dims(env)
    if isinstance(env.single_action_space, spaces.Box):
        return lambda obs: rng.uniform(-1.0, 1.0, (n, act_dim)).astype(np.float32)
    shape = env.action_space.shape  # (n,) for Discrete, (n, A) for MultiDiscrete
    n_levels = len(env.config.action.levels)
    return lambda obs: rng.integers(0, n_levels, shape)


def buy_and_hold_actor(env) -> Actor:
    """Always fully long: target weight +1 per asset (the env scales the gross to max_leverage,
    i.e. 1/A of it per asset)."""
    y = np.ones((env.num_envs, env_dims(env)[1]))
    return lambda obs: to_env_actions(env, y)


def evaluate_actor(env, actor: Actor, episodes: int, seed: int) -> np.ndarray:
    """Returns (episodes,) of ``actor``: rounds of num_envs episodes, round r reset with seed + r,
    so two actors evaluated with the same seed see the same episode starts."""
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes: expected an integer >= 1, got {episodes!r}")
    out = []
    for r in range(-(-episodes // env.num_envs)):
        returns, _ = episode_returns(env, actor, seed + r)
        out.append(returns)
    return np.concatenate(out)[:episodes]


def evaluate(env, params: np.ndarray, episodes: int, seed: int,
             policy: Policy | None = None) -> np.ndarray:
    """Episode returns (episodes,) of the policy with flat ``params``; ``policy`` defaults to
    ``Policy.for_env(env)`` (the env config's agent.policy and agent.hidden)."""
    policy = policy or Policy.for_env(env)
    params = np.asarray(params, dtype=np.float64)
    if params.shape != (policy.n_params,):
        raise ValueError(f"params: expected shape ({policy.n_params},) for {policy}, got "
                         f"{params.shape}")
    return evaluate_actor(env, policy_actor(env, policy, params), episodes, seed)


def evaluate_baselines(env, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Returns of ``random`` and ``buy_and_hold`` on the episodes ``evaluate(.., seed)`` plays."""
    return {"random": evaluate_actor(env, random_actor(env, seed), episodes, seed),
            "buy_and_hold": evaluate_actor(env, buy_and_hold_actor(env), episodes, seed)}


# ---------------------------------------------------------------------------------------------
# Checkpoints


class Checkpoint(NamedTuple):
    params: np.ndarray  # float64 (n_params,)
    policy: Policy
    observation_names: tuple  # one name per observation element


def names_hash(names) -> str:
    """sha256 hex of the observation names joined by newlines."""
    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()


def save_checkpoint(path: str | Path, params: np.ndarray, policy: Policy,
                    observation_names) -> Path:
    """Write params and the policy metadata to ``path`` (.npz, loadable without pickle)."""
    params = np.asarray(params, dtype=np.float64)
    if params.shape != (policy.n_params,):
        raise ValueError(f"params: expected shape ({policy.n_params},), got {params.shape}")
    names = [str(x) for x in observation_names]
    if len(names) != policy.obs_dim:
        raise ValueError(f"observation_names: expected {policy.obs_dim} names, got {len(names)}")
    path = Path(path)
    with open(path, "wb") as fh:  # a file object keeps numpy from appending .npz
        np.savez(fh, params=params, policy=np.array(policy.kind), obs_dim=policy.obs_dim,
                 act_dim=policy.act_dim, hidden=policy.hidden,
                 observation_names=np.array(names, dtype=str),
                 observation_names_sha256=np.array(names_hash(names)),
                 version=CHECKPOINT_VERSION)
    return path


def load_checkpoint(path: str | Path, env=None) -> Checkpoint:
    """Read a checkpoint; with ``env``, raise ValueError unless it fits that env's observation
    layout (size and names) and action dims."""
    with np.load(path, allow_pickle=False) as z:
        missing = {"params", "policy", "obs_dim", "act_dim", "hidden",
                   "observation_names"} - set(z.files)
        if missing:
            raise ValueError(f"checkpoint {path}: not an optrader ES checkpoint, missing "
                             f"{sorted(missing)}")
        policy = Policy(str(z["policy"]), int(z["obs_dim"]), int(z["act_dim"]), int(z["hidden"]))
        ckpt = Checkpoint(z["params"].astype(np.float64), policy,
                          tuple(str(x) for x in z["observation_names"]))
    if ckpt.params.shape != (policy.n_params,):
        raise ValueError(f"checkpoint {path}: params shape {ckpt.params.shape} does not match "
                         f"its {policy.kind} policy ({policy.n_params} params)")
    if env is not None:
        check_fits(ckpt, env, path)
    return ckpt


def check_fits(ckpt: Checkpoint, env, source="checkpoint") -> None:
    """Raise ValueError naming expected (env) vs got (checkpoint) if ckpt cannot drive env."""
    obs_dim, act_dim = env_dims(env)
    where = f"{source} does not fit this env"
    if ckpt.policy.act_dim != act_dim:
        raise ValueError(f"{where}: action dims expected {act_dim} (env), got "
                         f"{ckpt.policy.act_dim} (checkpoint)")
    if ckpt.policy.obs_dim != obs_dim:
        raise ValueError(f"{where}: observation size expected {obs_dim} (env), got "
                         f"{ckpt.policy.obs_dim} (checkpoint); check observation.window, "
                         f"observation.features, observation.portfolio and the assets")
    names = tuple(getattr(env, "observation_names", ckpt.observation_names))
    if names != ckpt.observation_names:
        i = next(k for k, (a, b) in enumerate(zip(names, ckpt.observation_names, strict=True))
                 if a != b)
        raise ValueError(f"{where}: observation {i} expected {names[i]!r} (env), got "
                         f"{ckpt.observation_names[i]!r} (checkpoint)")
