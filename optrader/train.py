"""Train an agent: ``python -m optrader.train +env=training`` (evolution strategies, the
default) or ``python -m optrader.train +env=training agent=ppo`` (Stable-Baselines3's PPO; needs
``pip install torch==2.13.0 "optrader[rl]"``).

Reads top to bottom: build the env; train until ``agent.budget_steps`` env-steps are used, ES as
generations of ask -> one paired episode per env (one env per population member) -> tell (the
last generation may overshoot by less than one generation), PPO as ``model.learn`` over an SB3
VecEnv of the same env (``optrader.agents.ppo``; whole rollouts of n_steps x num_envs); then
evaluate the trained policy, random actions and buy-and-hold on the same episode starts, on each
market of ``metrics.json``'s ``eval`` (below).

Outputs in the Hydra run dir: ``config.yaml`` (the resolved config), the checkpoint
(``policy.npz`` for ES, see ``optrader.agents.es.save_checkpoint``; ``policy.zip`` for PPO, see
``optrader.agents.ppo.save_checkpoint``), ``metrics.json`` and Hydra's ``train.log``.

Compile time: Numba compiles the kernels on their first use (once per machine, then they load
from its disk cache); ``optrader.compile_status`` shows that on stderr while it happens, and
``train_seconds`` and ``env_steps_per_second`` leave it out (``compile_s`` and ``cache_load_s``
report it), so a first run and a cached run report the same throughput.

Evaluation (``metrics.json``'s ``eval``; each block has ``evaluated_on``, see ``_evaluations``):
training resets draw seeds in [0, EVAL_SEED_BASE) from the agent's generator; evaluation uses
EVAL_SEED_BASE + seed (+ round), so it never reuses a training reset seed, but on the training
split that only picks other starts on the same bars: ``in_sample`` measures fit to the path, not
skill. The held-out figures are ``validation`` (the validation split, when training samples the
train split and the data has one: the synthetic default keeps 15 % of its bars for it) and, for
the synthetic source, ``fresh_path`` (another path of the same process, every bar). In simulation
mode (``+env=simulation``) every episode is a fresh path already (antithetic pairs share one
through ``env_seeds``): the training env's evaluation is ``fresh_path``, and there is no
``in_sample`` or ``validation`` block.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from optrader.agents.es import (
    Actor,
    EvolutionStrategy,
    Policy,
    episode_returns,
    evaluate_actor,
    evaluate_baselines,
    policy_actor,
    save_checkpoint,
)
from optrader.annualisation import annualisation_for
from optrader.cli_errors import HydraCommand
from optrader.compile_status import CompileWatch
from optrader.config import ConfigError, available, config_dir, load_spec

log = logging.getLogger(__name__)

EVAL_SEED_BASE = 2**30
HELD_OUT_DATA_SEED_OFFSET = 1  # synthetic source: also evaluate on the path data.seed + this
# The serial kernel: on this 2-core box the threaded one stalls for milliseconds per step as soon
# as another process holds a core, and the numpy policy forward runs between steps anyway.
ENV_PARALLEL = False


def train(cfg: DictConfig, data=None, progress: bool = True,
          out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train with the composed config ``cfg`` (``optrader.compose``) and evaluate.

    Args:
        cfg: composed config with an ``env`` mode; ``agent`` holds the ES or PPO settings.
        data: market data for ``optrader.make_vec`` (None: the configured source).
        progress: show a rich progress bar (only on a terminal; otherwise log every ~10%) and
            the status while Numba compiles (``optrader.compile_status``; stderr).
        out_dir: if given, write config.yaml, the checkpoint (policy.npz or, for PPO,
            policy.zip) and metrics.json there.

    Returns:
        The metrics written to metrics.json, plus ``policy``: ES's ``Policy`` with ``params``
        (float64 (n_params,), the trained theta), or PPO's ``PPOPolicy`` with ``model`` (the SB3
        PPO).

    Raises:
        ModuleNotFoundError: agent=ppo without torch or stable-baselines3 (one line naming
            ``pip install torch==2.13.0 "optrader[rl]"``), before any env is built.
    """
    with CompileWatch(show=progress) as watch:
        return _train(cfg, data, progress, out_dir, watch)


