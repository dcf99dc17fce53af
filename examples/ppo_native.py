"""PPO on optrader's native Gymnasium VectorEnv, in one file (after CleanRL's ppo_continuous_action.py).

    python examples/ppo_native.py                       # 2 M env-steps, 256 envs, then evaluation
    python examples/ppo_native.py --num-envs 1024 --overrides execution.commission_bps=5
    python examples/ppo_native.py --help                # every flag of Config, with its docstring

Reads top to bottom: config, seeding, env, agent, preallocated rollout storage, then per
iteration a rollout, GAE and a clipped PPO update with minibatches, then an evaluation of the
trained policy on the validation split against random and buy-and-hold (mean episode return
with its standard error). Needs torch; a CPU build is enough
(``pip install torch --index-url https://download.pytorch.org/whl/cpu``).

Next-step autoreset (the env's default, Gymnasium 1.x): when env i reports done at step t, its
step t+1 ignores the action and returns the reset observation, reward 0 and no flags. That
reset step is no transition of any episode: its row is stored but masked out of GAE and of the
update (``reset_step_mask``). The done step returns the episode's final observation, so the row
of the reset step holds V(final observation), which a truncated episode bootstraps from
(``compute_gae``).

Threads: the env runs its serial kernel and torch one thread by default (``--parallel``,
``--torch-threads``). On a 2-core machine the threaded kernel beside a torch learner stepped at
0.15 M env-steps/s against 2.3 M/s serial (issue 12): its workers wait for cores the learner
holds. The log prints env-steps/s (env + learner) and the share of wall time in ``env.step``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import random
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from torch import nn
from torch.distributions.normal import Normal

import optrader
from optrader.agents.es import buy_and_hold_actor, evaluate_actor, random_actor


@dataclass
class Config:
    seed: int = 1
    """seed of python, numpy and torch, and of the env's episode starts"""
    num_envs: int = 256
    """envs stepped together by one kernel call"""
    num_steps: int = 128
    """steps per env per rollout; the batch is num_envs x num_steps rows"""
    total_timesteps: int = 2_000_000
    """env-steps to train for, rounded down to whole iterations (at least one)"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the iterations"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    num_minibatches: int = 8
    """minibatches per epoch (of the rows that are transitions, reset steps left out)"""
    update_epochs: int = 4
    """passes over the batch per iteration"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    clip_coef: float = 0.2
    """PPO ratio clip"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient norm clip"""
    target_kl: float = 0.0
    """stop the epochs of an iteration once the approximate KL exceeds this (0: never)"""
    hidden: int = 64
    """units of each of the two tanh hidden layers of the actor and the critic"""
    reward_scale: float = 100.0
    """rewards are multiplied by this for the learner only: per-bar log returns are ~1e-2 and
    the critic fits O(1) targets faster; the evaluation reports unscaled returns"""
    parallel: bool = False
    """the threaded env kernel (slower beside a torch learner on few cores, see the docstring)"""
    torch_threads: int = 1
    """torch.set_num_threads: one leaves the other cores to the env and the machine"""
    overrides: list[str] = field(default_factory=list)
    """Hydra overrides of the env, e.g. execution.commission_bps=5 env.episode_length=128"""
    split: list[str] = field(default_factory=lambda: ["data.split.train=0.7",
                                                      "data.split.validation=0.15"])
    """overrides giving held-out bars: train on the first 70 pct of the bars, evaluate on the
    next 15 pct, leave the last 15 pct (test) untouched; pass --split alone to keep the config's"""
    eval_episodes: int = 256
    """validation episodes per policy after training, one per env of one batch (0: skip)"""
    log_every: int = 1
    """print a progress line every this many iterations"""


def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of the dataclass ``cls`` (the string literal after it)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    pairs = zip(body, body[1:], strict=False)
    return {a.target.id: " ".join(b.value.value.split()) for a, b in pairs
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr)
            and isinstance(b.value, ast.Constant)}


