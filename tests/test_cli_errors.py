"""``optrader.cli_errors``: every command line reports a usage, config, data or file error as one
line on stderr with exit 2, a bug as a traceback plus a line saying so (exit 3), offers the
did-you-mean of ``optrader.compose`` for override typos, refuses a run dir that is a file and
removes the run dir a failed command wrote nothing into. The Hydra commands run in-process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import optrader.backtest.cli as backtest_cli
import optrader.train as train_cli
import optrader.validate as validate_cli
from optrader import cli_errors
from optrader.cli_errors import EXIT_BUG, EXIT_USAGE, remove_untouched_run_dir
from optrader.config import ConfigError

SMALL = ["data.n_bars=300", "agent.budget_steps=2000", "agent.num_envs=4",
         "agent.eval_episodes=2", "env.episode_length=16", "observation.window=4"]
COMMANDS = {"train": (train_cli.cli, ["+env=training"]), "backtest": (backtest_cli.cli, []),
            "validate": (validate_cli.cli, [])}


def run_cli(capsys, command, args):
    """(exit code, stderr lines, stdout) of ``command``'s cli on ``args``, in-process."""
    cli, head = COMMANDS[command]
    with pytest.raises(SystemExit) as exit_info:
        cli([*head, *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, err.strip().splitlines(), out


def one_error_line(capsys, command, args):
    code, lines, _ = run_cli(capsys, command, args)
    assert code == EXIT_USAGE, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"optrader.{command}: "), lines
    return lines[0]


# ---- the handler ---------------------------------------------------------------------------


def test_usage_errors_are_one_line_and_exit_2(capsys):
    def fail(exc):
        raise exc

    for exc in (ConfigError("agent.budget_steps: expected >= 1,\n  got -5"),
                FileNotFoundError(2, "No such file or directory", "x/y.csv"),
                NotADirectoryError(20, "Not a directory", "f/report.html"),
                ValueError("")):
        assert cli_errors.run("prog", fail, exc) == EXIT_USAGE
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prog: "), lines
    assert cli_errors.one_line(FileNotFoundError(2, "No such file or directory", "x.csv")) == \
        "x.csv: No such file or directory"
    assert cli_errors.one_line(ConfigError("a:\n   b")) == "a: b"
    assert cli_errors.run("prog", lambda: 1) == 1 and cli_errors.run("prog", lambda: None) == 0


def test_a_bug_shows_the_traceback_and_says_it_is_a_bug(capsys):
    def broken():
        raise KeyError("oops")

    assert cli_errors.run("prog", broken) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'oops'" in err
    assert err.strip().splitlines()[-1] == f"prog: {cli_errors.BUG_LINE}"


def test_hydra_full_error_shows_the_traceback_of_a_usage_error(monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="boom"):
        cli_errors.run("prog", lambda: (_ for _ in ()).throw(ConfigError("boom")))


# ---- the Hydra commands --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "backtest", "validate"])
def test_override_typos_get_the_did_you_mean(capsys, tmp_path, command):
    for typo, meant in (("agent.budget_step=1", "agent.budget_steps"),
                        ("data.split.trian=0.5", "data.split.train"),
                        ("execution=realistc", "execution=realistic")):
        line = one_error_line(capsys, command, [typo, f"hydra.run.dir={tmp_path / 'run'}"])
        assert f"did you mean '{meant}'" in line, line
    assert not (tmp_path / "run").exists()


def test_train_config_and_data_errors_are_one_line_and_leave_no_run_dir(capsys, tmp_path):
    bad = tmp_path / "bars.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    for args, message in ((["agent.budget_steps=-5"], "agent.budget_steps: expected >= 1"),
                          (["data=parquet", f"data.path={bad}", "data.cache.enabled=false"],
                           "bars.parquet")):
        run_dir = tmp_path / "outputs" / "day" / "time"
        line = one_error_line(capsys, "train", [*SMALL, *args, f"hydra.run.dir={run_dir}"])
        assert message in line
        assert not (tmp_path / "outputs").exists()  # the dirs Hydra made for it are gone too


