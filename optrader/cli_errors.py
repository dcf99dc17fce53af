"""The error handling every command line shares: one line on stderr and a documented exit code.

Exit codes of every ``python -m optrader...`` command (README, "Exit codes"):

* 0: success;
* 1: a check ran and failed (``optrader.validate``: a promotion gate; ``optrader.data
  validate``: the score is below ``--min-score``);
* 2: a usage, config, data or file error: one line ``PROG: message`` on stderr, nothing
  written (a Hydra run directory the failed command made and wrote nothing into is removed);
* 3: an internal error, a bug: the traceback, then a line saying so;
* 130: interrupted (Ctrl-C).

``HYDRA_FULL_ERROR=1`` shows the traceback of a usage error too.

Usage errors are the exceptions in ``USAGE_ERRORS``: ``ValueError`` (``ConfigError``,
``DataError``, ``ReportError``, pyarrow's ``ArrowInvalid``, pandas' ``ParserError``, a file that
is not UTF-8), ``OSError`` (a path that is missing, a file where a directory must be, no
permission), Hydra's and OmegaConf's errors (overrides, interpolations) and a missing optional
package (``ModuleNotFoundError``). Anything else escaping a command is a bug.

Hydra commands (``optrader.train``, ``.backtest``, ``.validate``) use ``HydraCommand``: its
``task`` decorator goes under ``@hydra.main`` and its ``run`` calls the decorated main.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from optrader.output_paths import blocking_file

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
BUG_LINE = ("internal error: this is a bug in optrader, not in your input; please report it "
            "with the traceback above")
# what Hydra writes into a run directory before the task runs
HYDRA_SUBDIR, HYDRA_FILES = ".hydra", frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})
# Hydra flags followed by a value that is not an override
VALUE_FLAGS = frozenset({"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
                         "-c", "--cfg", "-p", "--package", "-i", "--info",
                         "--experimental-rerun"})
RUN_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def usage_errors() -> tuple[type[BaseException], ...]:
    """The exception classes reported as usage errors (exit 2, one line)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (ValueError, OSError, HydraException, OmegaConfBaseException, ModuleNotFoundError)


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: an OSError as ``path: reason``; any other message with its line
    breaks and indentation folded into single spaces."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        return f"{where}: {exc.strerror}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def full_error() -> bool:
    """The user asked for tracebacks (``HYDRA_FULL_ERROR=1``, as Hydra's own switch)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def report(prog: str, exc: BaseException) -> int:
    """Print the line (or traceback) for ``exc`` escaping command ``prog``; the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, usage_errors()):
        print(f"{prog}: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"{prog}: {BUG_LINE}", file=sys.stderr)
    return EXIT_BUG


def run(prog: str, func: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """``func(*args, **kwargs)`` under the handler: its exit code (None -> 0), or the code of
    the exception it raised (``report``). SystemExit passes through."""
    try:
        code = func(*args, **kwargs)
    except (Exception, KeyboardInterrupt) as exc:
        if full_error() and isinstance(exc, usage_errors()):
            raise
        return report(prog, exc)
    return EXIT_OK if code is None else int(code)


def main(prog: str, func: Callable[..., int | None], *args: Any) -> NoReturn:
    """``sys.exit(run(prog, func, *args))``: the body of a ``__main__`` block."""
    sys.exit(run(prog, func, *args))


# ---------------------------------------------------------------------------------------------
# Hydra commands


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, override strings) of a command line."""
    flags, overrides = [], []
    skip = False
    for arg in argv:
        if skip or arg.startswith("-"):
            skip = not skip and arg in VALUE_FLAGS
            flags.append(arg)
        else:
            overrides.append(arg)
    return flags, overrides


def check_run_dirs(overrides: Sequence[str]) -> set[Path]:
    """Refuse a ``hydra.run.dir`` / ``hydra.sweep.dir`` that is a file or lies under one
    (ConfigError); return the given run dirs and their ancestors that exist already."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from optrader.checks import ConfigError

    parser = OverridesParser.create()
    existing = set()
    for arg in overrides:
        try:
            o = parser.parse_override(arg)
        except HydraException:
            continue  # Hydra reports its own syntax errors
        if o.key_or_group not in RUN_DIR_KEYS or o.is_sweep_override() or o.is_delete():
            continue
        path = Path(str(o.value())).expanduser()
        if "${" in str(path):
            continue  # an interpolation: Hydra resolves it
        p = blocking_file(path)
        if p is not None:
            what = "is a file" if p == path else f"lies under the file {str(p)!r}"
            raise ConfigError(f"{o.key_or_group}: expected a directory for the run's "
                              f"outputs, got {str(path)!r}, which {what}; choose another "
                              f"path (nothing was written)")
        existing |= {p.resolve() for p in (path, *path.parents) if p.is_dir()}
    return existing


def existing_output_dirs(overrides: Sequence[str]) -> set[Path]:
    """The directories a failed run must not remove: the given run dirs and their ancestors
    that exist (``check_run_dirs``), and Hydra's default ``outputs/`` with its date dirs."""
    root = Path("outputs")
    days = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return check_run_dirs(overrides) | {p.resolve() for p in (root, *days) if p.is_dir()}


def remove_untouched_run_dir(run_dir: str | Path, job_name: str,
                             keep: set[Path] = frozenset()) -> bool:
    """Remove ``run_dir`` if it holds nothing but what Hydra writes before a task runs
    (``.hydra/{config,hydra,overrides}.yaml`` and ``JOB_NAME.log``) and is not in ``keep``
    (directories that existed before the command); then its parents that are left empty, up
    to the first one in ``keep`` or the working directory. True if ``run_dir`` was removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or run_dir.resolve() in keep:
        return False
    entries = {p.name: p for p in run_dir.iterdir()}
    if not set(entries) <= {HYDRA_SUBDIR, f"{job_name}.log"}:
        return False
    sub = entries.get(HYDRA_SUBDIR)
    if sub is not None and (not sub.is_dir() or sub.is_symlink()
                            or not {p.name for p in sub.iterdir()} <= HYDRA_FILES):
        return False
    shutil.rmtree(run_dir)
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:
        if parent in keep or parent == cwd or any(parent.iterdir()):
            break
        parent.rmdir()
    return True


class HydraCommand:
    """One Hydra command line under the shared handler.

    ``task`` wraps the task function (below ``@hydra.main``): when it fails, the run directory
    is removed if the task wrote nothing into it (``remove_untouched_run_dir``). ``run(main,
    argv)`` checks the run dir overrides, runs Hydra's ``main`` with ``HYDRA_FULL_ERROR=1`` so
    that every error (a rejected override, a failed task) reaches this handler instead of
    Hydra's printer, turns a rejected override into ``optrader.config.override_error``'s line
    with its did-you-mean, and exits with the code of ``report``.
    """

    def __init__(self, prog: str):
        self.prog = prog
        self.wanted_full = False  # the user's own HYDRA_FULL_ERROR=1 (run sets it for Hydra)
        self.existing: set[Path] = set()
        self.started = False

    def task(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @functools.wraps(fn)
        def wrapped(cfg):
            from hydra.core.hydra_config import HydraConfig

            self.started = True
            hc = HydraConfig.get()
            try:
                return fn(cfg)
            except BaseException as exc:
                if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                    remove_untouched_run_dir(hc.runtime.output_dir, hc.job.name, self.existing)
                if isinstance(exc, SystemExit) or (self.wanted_full
                                                   and isinstance(exc, usage_errors())):
                    raise
                # exit here: an exception reaching Hydra would be printed with its own header
                sys.exit(report(self.prog, exc))
        return wrapped

    def run(self, main: Callable[[], Any], argv: Sequence[str],
            prepare: Callable[[list[str]], list[str]] | None = None) -> NoReturn:
        """Run Hydra's ``main`` on ``prepare(argv)`` (the command's own rewriting, whose
        ConfigError is reported like any other) and exit with the code of the outcome."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from optrader.config import override_error

        self.wanted_full = full_error()
        saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
        self.started = False
        overrides: list[str] = []
        try:
            argv = list(argv) if prepare is None else prepare(list(argv))
            overrides = split_argv(argv)[1]
            self.existing = existing_output_dirs(overrides)
            sys.argv = [sys.argv[0], *argv]
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing
            main()
        except (Exception, KeyboardInterrupt) as exc:
            if self.wanted_full and isinstance(exc, usage_errors()):
                raise
            if isinstance(exc, (HydraException, OmegaConfBaseException)) and not self.started:
                exc = override_error(exc, overrides)
            elif isinstance(exc, OSError) and exc.filename is not None and not self.started:
                # Hydra's mkdir of the run dir (a file in the way of the default outputs/...)
                print(f"{self.prog}: cannot create the run directory: {one_line(exc)}; set "
                      f"hydra.run.dir=DIR", file=sys.stderr)
                sys.exit(EXIT_USAGE)
            sys.exit(report(self.prog, exc))
        finally:
            sys.argv = saved_argv
            if saved_env is None:
                os.environ.pop("HYDRA_FULL_ERROR", None)
            else:
                os.environ["HYDRA_FULL_ERROR"] = saved_env
        sys.exit(EXIT_OK)