def _train(cfg: DictConfig, data, progress: bool, out_dir, watch: CompileWatch) -> dict[str, Any]:
    import optrader

    t_start = time.perf_counter()
    agent_cfg = load_spec(cfg).agent  # validated before anything is built
    trainer = TRAINERS[agent_cfg.name]
    if agent_cfg.name == "ppo":
        from optrader.agents.ppo import require_rl

        require_rl()  # one line naming the install command, before any work
    # rollouts read only rewards and flags: skip the per-step info copies (env.info does not
    # change the dynamics; config.yaml keeps the user's value)
    run_cfg = OmegaConf.merge(cfg, {"env": {"info": "none"}})
    env = optrader.make_vec(run_cfg, num_envs=agent_cfg.num_envs, data=data,
                            parallel=ENV_PARALLEL, **trainer.env_kwargs)
    spec, agent = env.config, env.config.agent
    # the loop's seconds leave out Numba compiling and cache loads (first use of each kernel)
    with _Progress(agent.budget_steps, progress, watch, agent.name.upper()) as bar, \
            watch.span() as loop:
        run = trainer.train(env, spec, bar, loop)
    history, used = run.history, run.env_steps
    train_seconds = max(loop.seconds, 1e-9)

    eval_seed = EVAL_SEED_BASE + spec.seed
    evaluation = {"episodes": agent.eval_episodes, "seed": eval_seed,
                  **_evaluations(env, run_cfg, data, run.actor, agent.eval_episodes, eval_seed)}
    metrics = {
        "env_steps": used,
        **run.counts,  # generations (ES) or rollouts (PPO)
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "train_seconds": round(train_seconds, 3),
        "env_steps_per_second": round(used / train_seconds, 1),
        **loop.summary(),  # compile_s, cache_load_s: the loop's, not in train_seconds
        "final_mean_return": history[-1]["mean_return"] if history else None,
        "policy": run.policy_summary,
        # the trained policy and the baselines, each block saying what it was evaluated on
        "eval": evaluation,
        # how metrics of this data are annualised (the returns above are per episode)
        "annualisation": annualisation_for(spec, env.market).as_dict(),
        "history": history,
    }
    log.info("%d env-steps in %.1f s (%.0f env-steps/s; not counted: compile %.1f s, cache "
             "loads %.1f s)", used, train_seconds, used / train_seconds, loop.compile_s,
             loop.cache_load_s)
    for line in _eval_lines(evaluation):
        log.info("%s", line)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        written = run.save(out, env.observation_names)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        log.info("wrote config.yaml, %s, metrics.json to %s", written.name, out)
    env.close()
    return {**metrics, **run.outputs}


def _evaluate_all(env, actor_for: Callable[[Any], Actor], episodes: int,
                  seed: int) -> dict[str, np.ndarray]:
    """Episode returns of the trained policy (``actor_for(env)``) and the baselines, on the
    same episode starts."""
    return {"trained": evaluate_actor(env, actor_for(env), episodes, seed),
            **evaluate_baselines(env, episodes, seed)}


# ---------------------------------------------------------------------------------------------
# Agents: each trains on the env inside the progress bar and the compile watch's span


class _Run(NamedTuple):
    """What a trainer hands back to ``train``."""

    actor: Callable[[Any], Actor]  # env -> deterministic actor of the trained policy
    history: list[dict[str, Any]]  # one row per generation / rollout
    env_steps: int
    counts: dict[str, int]  # {"generations": G} or {"rollouts": R}
    policy_summary: dict[str, Any]  # metrics.json's "policy"
    save: Callable[[Path, Any], Path]  # (run dir, observation names) -> the checkpoint written
    outputs: dict[str, Any]  # extra keys of train()'s result


class _Trainer(NamedTuple):
    train: Callable[..., _Run]  # (env, spec, bar, loop) -> _Run
    env_kwargs: dict[str, Any]  # make_vec arguments the agent needs


def _train_es(env, spec, bar: _Progress, loop) -> _Run:
    """Generations of ask -> one paired episode per env -> tell until the budget is used."""
    agent = spec.agent
    policy = Policy.for_env(env)
    es = EvolutionStrategy.from_config(policy, agent, seed=spec.seed)
    log.info("ES %s policy, %d params, population %d, budget %d env-steps",
             policy.kind, policy.n_params, agent.num_envs, agent.budget_steps)
    history: list[dict[str, Any]] = []
    used = 0
    while used < agent.budget_steps:
        population = es.ask()
        reset_seed = int(es.rng.integers(EVAL_SEED_BASE))
        fitness, steps = episode_returns(env, policy_actor(env, policy, population),
                                         reset_seed, paired=True)
        stats = es.tell(fitness)
        used += steps
        elapsed = max(loop.elapsed(), 1e-9)
        history.append({"generation": es.generation, "env_steps": used,
                        "seconds": round(elapsed, 4),
                        **{k: round(v, 6) for k, v in stats.items()}})
        bar.update(used, used / elapsed, stats["mean_return"])
    theta = es.theta.copy()
    return _Run(
        actor=lambda e: policy_actor(e, policy, theta), history=history, env_steps=used,
        counts={"generations": es.generation},
        policy_summary={"kind": policy.kind, "obs_dim": policy.obs_dim,
                        "act_dim": policy.act_dim, "hidden": policy.hidden,
                        "n_params": policy.n_params},
        save=lambda out, names: save_checkpoint(out / "policy.npz", theta, policy, names),
        outputs={"params": theta, "policy": policy})


