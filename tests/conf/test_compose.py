"""Every config file in conf/ composes and validates; compose() and make_vec() agree.

The YAML files are discovered from the filesystem, so a new group option is covered without
editing this file.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import gymnasium
import pytest
from omegaconf import DictConfig, OmegaConf

import optrader
from optrader.config import (
    AGENT_SCHEMAS,
    DATA_SCHEMAS,
    EnvSpec,
    available,
    config_dir,
    load_spec,
)
from optrader.research_config import STRATEGY_SCHEMAS

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = sorted(p.name for p in REPO_CONF.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
GROUP_FILES = [(g, p.stem) for g in GROUPS for p in sorted((REPO_CONF / g).glob("*.yaml"))]
SMALL = ["observation.window=4", "env.episode_length=8"]


def compose_option(group: str, option: str) -> DictConfig:
    """The root config with ``group=option`` selected (env is chosen by ``env=``)."""
    if group == "env":
        return optrader.compose(env=option)
    return optrader.compose(overrides=[f"{group}={option}"])


def yaml_content(group: str, option: str) -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(REPO_CONF / group / f"{option}.yaml"))
    raw.pop("defaults", None)
    return raw


def schema_of(group: str, content: dict):
    if group == "data":
        return DATA_SCHEMAS[content["source"]]
    if group == "strategy":
        return STRATEGY_SCHEMAS[content["name"]]
    if group == "agent":
        return AGENT_SCHEMAS[content["name"]]
    return typing.get_type_hints(EnvSpec)[group]


def schema_keys(cls) -> dict:
    """Field name -> nested schema keys (dict) or None, for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: schema_keys(hints[f.name]) if dataclasses.is_dataclass(hints[f.name])
            else None for f in dataclasses.fields(cls)}


def content_keys(content: dict, schema: dict) -> dict:
    return {k: content_keys(v, schema[k]) if isinstance(schema.get(k), dict)
            and isinstance(v, dict) else None for k, v in content.items()}


def plain(x):
    """Dataclass values as YAML-like containers: tuples -> lists, nested dataclasses -> dicts."""
    if dataclasses.is_dataclass(x):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    return x


def test_conf_tree_is_discovered():
    assert (REPO_CONF / "config.yaml").is_file()
    assert {"env", "execution", "reward", "observation", "action", "data"} <= set(GROUPS)
    assert ("execution", "zero_cost") in GROUP_FILES
    assert ("reward", "sharpe") in GROUP_FILES


def test_every_group_is_a_spec_field():
    fields = {f.name for f in dataclasses.fields(EnvSpec)}
    assert set(GROUPS) <= fields, f"groups without a schema: {set(GROUPS) - fields}"


@pytest.mark.parametrize(("group", "option"), GROUP_FILES,
                         ids=[f"{g}/{o}" for g, o in GROUP_FILES])
def test_every_yaml_composes_and_validates(group, option):
    cfg = compose_option(group, option)
    spec = load_spec(cfg)
    content = yaml_content(group, option)
    # the file's values arrive unchanged in the composed config and in the validated spec
    assert OmegaConf.to_container(cfg[group], resolve=True) == content
    assert plain(getattr(spec, group)) == content
    # every tunable of the schema is spelled out in the file (conf/ is the single source)
    schema = schema_keys(schema_of(group, content))
    assert content_keys(content, schema) == schema


def test_root_defaults_select_existing_files():
    defaults = OmegaConf.to_container(OmegaConf.load(REPO_CONF / "config.yaml"))["defaults"]
    chosen = {k: v for d in defaults if isinstance(d, dict) for k, v in d.items()}
    assert chosen, "config.yaml has no group defaults"
    cfg = optrader.compose()
    for group, option in chosen.items():
        assert (REPO_CONF / group / f"{option}.yaml").is_file()
        assert OmegaConf.to_container(cfg[group], resolve=True) == yaml_content(group, option)


@pytest.mark.parametrize("mode", available("env"))
def test_every_env_mode_composes(mode):
    spec = load_spec(optrader.compose(env=mode))
    assert spec.env.mode == mode


