"""``optrader.checkpoints``: resolving ``agent.checkpoint``, which groups of the training run's
config.yaml are taken, and the user's keys winning over them."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

import optrader
from optrader.agents.es import Policy, load_checkpoint, save_checkpoint
from optrader.checkpoints import (
    CHECKPOINT_GROUPS,
    checkpoint_config,
    describe_taken,
    inferred_user_keys,
    load_checkpoint_file,
    override_keys,
    resolve_checkpoint,
    take_checkpoint_groups,
)
from optrader.config import ConfigError

# the training run: every taken group differs from the defaults somewhere
TRAINED = ["data.n_bars=700", "data.split.train=0.6", "data.split.validation=0.2",
           "observation.window=4", "action=discrete", "execution.commission_bps=0",
           "execution.slippage_bps=9", "risk.max_drawdown=0.3", "reward=sharpe",
           "env.episode_length=64", "seed=5"]


def trained_cfg():
    return optrader.compose("training", TRAINED)


@pytest.fixture
def run_dir(tmp_path):
    """A run dir as optrader.train writes it: policy.npz and config.yaml."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "policy.npz").write_bytes(b"")  # resolving does not read it
    (d / "config.yaml").write_text(OmegaConf.to_yaml(trained_cfg(), resolve=True))
    return d


# ---------------------------------------------------------------------------------------------
# Resolving the path


def test_a_run_dir_or_its_policy_file_resolve_to_the_file_and_its_config(run_dir):
    assert resolve_checkpoint(run_dir) == (run_dir / "policy.npz", run_dir / "config.yaml")
    assert resolve_checkpoint(str(run_dir / "policy.npz")) == (run_dir / "policy.npz",
                                                              run_dir / "config.yaml")
    (run_dir / "config.yaml").unlink()
    assert resolve_checkpoint(run_dir) == (run_dir / "policy.npz", None)


def test_another_file_name_is_accepted(tmp_path):
    (tmp_path / "best.npz").write_bytes(b"")
    assert resolve_checkpoint(tmp_path / "best.npz") == (tmp_path / "best.npz", None)


def test_bad_paths_say_what_was_expected(tmp_path):
    with pytest.raises(ConfigError, match=r"agent\.checkpoint: expected a policy\.npz or the run "
                                          r"dir of `python -m optrader\.train.*got ''; pass "
                                          r"agent\.checkpoint=outputs/DATE/TIME"):
        resolve_checkpoint("")
    with pytest.raises(ConfigError, match=r"agent\.checkpoint: .*got '.*nope' \(no such file or "
                                          r"directory\)"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"got the directory '.*' \(no policy\.npz in that "
                                          r"directory\)"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="no such file or directory"):
        checkpoint_config(optrader.compose("backtest"), tmp_path / "nope", [])


def test_an_unreadable_file_is_a_value_error(tmp_path):
    env = optrader.make_vec(optrader.compose("training", ["observation.window=4"]), num_envs=1)
    bad = tmp_path / "policy.npz"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match=r"agent\.checkpoint: .* is not a readable policy\.npz "
                                         r"\(not an \.npz archive\)"):
        load_checkpoint_file(bad, env)
    policy = Policy.for_env(env)
    save_checkpoint(bad, np.zeros(policy.n_params), policy, env.observation_names)
    assert load_checkpoint_file(bad, env).policy == load_checkpoint(bad, env).policy


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_policy_parameters_are_named_before_any_step(tmp_path, value):
    env = optrader.make_vec(optrader.compose("training", ["observation.window=4"]), num_envs=1)
    policy = Policy.for_env(env)
    params = np.zeros(policy.n_params)
    params[3] = value
    path = tmp_path / "policy.npz"
    save_checkpoint(path, params, policy, env.observation_names)
    with pytest.raises(ValueError, match=r"agent\.checkpoint: .*policy\.npz: the policy parameter "
                                         r"array 'params' holds 1 non-finite value.*index 3"):
        load_checkpoint_file(path, env)


BAD_RUN_CONFIGS = [
    ("data: [1, 2", r"is not valid YAML .*ParserError"),
    ("- data\n- risk\n", r"expected a mapping of config groups .*got a list"),
    ("", r"expected a mapping of config groups .*got an empty file"),
    ("42", r"is not valid YAML"),
    ("hello", r"expected a mapping of config groups .*got the keys \['hello'\]"),
    ("data: 5", r"expected the group 'data' to be a mapping, got 5"),
    ("data:\n  n_bars: ${nope}\n", r"cannot be resolved: InterpolationKeyError"),
]


@pytest.mark.parametrize(("text", "match"), BAD_RUN_CONFIGS, ids=[t for t, _ in BAD_RUN_CONFIGS])
def test_a_malformed_run_config_is_a_config_error_naming_the_file(run_dir, text, match):
    (run_dir / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"agent\.checkpoint: the run config '.*config\.yaml' "
                                          r"beside the checkpoint.*" + match):
        checkpoint_config(optrader.compose("backtest"), run_dir, [])


def test_a_run_config_that_is_not_utf8_is_a_config_error(run_dir):
    (run_dir / "config.yaml").write_bytes(b"\xff\xfe\x00data")
    with pytest.raises(ConfigError, match=r"config\.yaml.*is not valid YAML"):
        checkpoint_config(optrader.compose("backtest"), run_dir, [])


# ---------------------------------------------------------------------------------------------
# Which groups are taken


def test_without_a_run_config_nothing_is_taken(run_dir):
    (run_dir / "config.yaml").unlink()
    cfg = optrader.compose("backtest", ["observation.window=16"])
    ck = checkpoint_config(cfg, run_dir, [])
    assert ck.config is cfg and ck.taken == {} and ck.run_config is None
    assert ck.trained is None and ck.path == run_dir / "policy.npz"


