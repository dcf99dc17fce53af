"""Numba compile time: measured, shown while it happens, kept out of throughput figures.

A ``CompileWatch`` is a listener on two of Numba's events (``numba.core.event``):

* ``numba:compile`` fires only when a dispatcher really compiles a signature, not when it loads
  the signature from the disk cache (``cache=True``) nor when the signature is already in
  memory. Time inside the outermost such event is ``compile_s``; while it runs the watch shows
  ``STATUS``.
* ``numba:compiler_lock`` fires whenever Numba takes its compiler lock, which covers compiling
  and loading from the disk cache (and nothing of a call to a compiled kernel). Time inside the
  outermost lock that is not compiling is ``cache_load_s``.

``jit_s`` (the two together) is what callers subtract from a run's wall time, so a throughput
on a first run (cold cache) and on a cached run agree within noise; ``span()`` does that for
one stretch of work.

Where the status goes: ``shown_in(setter)`` routes it into a display the caller already runs
(rich live displays cannot nest: train has a progress bar, backtest a spinner), as
``setter(STATUS)`` when a compile starts and ``setter(None)`` when it ends. Without one, a
terminal gets a transient spinner on stderr; anything else (CI, pipes, logs) gets one plain
line on stderr when compiling starts and one with its seconds at the next ``settle()`` (the
callers' progress points) or when the watch is closed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import numba.core.event as ev

STATUS = "compiling kernels (first run only)"
_COMPILE, _LOCK = "numba:compile", "numba:compiler_lock"


class CompileWatch(ev.Listener):
    """Seconds Numba spends compiling (``compile_s``, ``compiles``) and loading compiled
    kernels (``cache_load_s``) while installed (``with CompileWatch() as watch:``), and the
    compiling status (see the module docstring).

    Args:
        show: show the status (False: measure only).
        console: the rich Console the status goes to when no display is attached (None: a
            stderr console; its ``is_terminal`` chooses spinner or plain lines).
    """

    clock = staticmethod(time.perf_counter)  # seconds; every interval here is read from it

    def __init__(self, show: bool = True, console=None):
        self.show = show
        self.console = console
        self.compile_s = 0.0  # seconds inside outermost numba:compile events
        self.jit_s = 0.0  # seconds inside the outermost compile or compiler lock
        self.compiles = 0  # numba:compile events (callees compiled with a kernel count too)
        self._local = threading.local()  # per-thread nesting depths and start times
        self._mutex = threading.Lock()
        self._setter: Callable[[str | None], None] | None = None
        self._spinner = None
        self._burst_start: float | None = None  # compile_s when the unreported compiling began

    @property
    def cache_load_s(self) -> float:
        """Seconds in the compiler lock not compiling: loading kernels from the disk cache."""
        return max(self.jit_s - self.compile_s, 0.0)

    # -- installation ----------------------------------------------------------------------

    def __enter__(self) -> CompileWatch:
        ev.register(_COMPILE, self)
        ev.register(_LOCK, self)
        return self

    def __exit__(self, *exc) -> bool:
        ev.unregister(_LOCK, self)
        ev.unregister(_COMPILE, self)
        self._show(False)
        self.settle()
        return False

    @contextmanager
    def shown_in(self, setter: Callable[[str | None], None]):
        """Route the status into a running display: ``setter(STATUS)`` when compiling starts,
        ``setter(None)`` when it ends."""
        previous, self._setter = self._setter, setter
        try:
            yield self
        finally:
            self._setter = previous

    def span(self) -> Span:
        """A stretch of work timed by this watch: ``with watch.span() as s: ...``, then
        ``s.wall`` and ``s.seconds`` (wall minus the compile and cache-load seconds inside)."""
        return Span(self)

    # -- numba.core.event.Listener ---------------------------------------------------------

    def on_start(self, event) -> None:
        depths = self._depths()
        now = self.clock()
        if depths[_COMPILE] + depths[_LOCK] == 0:
            self._local.jit_t0 = now
        if event.kind == _COMPILE:
            with self._mutex:
                self.compiles += 1
            if depths[_COMPILE] == 0:
                self._local.compile_t0 = now
                self._show(True)
        depths[event.kind] += 1

    def on_end(self, event) -> None:
        depths = self._depths()
        if depths[event.kind] == 0:
            return  # installed while this event was already running: its start was not seen
        depths[event.kind] -= 1
        now = self.clock()
        with self._mutex:
            if event.kind == _COMPILE and depths[_COMPILE] == 0:
                self.compile_s += now - self._local.compile_t0
            if depths[_COMPILE] + depths[_LOCK] == 0:
                self.jit_s += now - self._local.jit_t0
        if event.kind == _COMPILE and depths[_COMPILE] == 0:
            self._show(False)

    def _depths(self) -> dict[str, int]:
        depths = getattr(self._local, "depths", None)
        if depths is None:
            depths = self._local.depths = {_COMPILE: 0, _LOCK: 0}
        return depths

    # -- the status ------------------------------------------------------------------------

    def settle(self) -> None:
        """Plain output only: print the seconds of the compiling reported as started, once it
        has ended. Callers call this at their progress points."""
        if self._burst_start is None or self._depths()[_COMPILE]:
            return
        seconds = self.compile_s - self._burst_start
        self._burst_start = None
        print(f"optrader: compiled kernels in {seconds:.1f} s", file=sys.stderr, flush=True)

    def _show(self, compiling: bool) -> None:
        if not self.show:
            return
        if self._setter is not None:
            self._setter(STATUS if compiling else None)
        elif self._console().is_terminal:
            if compiling and self._spinner is None:
                self._spinner = self._console().status(STATUS)
                self._spinner.start()
            elif not compiling and self._spinner is not None:
                self._spinner.stop()
                self._spinner = None
        elif compiling and self._burst_start is None:
            self._burst_start = self.compile_s
            print(f"optrader: {STATUS} ...", file=sys.stderr, flush=True)

    def _console(self):
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True)
        return self.console


class Span:
    """Wall seconds of a ``with`` block (``wall``) and the parts of them Numba spent compiling
    (``compile_s``) or loading kernels from its disk cache (``cache_load_s``); ``seconds`` is
    the rest, the time the work itself took. ``elapsed()`` inside the block: the same so far."""

    def __init__(self, watch: CompileWatch):
        self.watch = watch
        self.wall = self.jit = self.compile_s = 0.0

    def __enter__(self) -> Span:
        w = self.watch
        self._t0, self._jit0, self._compile0 = w.clock(), w.jit_s, w.compile_s
        return self

    def __exit__(self, *exc) -> bool:
        w = self.watch
        self.wall, self.jit = w.clock() - self._t0, w.jit_s - self._jit0
        self.compile_s = w.compile_s - self._compile0
        return False

    def elapsed(self) -> float:
        """Seconds of work so far: wall since the start minus compile and cache loads."""
        return (self.watch.clock() - self._t0) - (self.watch.jit_s - self._jit0)

    @property
    def seconds(self) -> float:
        return self.wall - self.jit

    @property
    def cache_load_s(self) -> float:
        return max(self.jit - self.compile_s, 0.0)

    def summary(self) -> dict[str, float]:
        """``{"compile_s", "cache_load_s"}`` of the span, rounded to ms, for metrics files."""
        return {"compile_s": round(self.compile_s, 3), "cache_load_s": round(self.cache_load_s, 3)}