def test_override_changes_the_spec():
    base = load_spec(optrader.compose())
    spec = load_spec(optrader.compose(overrides=[
        "execution.commission_bps=5", "observation.features=[log_return,range]",
        "+reward.components.pnl=0.5", "data.jumps.intensity=2", "env.episode_length=16"]))
    assert base.execution.commission_bps == 1.0
    assert spec.execution.commission_bps == 5.0
    assert type(spec.execution.commission_bps) is float  # int 5 coerced to money dtype
    assert spec.observation.features == ("log_return", "range")
    assert spec.reward.components == {"log_return": 1.0, "pnl": 0.5}
    assert spec.data.jumps.intensity == 2.0
    assert spec.env.episode_length == 16
    # untouched groups are unchanged
    assert spec.action == base.action and spec.agent == base.agent


def test_group_override_selects_the_file():
    spec = load_spec(optrader.compose(overrides=["execution=zero_cost", "reward=sharpe",
                                                 "action=discrete"]))
    assert spec.execution.commission_bps == spec.execution.slippage_bps == 0.0
    assert spec.execution.half_spread_bps == 0.0
    assert spec.reward.components == {"differential_sharpe": 1.0}
    assert spec.action.type == "discrete"


def test_compose_is_repeatable():
    ov = ["execution.commission_bps=5"]
    assert optrader.compose(overrides=ov) == optrader.compose(overrides=tuple(ov))
    assert load_spec(optrader.compose(overrides=ov)) == load_spec(optrader.compose(overrides=ov))


def test_load_spec_accepts_a_plain_dict():
    cfg = optrader.compose(overrides=["execution.commission_bps=3"])
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert load_spec(raw) == load_spec(cfg)


def test_make_vec_gives_the_same_spec_as_compose(bars):
    ov = [*SMALL, "execution.commission_bps=5", "reward=risk_aware"]
    expected = load_spec(optrader.compose(env="training", overrides=ov))
    envs = gymnasium.make_vec("optrader/Trading-v0", num_envs=2,
                              vectorization_mode="vector_entry_point", overrides=ov, data=bars)
    try:
        assert envs.num_envs == 2
        assert envs.unwrapped.config == expected
        assert envs.unwrapped.config.execution.commission_bps == 5.0
    finally:
        envs.close()
    # the Python entry point with a pre-composed cfg agrees too
    envs = optrader.make_vec(optrader.compose(overrides=ov), num_envs=2, data=bars)
    try:
        assert envs.config == expected
    finally:
        envs.close()


def test_gymnasium_make_gives_the_same_spec(bars):
    ov = [*SMALL, "execution=zero_cost"]
    env = gymnasium.make("optrader/Trading-v0", overrides=ov, data=bars)
    try:
        assert env.unwrapped.config == load_spec(optrader.compose(overrides=ov))
    finally:
        env.close()


def test_compose_inside_a_running_hydra_app():
    # entry points use @hydra.main, which leaves GlobalHydra initialized while the task runs
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(REPO_CONF), version_base="1.3"):
        cfg = optrader.compose(overrides=["execution.commission_bps=7"])
        assert load_spec(cfg).execution.commission_bps == 7.0
        # the app's own Hydra is restored afterwards
        assert GlobalHydra.instance().is_initialized()
        outer = compose(config_name="config", overrides=["+env=training"])
        assert outer.execution.commission_bps == 1.0
    assert not GlobalHydra.instance().is_initialized()


def test_registry_lists_the_builtins():
    listed = optrader.registry.list()
    assert set(listed) == {"reward", "slippage", "commission", "data_source"}
    assert {"log_return", "pnl", "differential_sharpe", "drawdown_penalty",
            "cost_penalty"} <= set(listed["reward"])
    assert "fixed" in listed["slippage"]
    assert "bps" in listed["commission"]
    assert {"synthetic", "dataframe"} <= set(listed["data_source"])
    assert optrader.registry.list("reward") == listed["reward"]


def test_every_registry_name_used_in_conf_is_registered():
    reg = optrader.registry
    for option in available("reward"):
        for name in yaml_content("reward", option)["components"]:
            assert name in reg.list("reward"), f"reward/{option}.yaml uses unknown {name!r}"
    for option in available("execution"):
        content = yaml_content("execution", option)
        assert content["slippage_model"] in reg.list("slippage")
        assert content["commission_model"] in reg.list("commission")
    for option in available("data"):
        assert yaml_content("data", option)["source"] in reg.list("data_source")


def test_config_dir_resolves():
    d = config_dir()
    assert d.is_dir() and (d / "config.yaml").is_file()
    assert d.resolve() == REPO_CONF.resolve()
    for group in GROUPS:
        assert available(group) == sorted(p.stem for p in (REPO_CONF / group).glob("*.yaml"))
    assert "training" in available("env")
