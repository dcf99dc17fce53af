"""Validate a trained policy: ``python -m optrader.validate agent.checkpoint=RUN_DIR episodes=K``.

Reads top to bottom: resolve the checkpoint (a ``policy.npz`` of ES, a ``policy.zip`` of PPO,
or the run dir of ``optrader.train`` holding one) and take the trained run's ``data``,
``observation``, ``action``, ``execution``, ``risk`` and ``reward`` groups from its
``config.yaml``, under the keys you set (``optrader.checkpoints``, shared with
``optrader.backtest``); build one env per episode on the
validation split (``data.split.use=validation`` unless you set it); play the trained policy and
each baseline (``validation.baselines``) on the same K episodes; compute per-episode metrics
(``optrader.metrics``), their means with bootstrap intervals (``optrader.validation_stats``), and
the promotion gates on the trained policy.

Episodes: K starts ``round(linspace(first, last_start, K))`` over ``env.start_range`` (every
start leaves room for the observation window before it and the whole episode after it inside
the split), each ``validation.episode_length`` bars (0: ``env.episode_length``), all K run as
one batch. Episode e starts at the close of bar ``start_bar`` (equity column 0 = initial cash)
and ends at the close of ``end_bar = start_bar + steps`` (earlier if it terminated). A position
still open at the end is closed at that close, without cost, for the trade statistics only (the
equity curve already marks it there), so a held position counts as one round trip.

Outputs in ``out_dir`` (the Hydra run dir): ``episodes.parquet``, ``summary.parquet``,
``validation.json`` and ``config.yaml`` (the config actually run). Exit codes of the command
line: 0 every gate passed, 1 a gate failed, 2 a usage or config error.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from kernels.enums import BarField
from optrader.agents.es import buy_and_hold_actor, random_actor
from optrader.annualisation import annualisation_for
from optrader.checkpoints import (
    checkpoint_actor,
    checkpoint_config,
    describe_taken,
    load_checkpoint_file,
    override_keys,
)
from optrader.cli_errors import HydraCommand
from optrader.compile_status import CompileWatch
from optrader.config import ConfigError, config_dir, load_spec
from optrader.metrics import METRIC_NAMES, compute_metrics, round_trips
from optrader.rollouts import Rollout, play_episodes
from optrader.validation_stats import (
    evaluate_gates,
    json_number,
    policy_cis,
    render_report,
    summarize,
    summary_dict,
)

log = logging.getLogger(__name__)

RANDOM_STREAM, BOOTSTRAP_STREAM = 1, 2  # SeedSequence([seed, stream]) per use of cfg.seed
ENV_PARALLEL = False  # see optrader.train: the serial kernel on this 2-core box
SPLIT_HINT = ("optrader.validate plays the data.split.use split (validation unless you set it); "
              "give the data one, e.g. data.split.train=0.8 data.split.validation=0.2 (fractions "
              "of the bars, or end dates; see docs/data.md)")


# ---------------------------------------------------------------------------------------------
# Episodes


def episode_starts(first: int, last_start: int, k: int) -> np.ndarray:
    """K start bars int64 (k,) spread evenly over [first, last_start], both included:
    ``np.rint(np.linspace(first, last_start, k))`` (k = 1: first). ConfigError if there are
    fewer distinct starts than k (repeated episodes would narrow the intervals without adding
    evidence)."""
    if last_start - first + 1 < k:
        raise ConfigError(f"validation.episodes: expected at most {last_start - first + 1} "
                          f"episodes (the distinct start bars {first}..{last_start} of the "
                          f"split), got {k}; lower validation.episodes or "
                          f"validation.episode_length, or enlarge the split")
    return np.rint(np.linspace(first, last_start, k)).astype(np.int64)


def run_episodes(env, actor, starts: np.ndarray, seed: int) -> Rollout:
    """``optrader.rollouts.play_episodes``, with each position still open at an episode's end
    closed by a fill at the end bar's close without commission: trade statistics count it as a
    round trip marked there."""
    ep = play_episodes(env, actor, starts, seed)
    return ep._replace(fills=_with_closes(ep.fills, ep.final_position, starts + ep.steps,
                                          env.market.bars[BarField.CLOSE]))


def _with_closes(fills: np.ndarray, final_pos: np.ndarray, end_bars: np.ndarray,
                 close: np.ndarray) -> np.ndarray:
    """The fills plus, per open position at an episode's end, a closing fill at the end bar's
    close without commission."""
    from optrader.envs.vector import FILL_DTYPE

    env_idx, asset = np.nonzero(final_pos)
    closes = np.zeros(env_idx.size, dtype=FILL_DTYPE)
    closes["env"], closes["asset"], closes["bar"] = env_idx, asset, end_bars[env_idx]
    closes["qty"] = -final_pos[env_idx, asset]
    closes["side"] = np.sign(closes["qty"]).astype(np.int8)
    closes["price"] = close[end_bars[env_idx], asset]
    return np.concatenate([fills, closes])


def episode_metrics(env, ep: Rollout, starts: np.ndarray, periods_per_year: float,
                    risk_free: float):
    """DataFrame, one row per episode: episode, start_bar, end_bar, start_time, end_time
    (UTC), steps, terminated, then every metric of ``optrader.metrics``."""
    import pandas as pd

    n = env.num_envs
    trades = round_trips(ep.fills, n, env.market.n_assets)
    m = compute_metrics(ep.equity, periods_per_year=periods_per_year, rf_annual=risk_free,
                        trades=trades, gross_notional=ep.gross, traded_notional=ep.traded)
    ts = np.asarray(env.market.timestamps)
    end = starts + ep.steps
    head = pd.DataFrame({"episode": np.arange(n), "start_bar": starts, "end_bar": end,
                         "start_time": pd.to_datetime(ts[starts], utc=True),
                         "end_time": pd.to_datetime(ts[end], utc=True), "steps": ep.steps,
                         "terminated": ep.terminated})
    return pd.concat([head, m.reset_index(drop=True)], axis=1)


# ---------------------------------------------------------------------------------------------
# Validation


def validate(cfg: DictConfig, data=None, out_dir: str | Path | None = None,
             progress: bool = True, overrides=None) -> dict[str, Any]:
    """Validate ``agent.checkpoint`` on the validation split against the baselines.

    Args:
        cfg: composed config (``optrader.compose("validation", [...])``).
        data: market data for ``optrader.make_vec`` (None: the configured source).
        out_dir: if given, write episodes.parquet, summary.parquet, validation.json and
            config.yaml there.
        progress: log each policy's episodes as they finish; show the status while Numba
            compiles (``optrader.compile_status``, stderr).
        overrides: the override strings ``cfg`` was composed with: their keys win over the
            checkpoint's config.yaml. None: the keys where ``cfg`` differs from the defaults.

    Returns:
        The contents of validation.json (``passed``, ``gates``, ``summary``, the settings) plus
        ``tables``: ``{"episodes": DataFrame, "summary": DataFrame}``.
    """
    # with progress, Numba's first-use compiling is shown on stderr (optrader.compile_status)
    with CompileWatch(show=progress) as watch:
        return _validate(cfg, data, out_dir, progress, overrides, watch)


def _validate(cfg, data, out_dir, progress, overrides, watch) -> dict[str, Any]:
    import pandas as pd

    ckpt_path, merged, taken, train_cfg = run_config(cfg, overrides)
    spec = load_spec(merged)
    val, seed = spec.validation, int(spec.seed)
    length = val.episode_length or spec.env.episode_length
    env = _make_env(merged, length, val.episodes, data)
    ckpt = load_checkpoint_file(ckpt_path, env)
    trained_length = OmegaConf.select(train_cfg, "env.episode_length") if train_cfg else None
    if spec.observation.portfolio and trained_length not in (None, length):
        log.warning("episodes of %d bars, trained on %d: the time_left observation runs at "
                    "another pace than in training", length, trained_length)
    first, last_start = env.start_range
    starts = episode_starts(first, last_start, val.episodes)
    overlap = max(0.0, 1.0 - (int(np.diff(starts).min()) if starts.size > 1 else length) / length)
    if overlap > 0:
        log.warning("neighbouring episodes share %.0f%% of their bars: the intervals assume "
                    "independent episodes and are too narrow", 100 * overlap)

    actors = {"trained": checkpoint_actor(env, ckpt)}
    for name in val.baselines:
        actors[name] = buy_and_hold_actor(env) if name == "buy_and_hold" else \
            random_actor(env, _stream_seed(seed, RANDOM_STREAM))
    annualisation = annualisation_for(spec, env.market)  # configured, synthetic or inferred
    ppy = annualisation.periods_per_year
    frames = []
    for name, actor in actors.items():
        with watch.span() as run:  # its seconds leave out compiling and cache loads
            frame = episode_metrics(env, run_episodes(env, actor, starts, seed), starts, ppy,
                                    spec.metrics.risk_free)
        frames.append(frame.assign(policy=name)[["policy", *frame.columns]])
        if progress:
            watch.settle()
            log.info("%s: %d episodes in %.2f s, mean total return %+.4f", name, len(starts),
                     run.seconds, frame["total_return"].mean())
    lo, hi = env.split_range
    env.close()

    episodes = pd.concat(frames, ignore_index=True)
    metrics = [m for m in METRIC_NAMES if m in episodes.columns]
    boot_seed = _stream_seed(seed, BOOTSTRAP_STREAM)
    summary = summarize(episodes, metrics, val.bootstrap, val.confidence, boot_seed)
    gates = evaluate_gates(val.gates, policy_cis(summary, "trained"), val.gate_stat)
    split = spec.data.split
    report = {
        "passed": all(g.passed for g in gates),
        "gates": [{**g._asdict(), "value": json_number(g.value)} for g in gates],
        "gate_stat": val.gate_stat, "checkpoint": str(ckpt_path),
        "taken_from_checkpoint_config": taken,
        "policy": {"kind": ckpt.policy.kind, "n_params": ckpt.policy.n_params},
        "mode": spec.env.mode,
        "data": {"source": spec.data.source, "split_range": [lo, hi], "split": {
            "train": split.train, "validation": split.validation, "use": split.use}},
        "episodes": val.episodes, "episode_length": length, "start_range": [first, last_start],
        "starts": starts.tolist(), "max_overlap": round(overlap, 6),
        "baselines": list(val.baselines), "seed": seed, "bootstrap": val.bootstrap,
        "bootstrap_seed": boot_seed, "confidence": val.confidence,
        "periods_per_year": ppy, "annualisation": annualisation.as_dict(),
        "risk_free": spec.metrics.risk_free,
        "summary": summary_dict(summary),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        episodes.to_parquet(out / "episodes.parquet", index=False)
        summary.to_parquet(out / "summary.parquet", index=False)
        (out / "validation.json").write_text(json.dumps(report, indent=1, allow_nan=False))
        (out / "config.yaml").write_text(OmegaConf.to_yaml(merged, resolve=True))
        log.info("wrote episodes.parquet, summary.parquet, validation.json, config.yaml to %s",
                 out)
    return {**report, "tables": {"episodes": episodes, "summary": summary}}


def run_config(cfg: DictConfig, overrides=None):
    """(policy.npz, the config to run, what was taken from the checkpoint's config.yaml as
    ``{"path", "groups": {group: your keys kept}}`` or None, that config.yaml or None).

    ``optrader.checkpoints.checkpoint_config`` takes the checkpoint's groups under your keys;
    then ``data.split.use=validation`` unless you set ``data.split.use``.
    """
    user_spec = load_spec(cfg)  # the user's own config must be valid before anything else
    ck = checkpoint_config(cfg, user_spec.agent.checkpoint, overrides)
    merged, taken = ck.config, None
    if ck.run_config is not None:
        taken = {"path": str(ck.run_config), "groups": ck.taken}
        log.info("from %s: %s", ck.run_config, describe_taken(ck.taken))
    if not ck.user_keys & {"data.split", "data.split.use"}:
        merged = OmegaConf.merge(merged, {"data": {"split": {"use": "validation"}}})
    spec = load_spec(merged)
    if spec.env.mode == "simulation":
        raise ConfigError("env.mode: validation plays fixed bars of the data; expected "
                          "+env=validation, got simulation")
    if spec.seed < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {spec.seed}")
    return ck.path, merged, taken, ck.trained


def _make_env(merged: DictConfig, length: int, episodes: int, data):
    """One env per episode, fill records on; split problems get a hint on data.split.*."""
    import optrader

    run_cfg = OmegaConf.merge(merged, {"env": {"info": "none", "episode_length": length},
                                       "execution": {"record_fills": True}})
    try:
        return optrader.make_vec(run_cfg, num_envs=episodes, data=data, copy=False,
                                 parallel=ENV_PARALLEL)
    except ValueError as exc:
        if str(exc).startswith(("data.split", "data:")):
            short = ", or shorten validation.episode_length" if "too few" in str(exc) else ""
            raise ConfigError(f"{exc}; {SPLIT_HINT}{short}") from None
        raise


def _stream_seed(seed: int, stream: int) -> int:
    """An int seed of its own for one use of cfg.seed (random baseline, bootstrap)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def rewrite_argv(argv: list[str]) -> list[str]:
    """The command line as Hydra should parse it: ``episodes=K`` -> ``validation.episodes=K``;
    ``+env=validation`` unless an env is given; ``data.split.use=validation`` unless set."""
    args = [f"validation.{a}" if a.startswith("episodes=") else a for a in argv]
    keys = override_keys(a for a in args if not a.startswith("-"))
    if "env" not in keys:  # appended: Hydra applies group choices before values anyway
        args.append("+env=validation")
    if not keys & {"data.split", "data.split.use"}:
        args.append("data.split.use=validation")
    return args


COMMAND = HydraCommand("optrader.validate")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@COMMAND.task
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    single = hc.mode != RunMode.MULTIRUN  # a sweep goes on; its validation.json files tell
    report = validate(cfg, out_dir=hc.runtime.output_dir, progress=True,
                      overrides=list(hc.overrides.task))
    render_report(report)
    if single:
        sys.exit(0 if report["passed"] else 1)


def cli(argv: list[str] | None = None) -> None:
    """``python -m optrader.validate``: rewrite the shorthands, run Hydra under the shared error
    handler (``optrader.cli_errors``): exit 0 every gate passed, 1 a gate failed, 2 a usage,
    config or data error (one line), 3 a bug."""
    COMMAND.run(main, sys.argv[1:] if argv is None else list(argv), prepare=rewrite_argv)


if __name__ == "__main__":
    cli()