def test_the_six_groups_are_taken_and_nothing_else(run_dir):
    cfg = optrader.compose("backtest", ["seed=2", "env.initial_cash=5000", "strategy=rsi",
                                        "metrics.risk_free=0.01"])
    ck = checkpoint_config(cfg, run_dir, [])  # no keys of yours: every group is the run's
    assert list(ck.taken) == list(CHECKPOINT_GROUPS) == ["data", "observation", "action",
                                                         "execution", "risk", "reward"]
    assert all(kept == [] for kept in ck.taken.values())
    trained = trained_cfg()
    for group in CHECKPOINT_GROUPS:
        assert ck.config[group] == trained[group], group
    # the market, costs, risk and reward of the run ...
    assert ck.config.data.n_bars == 700 and ck.config.data.split.use == "train"
    assert ck.config.execution.slippage_bps == 9 and ck.config.risk.max_drawdown == 0.3
    assert dict(ck.config.reward.components) == {"differential_sharpe": 1.0}
    assert ck.config.action.type == "discrete"
    # ... and the rest stays yours
    assert ck.config.env == cfg.env and ck.config.env.mode == "backtest"
    assert ck.config.seed == 2 and ck.config.strategy.name == "rsi"
    assert ck.config.metrics.risk_free == 0.01 and ck.config.agent == cfg.agent
    assert ck.trained == OmegaConf.load(run_dir / "config.yaml")
    optrader.load_spec(ck.config)  # a valid config


def test_a_group_missing_from_the_run_config_stays_yours(run_dir):
    saved = OmegaConf.load(run_dir / "config.yaml")
    del saved["risk"]
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    cfg = optrader.compose("backtest", ["risk.max_drawdown=0.2"])
    ck = checkpoint_config(cfg, run_dir, [])
    assert "risk" not in ck.taken and ck.config.risk.max_drawdown == 0.2


# ---------------------------------------------------------------------------------------------
# Your keys win


def test_your_keys_win_over_the_run_config(run_dir):
    ov = ["data.split.use=test", "execution.commission_bps=5", "reward=default",
          "observation.window=8", "+env=backtest", "hydra.run.dir=x"]
    ck = checkpoint_config(optrader.compose("backtest", ov[:4]), run_dir, ov)
    c = ck.config
    assert ck.user_keys == {"data.split.use", "execution.commission_bps", "reward",
                            "observation.window", "env"}
    # a key under a group: your value on top of the trained group
    assert c.data.split.use == "test" and c.data.n_bars == 700 and c.data.split.train == 0.6
    assert c.execution.commission_bps == 5 and c.execution.slippage_bps == 9
    assert c.observation.window == 8
    # a group choice: your whole group
    assert dict(c.reward.components) == {"log_return": 1.0} and "reward" not in ck.taken
    assert ck.taken == {"data": ["data.split.use"], "observation": ["observation.window"],
                        "action": [], "execution": ["execution.commission_bps"], "risk": []}
    assert describe_taken(ck.taken) == (
        "data (yours: data.split.use); observation (yours: observation.window); action; "
        "execution (yours: execution.commission_bps); risk")


def test_a_removed_key_is_removed_from_the_trained_group_too(run_dir):
    ov = ["~execution.slippage_bps"]
    ck = checkpoint_config(optrader.compose("backtest", ov), run_dir, ov)
    assert "slippage_bps" not in ck.config.execution
    assert ck.config.execution.commission_bps == 0  # the rest of the run's group
    assert ck.taken["execution"] == ["execution.slippage_bps"]


def test_without_override_strings_the_keys_that_differ_from_the_defaults_are_yours(run_dir):
    ov = ["data.split.use=test", "reward=risk_aware", "observation.window=32"]  # 32: default
    cfg = optrader.compose("backtest", ov)
    assert inferred_user_keys(cfg) == {"data.split.use", "reward"}
    ck = checkpoint_config(cfg, run_dir)
    assert ck.user_keys == {"data.split.use", "reward"}
    assert ck.config.data.split.use == "test" and ck.config.data.n_bars == 700
    assert ck.config.reward == cfg.reward  # another option of the group: all yours
    assert ck.config.observation.window == 4  # a default value is not told from no value
    # the same with the override strings: window=32 is yours then
    assert checkpoint_config(cfg, run_dir, ov).config.observation.window == 32


def test_override_keys():
    assert override_keys(["a.b=1", "+c.d=x", "++e=2", "~f.g", "data=parquet",
                          "hydra.run.dir=x", "hydra.job.name=y"]) == {"a.b", "c.d", "e", "f.g",
                                                                      "data"}
    assert override_keys([]) == set()


def test_take_checkpoint_groups_directly():
    train_cfg = optrader.compose("training", ["observation.window=4",
                                              "execution.commission_bps=0", "data.n_bars=600"])
    cfg = optrader.compose("validation", ["execution.slippage_bps=7", "reward=sharpe"])
    keys = inferred_user_keys(cfg)
    assert {"execution.slippage_bps", "reward"} <= keys
    assert not {k for k in keys if not k.startswith("reward")} - {"execution.slippage_bps"}
    merged, taken = take_checkpoint_groups(cfg, train_cfg, keys)
    assert merged.observation.window == 4 and merged.data.n_bars == 600
    assert merged.execution.commission_bps == 0 and merged.execution.slippage_bps == 7
    assert merged.reward == cfg.reward  # a group you chose stays yours
    assert set(taken) == {"data", "observation", "action", "execution", "risk"}
    assert taken["execution"] == ["execution.slippage_bps"]
    assert merged.env.mode == "validation"