def parse_args(argv=None) -> Config:
    """A Config from command-line flags: ``--field-name value`` per field (``--flag`` /
    ``--no-flag`` for booleans, several values for lists)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    docs = field_docs(Config)
    for f in dataclasses.fields(Config):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        kwargs = {"default": default, "help": docs[f.name]}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kwargs["nargs"] = "*"
        else:
            kwargs["type"] = type(default)
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    return Config(**vars(parser.parse_args(argv)))


# ---------------------------------------------------------------------------------------------
# Agent


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Gaussian policy (state-independent log std) and value function, separate tanh MLPs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=1.0))
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, act_dim), std=0.01))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        """(action (B, A), log-prob (B,), entropy (B,), value (B, 1)); samples when action is
        None. Actions are unbounded: the env gets them clipped to [-1, 1]."""
        mean = self.actor_mean(x)
        probs = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


# ---------------------------------------------------------------------------------------------
# Next-step autoreset and GAE


def reset_step_mask(dones: torch.Tensor, done_before: torch.Tensor) -> torch.Tensor:
    """bool (T, N): True where row t of a rollout is a transition, False where it is the reset
    step of a next-step autoreset (env done at step t - 1, or at the last step of the previous
    rollout for t = 0: ``done_before`` bool (N,)). ``dones`` bool (T, N) = terminated | truncated
    as returned by step t."""
    valid = torch.empty_like(dones)
    valid[0] = ~done_before
    valid[1:] = ~dones[:-1]
    return valid


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, terminations: torch.Tensor,
                dones: torch.Tensor, valid: torch.Tensor, next_value: torch.Tensor,
                gamma: float, gae_lambda: float) -> torch.Tensor:
    """Advantages float32 (T, N) by GAE over a next-step-autoreset rollout; 0 on reset steps.

    Row t+1 after a done step t is a reset step whose stored observation is the episode's final
    one, so ``values[t + 1]`` is V(final observation): a truncated episode bootstraps from it, a
    terminated one from 0; nothing flows back across a done step. ``next_value`` (N,) is
    V(observation after the last step). All inputs are (T, N) but next_value; masks are bool.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        v_next = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * (~terminations[t]) - values[t]
        last = (delta + gamma * gae_lambda * (~dones[t]) * last) * valid[t]
        advantages[t] = last
    return advantages


# ---------------------------------------------------------------------------------------------
# Training