def _train_ppo(env, spec, bar: _Progress, loop) -> _Run:
    """SB3's PPO over an SB3VecEnv of ``env`` until the budget is used (whole rollouts)."""
    import torch

    from optrader.agents import ppo
    from optrader.rl.sb3 import SB3VecEnv

    agent = spec.agent
    threads = torch.get_num_threads()
    if agent.torch_threads:
        torch.set_num_threads(agent.torch_threads)
    try:
        model = ppo.make_model(SB3VecEnv(env), agent, spec.seed)
        policy = ppo.policy_of(model, env)
        log.info("PPO %s, %d params, %d envs x %d steps a rollout, budget %d env-steps",
                 policy, policy.n_params, agent.num_envs, agent.n_steps, agent.budget_steps)
        history: list[dict[str, Any]] = []

        def on_rollout(steps: int, stats: dict[str, float]) -> None:
            elapsed = max(loop.elapsed(), 1e-9)
            history.append({"rollout": len(history) + 1, "env_steps": steps,
                            "seconds": round(elapsed, 4),
                            **{k: round(v, 6) if np.isfinite(v) else None
                               for k, v in stats.items()}})
            bar.update(steps, steps / elapsed, stats["mean_return"])

        used = ppo.learn(model, agent.budget_steps, on_rollout)
    finally:
        torch.set_num_threads(threads)
    return _Run(
        actor=lambda e: policy.act, history=history, env_steps=used,
        counts={"rollouts": len(history)},
        policy_summary={"kind": policy.kind, "obs_dim": policy.obs_dim,
                        "act_dim": policy.act_dim, "net_arch": list(policy.net_arch),
                        "activation": policy.activation, "n_params": policy.n_params},
        save=lambda out, names: ppo.save_checkpoint(out / ppo.CHECKPOINT_FILE, model, policy,
                                                    names),
        outputs={"policy": policy, "model": model})


# agent.name -> how it trains; ES plays episodes on reused buffers (copy=False); SB3 keeps each
# step's observations and resets finished envs in the step that ends them
TRAINERS = {"es": _Trainer(_train_es, {"copy": False}),
            "ppo": _Trainer(_train_ppo, {"copy": True, "autoreset_mode": "SameStep"})}


def _summaries(results: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: {"mean": float(r.mean()), "std": float(r.std()),
                   "returns": [round(float(x), 6) for x in r]} for name, r in results.items()}


EVAL_BLOCKS = ("in_sample", "validation", "fresh_path")  # metrics.json's "eval", in this order


def _evaluations(env, run_cfg, data, actor_for, episodes: int,
                 seed: int) -> dict[str, dict[str, Any] | None]:
    """The trained policy and the baselines on every market the run can be judged on, each
    block (or None where it does not apply) saying in ``evaluated_on`` what that was:

    * ``in_sample``: the training env's own split, the bars training sampled (new reset seeds,
      the same bars: an agent that memorised the path scores well here);
    * ``validation``: the validation split, when training sampled the train split and the
      data has validation bars enough for an episode (never sampled in training);
    * ``fresh_path``: synthetic data only: every bar of another path of the same process
      (``data.seed + HELD_OUT_DATA_SEED_OFFSET``); in simulation mode the training env itself,
      whose episodes each generate a new path (there is no in-sample path to evaluate on).
    """
    import optrader

    spec = env.config

    def block(on_env, evaluated_on: str, **where) -> dict[str, Any]:
        return {"evaluated_on": evaluated_on, **where,
                **_summaries(_evaluate_all(on_env, actor_for, episodes, seed))}

    def split_env(**data_keys):
        return optrader.make_vec(OmegaConf.merge(run_cfg, {"data": data_keys}),
                                 num_envs=env.num_envs, data=data, copy=False,
                                 parallel=ENV_PARALLEL)

    out: dict[str, dict[str, Any] | None] = dict.fromkeys(EVAL_BLOCKS)
    if spec.env.mode == "simulation":
        out["fresh_path"] = block(env, "fresh synthetic paths (simulation mode: a new path per "
                                       "episode, from reset seeds training never drew)")
        return out
    use, (lo, hi) = spec.data.split.use, env.split_range
    out["in_sample"] = block(env, f"in-sample: the {use} split, bars {lo}..{hi - 1}, that "
                                  f"training sampled (other reset seeds, the same bars)",
                             split=use, split_range=[lo, hi])
    if use == "train":
        try:
            env_val = split_env(split={"use": "validation"})
        except (ConfigError, ValueError) as exc:
            log.info("no validation evaluation: %s", str(exc).splitlines()[0])
        else:
            lo, hi = env_val.split_range
            out["validation"] = block(env_val, f"the validation split, bars {lo}..{hi - 1}, "
                                               f"never sampled in training",
                                      split="validation", split_range=[lo, hi])
            env_val.close()
    if data is None and spec.data.source == "synthetic":
        # the same process on a path training never saw: the check for overfitting the path
        fresh_seed = spec.data.seed + HELD_OUT_DATA_SEED_OFFSET
        env_out = split_env(seed=fresh_seed, split={"use": "all"})
        out["fresh_path"] = block(env_out, f"a fresh synthetic path (data.seed={fresh_seed}, "
                                           f"all {env_out.market.n_bars} bars) never seen in "
                                           f"training", data_seed=fresh_seed, split="all")
        env_out.close()
    return out


