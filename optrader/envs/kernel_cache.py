"""Choose the compiled step/reset kernels for a config: serial or threaded, with or without
fused custom rewards.

A custom-reward build is memoised per process and cached on disk under a name derived from
``reward_fingerprint``: a digest of each reward's code (bytecode, constants, the scalar globals
and closure values it reads, the njit functions it calls, recursively) and its weight, plus the
stamp (mtime, size) of its source file, as Numba's own cache uses. A new process with the same
rewards loads the build instead of compiling it. A reward whose code cannot be fingerprinted
(it closes over or reads an array or another object) is compiled once per process.
"""

from __future__ import annotations

import hashlib
import os
import types

import numpy as np
from numba import njit

from kernels import step as step_module

_custom_builds: dict = {}


def kernels(custom: tuple, parallel: bool, simulation: bool = False):
    """(step_kernel, reset_kernel) for the custom reward pairs ``((fn, weight), ...)``, in data
    mode or simulation mode."""
    m = step_module
    if simulation:
        reset = m.sim_reset_envs_par_nb if parallel else m.sim_reset_envs_nb
    else:
        reset = m.reset_envs_par_nb if parallel else m.reset_envs_nb
    if not custom:
        if simulation:
            return (m.sim_step_envs_par_nb if parallel else m.sim_step_envs_nb), reset
        return (m.step_envs_par_nb if parallel else m.step_envs_nb), reset
    key = (tuple((id(fn), w) for fn, w in custom), parallel, simulation)
    if key not in _custom_builds:
        fused = combine_rewards(custom)
        step = m.step_kernel_with_reward(fused, parallel, simulation,
                                         cache_key=reward_fingerprint(custom))
        _custom_builds[key] = (step, custom)
    return _custom_builds[key][0], reset


_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def reward_fingerprint(custom: tuple) -> str | None:
    """A 20-hex-digit digest of the custom reward pairs ``((fn, weight), ...)``, or None when
    a reward reads something that cannot be digested (then the build is not cached)."""
    h = hashlib.sha1()
    _digest_code(h, combine_rewards.__code__)  # how the rewards are fused is part of the build
    try:
        for fn, w in custom:
            h.update(repr(float(w)).encode())
            _digest_function(h, fn, depth=0)
    except _Uncacheable:
        return None
    return h.hexdigest()[:20]


class _Uncacheable(Exception):
    pass


def _digest_function(h, fn, depth: int) -> None:
    """Feed a jitted function's code, the values it reads and its source file stamp into h."""
    py = getattr(fn, "py_func", None)
    if py is None or depth > 8:
        raise _Uncacheable
    code = py.__code__
    h.update(f"{py.__module__}.{py.__qualname__}".encode())
    _digest_code(h, code)
    try:
        st = os.stat(code.co_filename)
        h.update(f"{code.co_filename}:{st.st_mtime_ns}:{st.st_size}".encode())
    except OSError:
        pass  # defined interactively: the bytecode is the whole story
    cells = [c.cell_contents for c in (py.__closure__ or ())]
    glob = [py.__globals__[n] for n in _global_names(code) if n in py.__globals__]
    for value in (*cells, *glob):
        if isinstance(value, _SCALARS):
            h.update(repr(value).encode())
        elif hasattr(value, "py_func"):  # a jitted callee: its code is part of this reward
            _digest_function(h, value, depth + 1)
        elif isinstance(value, (type(os), np.ufunc, types.BuiltinFunctionType)):
            h.update(getattr(value, "__name__", "").encode())  # np, np.exp, abs: fixed code
        else:
            raise _Uncacheable  # an array or object Numba would freeze as a constant


def _digest_code(h, code) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _digest_code(h, const)
        else:
            h.update(repr(const).encode())


def _global_names(code) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            names += _global_names(const)
    return names


def combine_rewards(custom: tuple):
    """One jitted function returning sum(weight x fn(...)) over the custom rewards."""
    fn, w = custom[0]
    if len(custom) == 1:
        @njit(nogil=True)
        def weighted(equity_prev, equity, cost, drawdown, gross, step):
            return w * fn(equity_prev, equity, cost, drawdown, gross, step)
        return weighted
    rest = combine_rewards(custom[1:])

    @njit(nogil=True)
    def summed(equity_prev, equity, cost, drawdown, gross, step):
        return (w * fn(equity_prev, equity, cost, drawdown, gross, step)
                + rest(equity_prev, equity, cost, drawdown, gross, step))
    return summed