def main(cfg: Config) -> dict:
    """Train, log, evaluate. Returns the throughput figures and, with eval_episodes > 0,
    ``eval``: policy -> (mean episode return, standard error) on the validation split."""
    # seeding
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.torch_threads)

    # env: the native VectorEnv. copy=False returns the env's own buffers, overwritten by the
    # next step: every array is copied into the rollout storage before that
    env_cfg = optrader.compose("training", [*cfg.overrides, *cfg.split])
    envs = optrader.make_vec(env_cfg, num_envs=cfg.num_envs, copy=False, parallel=cfg.parallel,
                             autoreset_mode=AutoresetMode.NEXT_STEP)
    if not isinstance(envs.single_action_space, spaces.Box):
        raise TypeError(f"action space: expected Box (action=continuous), got "
                        f"{envs.single_action_space}")
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    agent = Agent(obs_dim, act_dim, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)

    # rollout storage, allocated once
    shape = (cfg.num_steps, cfg.num_envs)
    obs = torch.zeros((*shape, obs_dim))
    actions = torch.zeros((*shape, act_dim))
    logprobs = torch.zeros(shape)
    rewards = torch.zeros(shape)
    values = torch.zeros(shape)
    terminations = torch.zeros(shape, dtype=torch.bool)
    dones = torch.zeros(shape, dtype=torch.bool)
    episode_return = np.zeros(cfg.num_envs)  # unscaled, for the log

    batch_size = cfg.num_envs * cfg.num_steps
    num_iterations = max(1, cfg.total_timesteps // batch_size)
    next_obs = torch.from_numpy(envs.reset(seed=cfg.seed)[0])
    done_before = torch.zeros(cfg.num_envs, dtype=torch.bool)
    env_s, act_s, learn_s, step_s = 0.0, 0.0, 0.0, []
    print(f"PPO: {cfg.num_envs} envs x {cfg.num_steps} steps = {batch_size:,} rows per "
          f"iteration, {num_iterations} iterations, obs {obs_dim}, act {act_dim}, "
          f"parallel={cfg.parallel}, torch threads {torch.get_num_threads()}")
    start = time.perf_counter()
    for iteration in range(1, num_iterations + 1):
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (
                1.0 - (iteration - 1.0) / num_iterations)

        # rollout
        finished = []
        for step in range(cfg.num_steps):
            t0 = time.perf_counter()
            obs[step] = next_obs
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value.flatten()
            env_action = action.clamp_(-1.0, 1.0).numpy()  # the sample stays in storage
            t1 = time.perf_counter()
            o, r, term, trunc, _ = envs.step(env_action)
            t2 = time.perf_counter()
            rewards[step] = torch.from_numpy(r)
            terminations[step] = torch.from_numpy(term)
            torch.logical_or(terminations[step], torch.from_numpy(trunc), out=dones[step])
            next_obs = torch.from_numpy(o)
            episode_return += r  # a reset step adds its reward 0
            done = term | trunc
            if done.any():
                finished.append(episode_return[done].copy())
                episode_return[done] = 0.0
            step_s.append(t2 - t1)
            env_s += t2 - t1
            act_s += time.perf_counter() - t2 + t1 - t0

        # advantages, with the reset steps masked out
        t3 = time.perf_counter()
        valid = reset_step_mask(dones, done_before)
        done_before = dones[-1].clone()
        with torch.no_grad():
            next_value = agent.get_value(next_obs).flatten()
        scaled = rewards * cfg.reward_scale
        advantages = compute_gae(scaled, values, terminations, dones, valid, next_value,
                                 cfg.gamma, cfg.gae_lambda)
        returns = advantages + values

        # update on the transitions only
        rows = torch.nonzero(valid.flatten()).squeeze(1)
        b_obs, b_actions = obs.reshape(-1, obs_dim), actions.reshape(-1, act_dim)
        b_logprobs, b_values = logprobs.flatten(), values.flatten()
        b_advantages, b_returns = advantages.flatten(), returns.flatten()
        mb_size = -(-rows.numel() // cfg.num_minibatches)
        clipfracs = []
        for _epoch in range(cfg.update_epochs):
            order = rows[torch.randperm(rows.numel())]
            for lo in range(0, rows.numel(), mb_size):
                mb = order[lo:lo + mb_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean().item())
                mb_adv = b_advantages[mb]
                if cfg.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(
                    ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                newvalue = newvalue.flatten()
                if cfg.clip_vloss:
                    v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb],
                                                           -cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * torch.max((newvalue - b_returns[mb]) ** 2,
                                             (v_clipped - b_returns[mb]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
                loss = pg_loss - cfg.ent_coef * entropy.mean() + v_loss * cfg.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
            if cfg.target_kl > 0 and approx_kl > cfg.target_kl:
                break
        learn_s += time.perf_counter() - t3

        # logging
        wall = time.perf_counter() - start
        if iteration % cfg.log_every == 0 or iteration == num_iterations:
            ep = np.concatenate(finished) if finished else np.zeros(0)
            ep_text = f"{ep.mean():+.4f} ({ep.size} ep)" if ep.size else "n/a (0 ep)"
            print(f"iter {iteration:4d}/{num_iterations}  {iteration * batch_size / wall:9,.0f} "
                  f"env-steps/s  wall: env.step {env_s / wall:4.0%} policy {act_s / wall:4.0%} "
                  f"update {learn_s / wall:4.0%}  episode return {ep_text}  "
                  f"v_loss {v_loss.item():.4f}  kl {approx_kl.item():.4f}  clipfrac {np.mean(clipfracs):.3f}  "
                  f"std {agent.actor_logstd.exp().mean().item():.3f}", flush=True)
    wall = time.perf_counter() - start
    envs.close()
    steps = np.asarray(step_s)
    result = {"iterations": num_iterations, "env_steps": num_iterations * batch_size,
              "wall_s": wall, "env_steps_per_s": num_iterations * batch_size / wall,
              "env_share": env_s / wall, "policy_share": act_s / wall,
              "update_share": learn_s / wall, "env_only_steps_per_s": steps.size *
              cfg.num_envs / env_s, "step_mean_us": steps.mean() * 1e6,
              "step_p99_us": np.quantile(steps, 0.99) * 1e6}
    print(f"done: {result['env_steps']:,} env-steps in {wall:.1f} s = "
          f"{result['env_steps_per_s']:,.0f} env-steps/s end to end; env.step "
          f"{result['env_share']:.1%} of wall time ({result['env_only_steps_per_s']:,.0f} "
          f"env-steps/s alone, mean {result['step_mean_us']:.0f} us, p99 "
          f"{result['step_p99_us']:.0f} us per batched step), policy "
          f"{result['policy_share']:.1%}, update {result['update_share']:.1%}")

    # evaluation on the validation split: every policy plays the same episode starts (the
    # reset seed draws them), so their differences are paired
    if cfg.eval_episodes > 0:
        eval_cfg = optrader.compose("training", [*cfg.overrides, *cfg.split,
                                                 "data.split.use=validation"])
        eval_envs = optrader.make_vec(eval_cfg, num_envs=cfg.eval_episodes,
                                      parallel=cfg.parallel)
        agent.eval()

        def trained(o: np.ndarray) -> np.ndarray:
            with torch.no_grad():  # the mean action, no exploration noise
                return agent.actor_mean(torch.from_numpy(o)).clamp_(-1.0, 1.0).numpy()

        seed = cfg.seed + 1000  # starts apart from the training resets
        actors = {"trained": trained, "random": random_actor(eval_envs, seed),
                  "buy_and_hold": buy_and_hold_actor(eval_envs)}
        returns = {name: evaluate_actor(eval_envs, actor, cfg.eval_episodes, seed)
                   for name, actor in actors.items()}
        eval_envs.close()
        lo, hi = eval_cfg.data.split.train, eval_cfg.data.split.validation
        print(f"validation split (data.split.train={lo}, validation={hi}): episode return "
              f"(sum of rewards), mean +- standard error over {cfg.eval_episodes} episodes "
              f"(random starts; overlapping episodes make the errors too small)")
        result["eval"] = {}
        for name, x in returns.items():
            se = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else np.nan
            result["eval"][name] = (float(x.mean()), float(se))
            line = f"  {name:13s} {x.mean():+.4f} +- {se:.4f}"
            if name != "trained":
                d = returns["trained"] - x
                d_se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else np.nan
                line += f"   trained - {name}: {d.mean():+.4f} +- {d_se:.4f} (paired)"
            print(line)
    return result


if __name__ == "__main__":
    main(parse_args())