def test_without_a_mode_train_says_how_to_choose_one_and_leaves_nothing(capsys, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)  # Hydra's default run dir outputs/DATE/TIME
    with pytest.raises(SystemExit) as exit_info:
        train_cli.cli(["agent.budget_steps=10"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == EXIT_USAGE and len(lines) == 1
    assert "choose a mode with +env=training" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_run_dir_that_existed_before_is_kept(capsys, tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    one_error_line(capsys, "train", ["agent.budget_steps=-5", f"hydra.run.dir={run_dir}"])
    assert run_dir.is_dir()


@pytest.mark.parametrize("command", ["train", "backtest", "validate"])
def test_a_run_dir_that_is_a_file_is_refused_and_left_alone(capsys, tmp_path, command):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for run_dir, what in ((target, "which is a file"),
                          (target / "run", "lies under the file")):
        line = one_error_line(capsys, command, [f"hydra.run.dir={run_dir}"])
        assert "hydra.run.dir: expected a directory" in line and what in line, line
    assert target.read_text() == "mine"


def test_a_default_run_dir_blocked_by_a_file_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").write_text("mine")
    line = one_error_line(capsys, "backtest", ["data.n_bars=300"])
    assert "cannot create the run directory" in line and "hydra.run.dir=DIR" in line
    assert (tmp_path / "outputs").read_text() == "mine"


def test_an_unknown_calendar_name_is_one_line(capsys, tmp_path):
    idx = pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC")
    px = 100 + np.cumsum(np.random.default_rng(0).normal(size=idx.size))
    path = tmp_path / "bars.csv"
    pd.DataFrame({"timestamp": idx, "open": px, "high": px + 1, "low": px - 1, "close": px,
                  "volume": 1e3}).to_csv(path, index=False)
    line = one_error_line(capsys, "backtest", [
        "data=csv", f"data.path={path}", "data.calendar.name=nope", "data.cache.enabled=false",
        f"hydra.run.dir={tmp_path / 'run'}"])
    assert "data.calendar" in line and "'nope'" in line
    assert not (tmp_path / "run").exists()


def test_an_internal_error_says_it_is_a_bug(capsys, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("inside train")

    monkeypatch.setattr(train_cli, "train", broken)
    code, lines, _ = run_cli(capsys, "train", [f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == EXIT_BUG
    assert "ZeroDivisionError: inside train" in lines and lines[-1].endswith(cli_errors.BUG_LINE)


# ---- run dirs ------------------------------------------------------------------------------


def hydra_run_dir(path, log="train.log"):
    (path / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (path / ".hydra" / name).write_text("{}")
    (path / log).write_text("")
    return path


def test_only_a_run_dir_holding_nothing_but_hydras_files_is_removed(tmp_path):
    keep = {tmp_path.resolve()}
    assert remove_untouched_run_dir(hydra_run_dir(tmp_path / "a" / "b"), "train", keep)
    assert not (tmp_path / "a").exists()  # the parent it left empty too, up to a kept one
    for extra in ("policy.npz", ".hydra/mine.txt"):
        d = hydra_run_dir(tmp_path / extra.replace("/", "_"))
        (d / extra).write_text("x")
        assert not remove_untouched_run_dir(d, "train", keep) and (d / extra).exists()
    d = hydra_run_dir(tmp_path / "other_log", log="backtest.log")
    assert not remove_untouched_run_dir(d, "train", keep)  # another command's log is not ours
    d = hydra_run_dir(tmp_path / "existed")
    assert not remove_untouched_run_dir(d, "train", keep | {d.resolve()}) and d.is_dir()
    shared = tmp_path / "shared"
    hydra_run_dir(shared / "t1")
    (shared / "t2").mkdir()
    assert remove_untouched_run_dir(shared / "t1", "train", keep) and (shared / "t2").is_dir()


# ---- the __main__ modules ------------------------------------------------------------------


def test_python_m_optrader_train_bad_value_is_one_line_in_a_fresh_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "optrader.train", "+env=training",
                           "agent.budget_steps=abc", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_USAGE, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optrader.train: agent.budget_steps"), lines
    assert not (tmp_path / "run").exists()


def test_other_main_modules_go_through_the_handler(capsys, tmp_path):
    from optrader.__main__ import main as optrader_main
    from optrader.report.cli import main as report_main

    assert cli_errors.run("optrader", optrader_main, ["nope"]) == EXIT_USAGE
    capsys.readouterr()
    assert cli_errors.run("optrader.report", report_main, [str(tmp_path / "nope")]) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optrader.report: ")
    for module in ("optrader.__main__", "optrader.report.__main__", "optrader.data.__main__"):
        source = importlib.util.find_spec(module).loader.get_source(module)
        assert "cli_errors" in source, module
