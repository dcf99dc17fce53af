"""``optrader.compile_status``: Numba compiles counted and timed (cache loads and compiled
functions are not compiles), the status shown only while compiling (plain lines off a terminal,
a spinner or the caller's display on one), and throughput figures that leave compile time out.

Compiles use fresh toy ``njit`` functions defined in each test (never the project's kernels);
known compile durations are injected as Numba events under a shifted ``CompileWatch.clock``.
"""

from __future__ import annotations

import importlib.util
import io
import textwrap
import time

import numba.core.event as ev
import pytest
from numba import njit
from rich.console import Console

import optrader
from optrader.compile_status import STATUS, CompileWatch


def _fresh_pair():
    """Two new dispatchers, f calling g: nothing compiled yet."""

    @njit
    def g(x):
        return x * 2.0

    @njit
    def f(x):
        return g(x) + 1.0

    return f


def _plain_console():
    return Console(file=io.StringIO(), force_terminal=False)


def test_a_fresh_function_counts_as_compiling_and_a_compiled_one_does_not():
    f = _fresh_pair()
    with CompileWatch(show=False) as watch:
        assert f(1.0) == 3.0
    assert watch.compiles == 2  # f and its callee g
    assert watch.compile_s > 0 and watch.jit_s >= watch.compile_s
    with CompileWatch(show=False) as again:
        assert f(2.0) == 5.0
    assert (again.compiles, again.compile_s, again.jit_s, again.cache_load_s) == (0, 0, 0, 0)


def test_a_disk_cache_load_is_not_a_compile(tmp_path):
    src = tmp_path / "toy_cached.py"
    src.write_text(textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def triple(x):
            return 3.0 * x
    """))

    def load(name):  # a new module object, so a new dispatcher with nothing in memory
        spec = importlib.util.spec_from_file_location(name, src)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.triple

    with CompileWatch(show=False) as first:
        assert load("toy_cached_a")(2.0) == 6.0
    assert first.compiles == 1 and first.compile_s > 0
    with CompileWatch(show=False) as cached:
        assert load("toy_cached_b")(2.0) == 6.0
    assert cached.compiles == 0 and cached.compile_s == 0
    assert cached.cache_load_s > 0  # the load is timed, as a load


def test_plain_output_prints_the_status_only_when_compiling(capsys):
    f = _fresh_pair()
    with CompileWatch(console=_plain_console()):
        f(1.0)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err  # one line when compiling starts (the callee nests), one when done
    assert err[0] == f"optrader: {STATUS} ..."
    assert err[1].startswith("optrader: compiled kernels in ") and err[1].endswith(" s")
    with CompileWatch(console=_plain_console()):
        f(1.0)
    assert capsys.readouterr().err == ""
    with CompileWatch(show=False):
        _fresh_pair()(1.0)
    assert capsys.readouterr().err == ""


def test_plain_done_line_waits_for_settle_after_compiling_ends(capsys):
    with CompileWatch(console=_plain_console()) as watch:
        _fresh_pair()(1.0)
        assert capsys.readouterr().err == f"optrader: {STATUS} ...\n"
        watch.settle()
        assert capsys.readouterr().err.startswith("optrader: compiled kernels in ")
        watch.settle()
        _fresh_pair()(1.0)  # a second burst: a line of its own
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"optrader: {STATUS} ..." and len(err) == 2


def test_a_terminal_gets_a_transient_spinner_and_no_plain_lines(capsys):
    out = io.StringIO()
    with CompileWatch(console=Console(file=out, force_terminal=True, width=100)):
        _fresh_pair()(1.0)
    assert STATUS in out.getvalue()
    assert capsys.readouterr().err == ""
    out = io.StringIO()
    f = _fresh_pair()
    f(1.0)
    with CompileWatch(console=Console(file=out, force_terminal=True, width=100)):
        f(1.0)
    assert out.getvalue() == ""


def test_an_attached_display_gets_the_status_once_per_outermost_compile(capsys):
    seen = []
    f = _fresh_pair()
    with CompileWatch(console=_plain_console()) as watch, watch.shown_in(seen.append):
        f(1.0)
        f(1.0)
    assert seen == [STATUS, None]
    assert capsys.readouterr().err == ""  # the display shows it, not plain lines


def test_backtest_spinner_shows_the_status_in_its_text():
    from optrader.backtest.cli import _Spinner

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with CompileWatch(console=_plain_console()) as watch, \
            _Spinner(console, True, "sma_cross: 4 envs", watch):
        _fresh_pair()(1.0)
    assert f"sma_cross: 4 envs: {STATUS}" in out.getvalue()


class _ShiftedClock:
    """perf_counter plus an offset a test advances: a known 'compile' without sleeping."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.perf_counter() + self.offset


def _fake_compile(clock: _ShiftedClock, seconds: float, work=None):
    """Numba's events of one compile taking ``seconds`` more than ``work()`` does."""
    ev.start_event("numba:compiler_lock")
    ev.start_event("numba:compile")
    try:
        result = work() if work is not None else None
        clock.offset += seconds
    finally:
        ev.end_event("numba:compile")
        ev.end_event("numba:compiler_lock")
    return result


def test_span_seconds_are_wall_minus_compile_and_cache_loads(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 4.0, 5.0, 5.5, 9.0, 10.0])
    monkeypatch.setattr(CompileWatch, "clock", staticmethod(lambda: next(ticks)))
    with CompileWatch(show=False) as watch, watch.span() as span:  # span starts at 0
        ev.start_event("numba:compiler_lock")  # 1: lock taken
        ev.start_event("numba:compile")  # 1: compiling
        ev.end_event("numba:compile")  # 4: 3 s compiling
        ev.end_event("numba:compiler_lock")  # 5: 1 s more in the lock
        ev.start_event("numba:compiler_lock")  # 5.5: a cache load
        ev.end_event("numba:compiler_lock")  # 9: 3.5 s loading; the span ends at 10
    assert span.compile_s == 3.0 and span.cache_load_s == 4.5 and span.jit == 7.5
    assert span.wall == 10.0 and span.seconds == 2.5
    assert span.summary() == {"compile_s": 3.0, "cache_load_s": 4.5}


