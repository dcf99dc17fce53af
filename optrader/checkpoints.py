"""Checkpoints of ``optrader.train`` and the config they were trained with, for every command
that runs one (``optrader.validate``, ``optrader.backtest``).

``agent.checkpoint`` is a policy file (``policy.npz`` of ES, ``policy.zip`` of PPO) or the run
dir of ``optrader.train`` holding one (``resolve_checkpoint``); ``load_checkpoint_file`` reads
either (by content, not name) and ``checkpoint_actor`` gives its deterministic actor. When the ``config.yaml`` that training wrote sits beside it,
``checkpoint_config`` takes its ``data``, ``observation``, ``action``, ``execution``, ``risk`` and
``reward`` groups (``CHECKPOINT_GROUPS``), so the policy runs on the observation layout, action
space, market, costs, risk rules and reward it was trained with. Your keys win:

* a group choice (``execution=realistic``) keeps your whole group;
* a key under a group (``execution.commission_bps=5``, ``data.split.use=test``) keeps your value
  on top of the trained group; ``~key`` removes it from the trained group too.

Your keys are the override strings the config was composed with (``override_keys``); without
them, the keys where the config differs from the default composition of its mode
(``inferred_user_keys``), which cannot tell a default you set on purpose. Every other group
(``env``, ``agent``, ``backtest``, ``validation``, ...) and ``seed`` stay yours.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from optrader.config import ConfigError, available, compose

CHECKPOINT_FILE = "policy.npz"
CHECKPOINT_FILES = (CHECKPOINT_FILE, "policy.zip")  # ES (numpy), PPO (Stable-Baselines3)
RUN_CONFIG_FILE = "config.yaml"
# what a policy's input and output, and the market and costs it learned on, depend on
CHECKPOINT_GROUPS = ("data", "observation", "action", "execution", "risk", "reward")
_EXPECTED = (f"expected a {CHECKPOINT_FILE} or the run dir of `python -m optrader.train "
             f"+env=training` holding one (a policy.zip for agent=ppo)")


class CheckpointConfig(NamedTuple):
    """What ``checkpoint_config`` found and the config to run."""

    path: Path  # the policy file
    run_config: Path | None  # the run's config.yaml beside it, None if there is none
    config: DictConfig  # the config to run: yours with the groups taken from run_config
    taken: dict[str, list[str]]  # group taken -> your keys kept in it; {} without run_config
    trained: DictConfig | None  # the run's config (None without run_config)
    user_keys: set[str]  # the keys counted as yours (override_keys or inferred_user_keys)


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path | None]:
    """(the policy file, the run's config.yaml beside it or None) of ``agent.checkpoint``.

    ``path`` is a policy file or a directory holding ``policy.npz`` or ``policy.zip`` (one of
    them); ConfigError otherwise.
    """
    if not str(path).strip():
        raise ConfigError(f"agent.checkpoint: {_EXPECTED}, got ''; pass "
                          f"agent.checkpoint=outputs/DATE/TIME")
    given = Path(path).expanduser()
    p = given
    if given.is_dir():
        found = [given / f for f in CHECKPOINT_FILES if (given / f).is_file()]
        if len(found) != 1:
            what = f"no {CHECKPOINT_FILE} in that directory" if not found else \
                f"both {' and '.join(CHECKPOINT_FILES)} in that directory; name the file"
            raise ConfigError(f"agent.checkpoint: {_EXPECTED}, got the directory "
                              f"{str(path)!r} ({what})")
        p = found[0]
    if not p.is_file():
        raise ConfigError(f"agent.checkpoint: {_EXPECTED}, got {str(path)!r} (no such file or "
                          f"directory)")
    config = p.parent / RUN_CONFIG_FILE
    return p, (config if config.is_file() else None)


def checkpoint_config(cfg: DictConfig, checkpoint: str | Path,
                      overrides: Iterable[str] | None = None) -> CheckpointConfig:
    """``cfg`` with the ``CHECKPOINT_GROUPS`` of the checkpoint's run config, under your keys.

    Args:
        cfg: the composed config of the command.
        checkpoint: ``agent.checkpoint`` (``resolve_checkpoint``).
        overrides: the override strings ``cfg`` was composed with; their keys win over the run
            config. None: the keys where ``cfg`` differs from its mode's defaults.

    Returns:
        A ``CheckpointConfig``; without a run config, ``config`` is ``cfg`` and ``taken`` {}.
    """
    path, run_config = resolve_checkpoint(checkpoint)
    keys = override_keys(overrides) if overrides is not None else inferred_user_keys(cfg)
    if run_config is None:
        return CheckpointConfig(path, None, cfg, {}, None, keys)
    trained = load_run_config(run_config)
    merged, taken = take_checkpoint_groups(cfg, trained, keys)
    return CheckpointConfig(path, run_config, merged, taken, trained, keys)


def load_run_config(path: str | Path) -> DictConfig:
    """The ``config.yaml`` of a training run, checked: valid YAML, a mapping, each of
    ``CHECKPOINT_GROUPS`` it has a mapping, interpolations resolvable. ConfigError naming the
    file otherwise."""
    import yaml
    from omegaconf.errors import OmegaConfBaseException

    where = (f"agent.checkpoint: the run config {str(path)!r} beside the checkpoint (written by "
             f"optrader.train; delete or fix it to run without it)")
    try:
        loaded = OmegaConf.load(path)
        resolved = OmegaConf.to_container(loaded, resolve=True) \
            if isinstance(loaded, DictConfig) else None
    except (yaml.YAMLError, OmegaConfBaseException, OSError, ValueError) as exc:
        # OmegaConf.load raises OSError for a scalar document, ValueError for bad UTF-8
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{where} is not valid YAML or cannot be resolved: "
                          f"{type(exc).__name__}: {reason}") from None
    if not isinstance(loaded, DictConfig) or not resolved:
        got = "an empty file" if isinstance(loaded, DictConfig) else \
            f"a {type(OmegaConf.to_container(loaded)).__name__}"
        raise ConfigError(f"{where}: expected a mapping of config groups (data, observation, "
                          f"...), got {got}")
    if not set(resolved) & set(CHECKPOINT_GROUPS):
        groups = ", ".join(CHECKPOINT_GROUPS)
        raise ConfigError(f"{where}: expected a mapping of config groups ({groups}, ...), got "
                          f"the keys {sorted(map(str, resolved))}")
    for group in CHECKPOINT_GROUPS:
        if group in resolved and not isinstance(resolved[group], dict):
            raise ConfigError(f"{where}: expected the group {group!r} to be a mapping, got "
                              f"{resolved[group]!r}")
    return loaded


def describe_taken(taken: dict[str, list[str]]) -> str:
    """``taken`` for a log line: ``data; execution (yours: execution.commission_bps); ...``."""
    return "; ".join(g + (f" (yours: {', '.join(k)})" if k else "") for g, k in taken.items())


def override_keys(overrides: Iterable[str]) -> set[str]:
    """Dotted keys set by Hydra override strings (``a.b=1``, ``+a.b=1``, ``~a.b``, and
    ``group=option`` as the whole group), without ``hydra.*``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    keys = set()
    for o in map(str, overrides):
        try:
            keys.add(parser.parse_override(o).key_or_group)
        except HydraException:  # not an override (an option's value); Hydra judges the rest
            continue
    return {k for k in keys if k != "hydra" and not k.startswith("hydra.")}


def inferred_user_keys(cfg: DictConfig) -> set[str]:
    """Keys of the checkpoint groups where ``cfg`` differs from the default composition of its
    mode: a leaf whose value differs, or the whole group when its keys differ (another
    option of the group, e.g. data=parquet)."""
    mode = OmegaConf.select(cfg, "env.mode")
    base = compose(mode if mode in available("env") else "validation")
    keys = set()
    for group in CHECKPOINT_GROUPS:
        ours, theirs = (_flat(OmegaConf.to_container(c.get(group, {}), resolve=True), group)
                        for c in (cfg, base))
        if ours.keys() != theirs.keys():
            keys.add(group)
        keys |= {k for k, v in ours.items() if k in theirs and v != theirs[k]}
    return keys


def take_checkpoint_groups(cfg: DictConfig, trained: DictConfig,
                           keys: set[str]) -> tuple[DictConfig, dict[str, list[str]]]:
    """``cfg`` with each of ``CHECKPOINT_GROUPS`` replaced by the trained run's, except the keys
    in ``keys`` (a whole group, or dotted leaves re-applied on top from ``cfg``).

    Returns:
        (the merged config, group taken -> the keys of yours kept in it).
    """
    merged = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    taken = {}
    for group in CHECKPOINT_GROUPS:
        if group in keys or group not in trained:
            continue
        merged[group] = OmegaConf.to_container(trained[group], resolve=True)
        kept = sorted(k for k in keys if k.startswith(group + "."))
        for k in kept:
            value = OmegaConf.select(cfg, k, default=_ABSENT)
            if value is _ABSENT:  # ~key: removed by the user, so removed here too
                parent, _, leaf = k.rpartition(".")
                node = OmegaConf.select(merged, parent)
                if isinstance(node, DictConfig) and leaf in node:
                    del node[leaf]
            else:
                OmegaConf.update(merged, k, value, merge=False, force_add=True)
        taken[group] = kept
    return merged, taken


_ABSENT = object()


def _flat(d: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}"))
    return out


def load_checkpoint_file(path: str | Path, env):
    """``optrader.agents.es.load_checkpoint(path, env)``, or for a PPO ``policy.zip`` (SB3's zip
    with its ``policy.pth``) ``optrader.agents.ppo.load_checkpoint(path, env)`` (needs the rl
    extra; ModuleNotFoundError naming the install command otherwise), with an unreadable file,
    or policy parameters that are not all finite (a diverged run, a damaged file), reported as
    a ValueError naming the file (``agent.checkpoint: ... is not a readable policy.npz``)."""
    import numpy as np

    from optrader.agents import ppo
    from optrader.agents.es import check_fits, load_checkpoint

    if ppo.is_ppo_checkpoint(path):
        try:
            return ppo.load_checkpoint(path, env)
        except (OSError, EOFError, KeyError, RuntimeError, pickle.UnpicklingError,
                zipfile.BadZipFile) as exc:  # torch.load of damaged weights
            raise ValueError(f"agent.checkpoint: {path} is not a readable policy.zip "
                             f"({type(exc).__name__}: {exc})") from None
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle it
        raise ValueError(f"agent.checkpoint: {path} is not a readable {CHECKPOINT_FILE} (not an "
                         f".npz archive)")
    try:
        ckpt = load_checkpoint(path)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"agent.checkpoint: {path} is not a readable {CHECKPOINT_FILE} "
                         f"({type(exc).__name__}: {exc})") from None
    bad = np.flatnonzero(~np.isfinite(ckpt.params))
    if bad.size:  # checked before the env: a NaN policy would surface as NaN actions
        raise ValueError(f"agent.checkpoint: {path}: the policy parameter array 'params' holds "
                         f"{bad.size} non-finite value(s) of {ckpt.params.size} (NaN or inf, "
                         f"first at index {int(bad[0])}: {ckpt.params[bad[0]]}); the training "
                         f"run diverged or the file is damaged")
    if env is not None:
        check_fits(ckpt, env, path)
    return ckpt


def checkpoint_actor(env, ckpt):
    """The deterministic actor ``obs (N, D) -> env actions`` of a loaded checkpoint on ``env``:
    ES's ``policy_actor`` with its params, or the PPO policy's ``act``."""
    from optrader.agents.es import Checkpoint, policy_actor

    if isinstance(ckpt, Checkpoint):
        return policy_actor(env, ckpt.policy, ckpt.params)
    return ckpt.policy.act
