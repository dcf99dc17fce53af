"""Per-env counter-based random numbers (splitmix64), so kernels never hold a Generator.

State: uint64 (n,), one word per env, seeded from the Python side's ``np_random``.
"""

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def next_u64_nb(state, i):
    """Advance env i's splitmix64 state and return the next uint64."""
    # all operands are uint64 so Numba keeps integer arithmetic (mixing with int64 gives float64)
    s = state[i] + _GOLDEN
    state[i] = s
    z = s
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def randint_nb(state, i, lo, hi):
    """Uniform integer in [lo, hi] (inclusive) for env i; modulo bias is < 2**-40 for spans < 2**24."""
    span = np.uint64(hi - lo + 1)
    return lo + np.int64(next_u64_nb(state, i) % span)
