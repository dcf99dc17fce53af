"""Choose the compiled step/reset kernels for a config: serial or threaded, with or without
fused custom rewards. Custom-reward builds are compiled once per process and memoised here."""

from __future__ import annotations

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
        _custom_builds[key] = (m.step_kernel_with_reward(fused, parallel, simulation), custom)
    return _custom_builds[key][0], reset


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