def test_train_throughput_leaves_compile_time_out(monkeypatch):
    import optrader.train as train_mod

    clock = _ShiftedClock()
    monkeypatch.setattr(CompileWatch, "clock", staticmethod(clock))
    real, calls = train_mod.episode_returns, []

    def first_call_compiles(*args, **kwargs):  # 1000 s of "compiling" in generation 1
        calls.append(1)
        if len(calls) > 1:
            return real(*args, **kwargs)
        return _fake_compile(clock, 1000.0, lambda: real(*args, **kwargs))

    monkeypatch.setattr(train_mod, "episode_returns", first_call_compiles)
    cfg = optrader.compose("training", ["agent.budget_steps=4096", "agent.num_envs=16",
                                        "agent.eval_episodes=2", "env.episode_length=64"])
    m = train_mod.train(cfg, progress=False)
    assert m["compile_s"] >= 1000.0 and m["cache_load_s"] >= 0.0
    assert 0 < m["train_seconds"] < 1000.0  # the loop's wall minus the compile
    # the rate is env_steps over train_seconds (rounded to ms), not over the loop's wall
    assert m["env_steps"] / m["env_steps_per_second"] == pytest.approx(m["train_seconds"],
                                                                      abs=6e-4)
    assert m["history"][-1]["seconds"] == pytest.approx(m["train_seconds"], abs=2e-3)


def test_backtest_throughput_leaves_compile_time_out(monkeypatch, tmp_path):
    import json

    import optrader.backtest.cli as bt_cli

    clock = _ShiftedClock()
    monkeypatch.setattr(CompileWatch, "clock", staticmethod(clock))
    real = bt_cli.run_strategy
    monkeypatch.setattr(bt_cli, "run_strategy", lambda *a, **k: _fake_compile(
        clock, 1000.0, lambda: real(*a, **k)))
    cfg = optrader.compose("backtest", ["data.n_bars=2000", "observation.window=4",
                                        "strategy=sma_cross", "strategy.fast=[5,10]",
                                        "strategy.slow=[20]"])
    s = bt_cli.run_backtest(cfg, out_dir=tmp_path, progress=False, show=False)["summary"]
    assert s["compile_s"] >= 1000.0 and 0 < s["seconds"] < 1000.0
    assert s["wall_seconds"] == pytest.approx(s["seconds"] + s["compile_s"] + s["cache_load_s"],
                                              abs=2e-3)
    assert s["n_envs"] * s["n_steps"] / s["bar_columns_per_second"] == pytest.approx(
        s["seconds"], rel=1e-6)
    written = json.loads((tmp_path / "backtest.json").read_text())
    assert written["compile_s"] == s["compile_s"] and "cache_load_s" in written