def _eval_lines(evaluation: dict[str, Any]) -> list[str]:
    """One line per evaluation block: what it ran on, then each policy's mean return."""
    return [f"{ev['evaluated_on']}: mean return " +
            ", ".join(f"{k} {ev[k]['mean']:+.4f}" for k in ("trained", "random", "buy_and_hold"))
            for ev in (evaluation[b] for b in EVAL_BLOCKS) if ev is not None]


class _Progress:
    """A rich bar of env-steps with env-steps/s and the mean return; plain log lines when
    disabled or not on a terminal (CI). The bar's label shows the compile status of ``watch``."""

    def __init__(self, total: int, enabled: bool, watch: CompileWatch, label: str = "ES"):
        from contextlib import ExitStack

        from rich.console import Console

        self.total = total
        self.watch = watch
        self.label = label
        self._stack = ExitStack()
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self._next_log = 0.1
        if self.live:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
                TextColumn("{task.fields[steps]} env-steps"),
                TextColumn("{task.fields[sps]:.2f}M/s"),
                TextColumn("return {task.fields[ret]:+.4f}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                refresh_per_second=4)
            self.task = self.progress.add_task(label, total=total, steps=_millions(0, total),
                                               sps=0.0, ret=0.0)

    def __enter__(self):
        if self.live:
            self.progress.start()
            self._stack.callback(self.progress.stop)
            self._stack.enter_context(self.watch.shown_in(self._status))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    def _status(self, text: str | None) -> None:
        self.progress.update(self.task,
                             description=f"{self.label}: {text}" if text else self.label)

    def update(self, steps: int, sps: float, mean_return: float) -> None:
        self.watch.settle()  # plain output: the seconds of a compile that just ended
        if self.live:
            self.progress.update(self.task, completed=min(steps, self.total),
                                 steps=_millions(steps, self.total), sps=sps / 1e6,
                                 ret=mean_return)
        elif steps >= self._next_log * self.total:
            log.info("%d/%d env-steps, %.0f env-steps/s, mean return %+.4f",
                     steps, self.total, sps, mean_return)
            self._next_log = min(1.0, steps / self.total + 0.1)


def _millions(steps: int, total: int) -> str:
    return f"{steps / 1e6:.1f}M/{total / 1e6:.1f}M"


# ---------------------------------------------------------------------------------------------
# Command line


COMMAND = HydraCommand("optrader.train")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@COMMAND.task
def main(cfg: DictConfig) -> None:
    if "env" not in cfg:
        raise ConfigError(f"choose a mode with +env=training (known: "
                          f"{', '.join(available('env'))})")
    from hydra.core.hydra_config import HydraConfig

    out_dir = HydraConfig.get().runtime.output_dir
    metrics = train(cfg, progress=True, out_dir=out_dir)
    lines = [f"optrader.train: {metrics['env_steps']} env-steps in "
             f"{metrics['train_seconds']:.1f} s ({metrics['env_steps_per_second']:,.0f}/s; not "
             f"counted: compile {metrics['compile_s']:.1f} s, cache loads "
             f"{metrics['cache_load_s']:.1f} s); outputs in {out_dir}"]
    lines += [f"  {line}" for line in _eval_lines(metrics["eval"])]
    print("\n".join(lines))


def cli(argv: list[str] | None = None) -> None:
    """``python -m optrader.train [overrides]``: Hydra under the shared error handler
    (``optrader.cli_errors``: one line and exit 2 for a usage, config or data error)."""
    COMMAND.run(main, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    cli()
