"""Strategy parameter tables (``STRATEGY_SPECS``): every strategy has one, its config file and
docs/backtest.md agree with it, and both entry points (config grids, ``run_strategy``'s params,
named or raw) refuse every range and relation it states, naming the strategy, the parameters,
the values and the row. ``run_strategy`` takes parameters by name."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import optrader
from kernels.strategies import N_STRATEGY_PARAM, StrategyId
from optrader.backtest import run_strategy
from optrader.checks import ConfigError
from optrader.config import config_dir, load_spec
from optrader.research_config import STRATEGY_SPECS, strategy_params_markdown
from tests.envs.conftest import bars_frame

ROOT = Path(__file__).resolve().parents[2]


def test_every_strategy_has_a_parameter_table():
    """A strategy added to the kernels without a table (or a table without a strategy) fails."""
    assert set(STRATEGY_SPECS) == {n.lower() for n in StrategyId._fields}
    for name, spec in STRATEGY_SPECS.items():
        names = [p.name for p in spec.params]
        cols = [p.column for p in spec.params]
        assert len(set(names)) == len(names) and len(set(cols)) == len(cols), name
        assert all(0 <= c < N_STRATEGY_PARAM for c in cols), name
        for rel in spec.relations:
            assert {rel.left, rel.right} <= set(names) and rel.op in ("<", "<="), (name, rel)
        for p in spec.params:
            assert p.lo <= p.default <= p.hi, (name, p)


@pytest.mark.parametrize("name", sorted(STRATEGY_SPECS))
def test_config_file_lists_the_table_parameters_and_defaults(name):
    raw = yaml.safe_load((config_dir() / "strategy" / f"{name}.yaml").read_text())
    assert raw.pop("name") == name
    want = {p.name: p.default for p in STRATEGY_SPECS[name].params}
    assert raw == pytest.approx(want)
    load_spec(optrader.compose(env="backtest", overrides=[f"strategy={name}"]))  # defaults pass


def test_docs_hold_the_parameter_table():
    assert strategy_params_markdown() in (ROOT / "docs" / "backtest.md").read_text()


def _bad_cases():
    """(strategy, {param: bad value}, the parameter names the error must name, why) for every
    range bound and relation of every table."""
    cases = []
    for name, spec in STRATEGY_SPECS.items():
        for p in spec.params:
            step = 1.0 if p.whole else 0.5
            cases.append((name, {p.name: p.lo - step}, [p.name], "below"))
            if math.isfinite(p.hi):
                cases.append((name, {p.name: p.hi + (2.0 if p.hi >= 2**53 else step)},
                              [p.name], "above"))
            if p.whole:
                cases.append((name, {p.name: p.default + 0.5}, [p.name], "whole"))
        defaults = {p.name: p.default for p in spec.params}
        for rel in spec.relations:
            bad = defaults[rel.right] if rel.op == "<" else defaults[rel.right] + 1
            cases.append((name, {rel.left: bad}, [rel.left, rel.right], rel.op))
    return cases


BAD = _bad_cases()


def _point(name, bad):
    """The defaults with ``bad`` set: a full parameter row."""
    return {p.name: float(bad.get(p.name, p.default)) for p in STRATEGY_SPECS[name].params}


def _expect(name, bad, names, row_text):
    values = _point(name, bad)
    pattern = rf"strategy '{name}'.*" + ".*".join(
        re.escape(f"{n}={values[n]:g}") for n in names) + rf".*{row_text}"
    return re.compile(pattern)


@pytest.mark.parametrize("name, bad, names, why", BAD,
                         ids=[f"{c[0]}-{'-'.join(c[1])}-{c[3]}" for c in BAD])
def test_config_grid_refuses_each_range_and_relation(name, bad, names, why):
    """The offending value as the second point of a grid axis: the error names the strategy,
    the parameters, their values and grid row 1."""
    param = next(iter(bad))
    default = next(p.default for p in STRATEGY_SPECS[name].params if p.name == param)
    value = bad[param]
    text = repr(int(value)) if value == int(value) else repr(value)
    overrides = [f"strategy={name}", f"strategy.{param}=[{default!r},{text}]"]
    with pytest.raises(ConfigError, match=_expect(name, bad, names, "grid row 1 of 2")) as e:
        load_spec(optrader.compose(env="backtest", overrides=overrides))
    assert all(f"strategy.{n}" in str(e.value) for n in names)


@pytest.fixture(scope="module")
def env():
    cfg = optrader.compose("training", ["observation.window=2", "env.episode_length=50",
                                        "data.split.use=all"])
    return optrader.make_vec(cfg, num_envs=2, data=bars_frame(300, n_assets=2), parallel=False)


@pytest.mark.parametrize("name, bad, names, why", BAD,
                         ids=[f"{c[0]}-{'-'.join(c[1])}-{c[3]}" for c in BAD])
def test_run_strategy_refuses_each_range_and_relation(env, name, bad, names, why):
    """The offending value for env 1, by name and as raw kernel columns."""
    good, worse = _point(name, {}), _point(name, bad)
    named = {k: [good[k], worse[k]] for k in good}
    with pytest.raises(ValueError, match=_expect(name, bad, names, r"params row 1 \(env 1\)")):
        run_strategy(env, name, named)
    raw = np.zeros((2, N_STRATEGY_PARAM))
    for p in STRATEGY_SPECS[name].params:
        raw[:, p.column] = [good[p.name], worse[p.name]]
    with pytest.raises(ValueError, match=_expect(name, bad, names, r"params row 1 \(env 1\)")):
        run_strategy(env, name, raw)


@pytest.mark.parametrize("name", sorted(n for n, s in STRATEGY_SPECS.items() if s.relations))
def test_relations_hold_at_their_boundary(env, name):
    """'<' refuses equality, '<=' accepts it (config and run_strategy alike)."""
    for rel in STRATEGY_SPECS[name].relations:
        point = _point(name, {})
        point[rel.left] = point[rel.right]
        overrides = [f"strategy={name}"] + [f"strategy.{k}={v!r}" for k, v in point.items()]
        if rel.op == "<":
            with pytest.raises(ConfigError, match=f"{rel.left} < {rel.right}"):
                load_spec(optrader.compose(env="backtest", overrides=overrides))
            with pytest.raises(ValueError, match=f"{rel.left} < {rel.right}"):
                run_strategy(env, name, point)
        else:
            load_spec(optrader.compose(env="backtest", overrides=overrides))
            run_strategy(env, name, point)


def test_named_params_equal_the_raw_columns(env):
    raw = np.array([[3, 10, 0, 0], [5, 20, 1, 0]], dtype=float)
    want = run_strategy(env, "sma_cross", raw)
    mapping = run_strategy(env, "sma_cross", {"fast": [3, 5], "slow": np.array([10, 20]),
                                              "long_only": [0, 1]})
    frame = run_strategy(env, "sma_cross", pd.DataFrame({"long_only": [0, 1], "slow": [10, 20],
                                                         "fast": [3, 5]}))
    for got in (mapping, frame):
        np.testing.assert_array_equal(got.equity, want.equity)
        np.testing.assert_array_equal(got.fills, want.fills)
    # scalars apply to every env
    both = run_strategy(env, "sma_cross", {"fast": 3, "slow": 10, "long_only": 0})
    np.testing.assert_array_equal(both.equity, run_strategy(env, "sma_cross", [3, 10, 0]).equity)
    np.testing.assert_array_equal(both.equity[0], both.equity[1])


def test_named_params_say_what_is_missing_or_unknown(env):
    with pytest.raises(ValueError, match=r"unknown 'fastt' \(did you mean 'fast'\?\); "
                                         r"missing 'fast'"):
        run_strategy(env, "sma_cross", {"fastt": 3, "slow": 10, "long_only": 0})
    with pytest.raises(ValueError, match=r"strategy 'rsi' takes \['period', 'lower', 'upper'\]"
                                         r"; missing 'lower', 'upper' \(the config's "
                                         r"defaults: lower=30, upper=70\)"):
        run_strategy(env, "rsi", {"period": 14})
    with pytest.raises(ValueError, match=r"unknown 'k'; missing 'entry_z'"):
        run_strategy(env, "zscore", {"lookback": 20, "k": 2.0, "exit_z": 0.5})
    with pytest.raises(ValueError, match=r"params\['slow'\]: expected a number or 2 numbers.*"
                                         r"shape \(3,\)"):
        run_strategy(env, "sma_cross", {"fast": 3, "slow": [10, 20, 30], "long_only": 0})
    with pytest.raises(ValueError, match="expected 2 rows"):
        run_strategy(env, "sma_cross", pd.DataFrame({"fast": [3], "slow": [10],
                                                     "long_only": [0]}))
    with pytest.raises(TypeError, match=r"params\['fast'\]: expected a number"):
        run_strategy(env, "sma_cross", {"fast": "ten", "slow": 10, "long_only": 0})


def test_raw_params_in_a_column_the_strategy_does_not_use_are_refused(env):
    with pytest.raises(ValueError, match=r"params\[:, 3\]: strategy 'sma_cross' has no "
                                         r"parameter in column 3.*got 7 at params row 1"):
        run_strategy(env, "sma_cross", [[3, 10, 0, 0], [3, 10, 0, 7]])
