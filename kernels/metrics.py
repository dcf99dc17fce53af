"""Metric kernels: performance of equity curves and of FIFO round trips, vectorized over envs.

Every kernel writes into caller-supplied arrays and validates nothing (``optrader.metrics`` checks
shapes, dtypes and values once; ``equity_defects_nb`` finds the equity curves' defects for it as
``EquityDefect`` bits per row, and ``trade_metrics_nb`` returns the round trips' as
``TradeDefect`` bits from the pass it makes anyway). Metrics of env i go to row i of ``out`` float64
(n_envs, N_METRICS), columns ``Metric``; a kernel fills only its own columns. A ``*_par_nb``
kernel is its serial namesake run over n_chunks chunks of rows in threads (the caller passes a
few chunks per thread: Numba's thread count read inside a kernel would make it uncacheable), with
the same results bit for bit.

**Equity curves.** ``equity`` float64 (n, T+1), currency: column 0 is the initial equity, column
t the close equity of bar t. A row ends at its last non-NaN value (NaN pads envs that ended
early), so env i has T_i >= 0 bars and per-bar simple returns r_t = E_t / E_{t-1} - 1,
t = 1..T_i. With ppy = periods_per_year and rf = (1 + rf_annual)^(1/ppy) - 1 per bar:

- TOTAL_RETURN = E_T / E_0 - 1; CAGR = (E_T / E_0)^(ppy / T) - 1, and -1 when E_T <= 0 (it
  can overflow to inf for a few bars of a fast-growing high-frequency curve).
- ANN_VOL = std(r, ddof=1) sqrt(ppy); SHARPE = mean(r - rf) / std(r, ddof=1) sqrt(ppy).
- SORTINO = mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) sqrt(ppy), the mean over all bars.
- MAX_DRAWDOWN = max_t (1 - E_t / max_{s<=t} E_s), a positive fraction (0: never below a peak);
  MAX_DD_DURATION = the longest run of consecutive bars below the previous peak, in bars (a run
  still open at the end counts); CALMAR = CAGR / MAX_DRAWDOWN.
- VAR_95 = -q with q = the 5 % quantile of r (linear interpolation, numpy's default method);
  CVAR_95 = -mean(r[r <= q]). Both are losses as positive numbers (negative if even the worst
  5 % of bars gained).

Undefined values are NaN, never inf or an exception: TOTAL_RETURN, CAGR, VAR_95 and CVAR_95 with
no bars (T = 0); ANN_VOL, SHARPE and SORTINO with fewer than 2 returns; SHARPE when std(r) = 0;
SORTINO when no bar returned less than rf; CALMAR when CAGR is NaN or MAX_DRAWDOWN = 0. A std or
downside deviation below ``ZERO_RTOL`` x (mean |r| + |rf|) is rounding noise of a constant series
and counts as 0 (ANN_VOL then reports 0).

**Exposure and turnover.** ``gross_notional`` and ``traded_notional`` float64 (n, T), currency per
bar (column t-1 is bar t); only the first T_i columns of row i are read. EXPOSURE = fraction of
the T_i bars with gross notional > 0; TURNOVER = sum(traded) / T_i * ppy / mean(E_1..E_T).

**Trade statistics.** ``trade_metrics_nb`` reads round trips (``kernels.trades``, which matches
fills FIFO) as columns env, pnl and bars; the fields of ``TRADE_DTYPE`` records serve as they
are (strided views, no copies).

**Summation order.** Every sum runs in one fixed order, which fixes its bits: over bars for the
return, drawdown and equity sums; over the returns as ``select_nb`` leaves them for the VaR tail
and the two dispersions, so that selection's exact sequence of swaps is part of the results
(``tests/kernels/test_metrics_speed_paths.py`` holds the plain loops the fast ones must match).
"""

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

# the round-trip kernels lived here: importable from kernels.metrics as before
from kernels.trades import QTY_RTOL as QTY_RTOL
from kernels.trades import round_trips_nb as round_trips_nb


class MetricT(NamedTuple):
    """Columns of the per-env metrics ``out`` float64 (n, N_METRICS); see the module docstring."""

    TOTAL_RETURN: int = 0
    CAGR: int = 1
    ANN_VOL: int = 2
    SHARPE: int = 3
    SORTINO: int = 4
    CALMAR: int = 5
    MAX_DRAWDOWN: int = 6  # positive fraction
    MAX_DD_DURATION: int = 7  # bars
    VAR_95: int = 8  # positive = loss, per bar
    CVAR_95: int = 9
    WIN_RATE: int = 10  # trades with pnl > 0 / trades
    PROFIT_FACTOR: int = 11  # sum of wins / |sum of losses|
    AVG_WIN: int = 12  # currency
    AVG_LOSS: int = 13  # currency, positive
    EXPECTANCY: int = 14  # mean pnl per trade, currency
    KELLY: int = 15  # W - (1 - W) / (AVG_WIN / AVG_LOSS)
    N_TRADES: int = 16
    AVG_TRADE_BARS: int = 17
    MAX_CONSEC_LOSSES: int = 18  # in exit order
    EXPOSURE: int = 19  # fraction of bars with any position
    TURNOVER: int = 20  # annualised traded notional / average equity


Metric = MetricT()
N_METRICS = len(Metric)
EQUITY_METRICS = Metric[Metric.TOTAL_RETURN:Metric.CVAR_95 + 1]
TRADE_METRICS = Metric[Metric.WIN_RATE:Metric.MAX_CONSEC_LOSSES + 1]
NOTIONAL_METRICS = (Metric.EXPOSURE, Metric.TURNOVER)


class EquityDefectT(NamedTuple):
    """Bits of the per-row defect mask of ``equity_defects_nb`` (0: a valid curve)."""

    INF: int = 1  # an inf anywhere in the row
    INITIAL: int = 2  # column 0 is not > 0 (<= 0 or NaN)
    GAP: int = 4  # a NaN followed by a value: NaN is only end padding
    NOT_POSITIVE: int = 8  # equity <= 0 on a bar that has a next bar (its return is undefined)


EquityDefect = EquityDefectT()


class TradeDefectT(NamedTuple):
    """Bits that ``trade_metrics_nb`` returns (0: every round trip was valid)."""

    ENV: int = 1  # an env id outside [0, n_envs) (the round trip is skipped)
    PNL: int = 2  # a NaN or inf pnl: an open lot, not a round trip


TradeDefect = TradeDefectT()

ZERO_RTOL = 1e-12  # a dispersion this small relative to the returns is rounding noise
VAR_LEVEL = 0.05
SELECT_BLOCK = 128  # positions select_nb classifies per block (a cache-resident scratch)


# ---- equity curves -----------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def row_bars_nb(equity, i):
    """Number of bars T_i of row i: its last non-NaN column (the NaN padding starts after it)."""
    last = equity.shape[1] - 1
    while last > 0 and math.isnan(equity[i, last]):
        last -= 1
    return last


@njit(cache=True, nogil=True, error_model="numpy")
def equity_defects_nb(equity, out):
    """Write into out uint8 (n,) the ``EquityDefect`` bits of each row of equity (n, T+1)."""
    _equity_defects_rows_nb(equity, 0, equity.shape[0], out)


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def equity_defects_par_nb(n_chunks, equity, out):
    """equity_defects_nb on n_chunks chunks of rows in parallel."""
    n = equity.shape[0]
    n_chunks = max(1, min(n, n_chunks))
    chunk = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        _equity_defects_rows_nb(equity, c * chunk, min(n, c * chunk + chunk), out)


@njit(cache=True, nogil=True, error_model="numpy")
def _equity_defects_rows_nb(equity, lo, hi, out):
    for i in range(lo, hi):
        row = equity[i]
        x = row[0]
        inf = abs(x) == np.inf
        gap = False
        not_positive = False
        # no early exit and each pair (row[t-1], row[t]) read afresh: the loop vectorizes
        for t in range(1, row.shape[0]):
            p = row[t - 1]
            x = row[t]
            value = x == x
            inf |= abs(x) == np.inf
            gap |= (p != p) & value
            not_positive |= (p <= 0.0) & value
        bits = 0
        if inf:
            bits |= EquityDefect.INF
        if not row[0] > 0.0:
            bits |= EquityDefect.INITIAL
        if gap:
            bits |= EquityDefect.GAP
        if not_positive:
            bits |= EquityDefect.NOT_POSITIVE
        out[i] = bits


@njit(cache=True, nogil=True, error_model="numpy")
def select_nb(a, n, k):
    """Reorder a[:n] in place so that a[k] is its k-th smallest value, a[:k] <= a[k] <= a[k+1:n]
    (Hoare/Wirth selection, O(n) expected; falls back to a sort on adversarial input)."""
    off = np.empty((2, SELECT_BLOCK), dtype=np.uint64)
    return _select_nb(a, n, k, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _select_nb(a, n, k, off):
    """select_nb with its scratch off uint64 (2, SELECT_BLOCK).

    The order a[:n] is left in is part of the results: the tail and dispersion sums of
    equity_metrics_nb run over it, so this must make exactly the swaps of the plain Hoare loop
    below. Its i-scan stops at each value >= pivot from the left, its j-scan at each value
    <= pivot from the right, and the m-th stops of the two swap while they have not crossed.
    While more than two blocks lie between the scans, a block of stops is found without
    branches (the mispredicted ``while a[i] < pivot`` was most of the time) and the pending stops
    of both sides swap pairwise; near the crossing the plain loop takes over from the state
    (i, j) after the last pair, in which everything in [i, j] is still untouched."""
    off_l = off[0]
    off_r = off[1]
    lo, hi = 0, n - 1
    rounds = 0
    while lo < hi:
        rounds += 1
        if rounds > 64:  # far beyond the expected ~log2(n) rounds: finish with a sort
            a[lo:hi + 1].sort()
            break
        mid = (lo + hi) >> 1
        # median of three as the pivot: sorted or reversed runs of returns stay O(n)
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i, j = lo, hi
        scan_l, scan_r = lo, hi  # the positions in between are unclassified
        n_l = n_r = 0  # pending stops, from off_l[s_l] / off_r[s_r] on
        s_l = s_r = 0
        while scan_r - scan_l + 1 >= 2 * SELECT_BLOCK:
            # unsigned positions: Numba then skips its negative-index wraparound on each access
            if n_l == 0:
                s_l = 0
                for t in range(SELECT_BLOCK):
                    u = np.uint64(scan_l + t)
                    off_l[n_l] = u
                    n_l += not (a[u] < pivot)
                scan_l += SELECT_BLOCK
            if n_r == 0:
                s_r = 0
                for t in range(SELECT_BLOCK):
                    u = np.uint64(scan_r - t)
                    off_r[n_r] = u
                    n_r += not (pivot < a[u])
                scan_r -= SELECT_BLOCK
            n_pair = min(n_l, n_r)
            for m in range(n_pair):
                u = off_l[np.uint64(s_l + m)]
                v = off_r[np.uint64(s_r + m)]
                a[u], a[v] = a[v], a[u]
            if n_pair > 0:
                i = np.int64(off_l[s_l + n_pair - 1]) + 1
                j = np.int64(off_r[s_r + n_pair - 1]) - 1
                n_l -= n_pair
                n_r -= n_pair
                s_l += n_pair
                s_r += n_pair
        while i <= j:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@njit(cache=True, nogil=True, error_model="numpy")
def quantile_nb(a, n, q):
    """The q-quantile of a[:n] (n >= 1), numpy's default linear interpolation; reorders a[:n]."""
    off = np.empty((2, SELECT_BLOCK), dtype=np.uint64)
    return _quantile_nb(a, n, q, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _quantile_nb(a, n, q, off):
    """quantile_nb with the scratch of _select_nb."""
    virtual = (n - 1) * q
    k = int(math.floor(virtual))
    if k >= n - 1:
        return _select_nb(a, n, n - 1, off)
    lo = _select_nb(a, n, k, off)
    hi = _min_nb(a, k + 1, n)  # a[k+1:] >= a[k]: the next order statistic is their minimum
    gamma = virtual - k
    diff = hi - lo
    # the same two-sided formula as numpy's _lerp, so r <= q agrees bit for bit at the boundary
    if gamma >= 0.5:
        return hi - diff * (1.0 - gamma)
    return lo + diff * gamma


@njit(cache=True, nogil=True, error_model="numpy")
def _min_nb(a, lo, hi):
    """min(a[lo:hi]) (hi > lo) bit for bit as ``m = a[lo]; m = min(m, a[t])`` for t = lo+1..hi-1,
    from four interleaved running minima (one chain of compare and select was the bottleneck).
    They can keep a different one of equal values only for 0.0 and -0.0: then the plain loop."""
    m0 = m1 = m2 = m3 = a[lo]
    t = lo + 1
    while t + 4 <= hi:
        m0 = min(m0, a[t])
        m1 = min(m1, a[t + 1])
        m2 = min(m2, a[t + 2])
        m3 = min(m3, a[t + 3])
        t += 4
    for u in range(t, hi):
        m0 = min(m0, a[u])
    m = min(min(m0, m1), min(m2, m3))
    if m == 0.0:
        m = a[lo]
        for u in range(lo + 1, hi):
            m = min(m, a[u])
    return m


@njit(cache=True, nogil=True, error_model="numpy")
def equity_metrics_nb(equity, periods_per_year, rf_annual, out):
    """Fill the equity-curve columns of out (n, N_METRICS) from equity (n, T+1); see above."""
    _equity_rows_nb(equity, 0, equity.shape[0], periods_per_year, rf_annual, out)


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def equity_metrics_par_nb(n_chunks, equity, periods_per_year, rf_annual, out):
    """equity_metrics_nb on n_chunks chunks of rows in parallel (a few per thread: rows differ in
    length); the same results bit for bit."""
    n = equity.shape[0]
    n_chunks = max(1, min(n, n_chunks))
    chunk = (n + n_chunks - 1) // n_chunks
    chunk += chunk & 1  # even: the rows go in pairs
    for c in prange(n_chunks):
        _equity_rows_nb(equity, min(n, c * chunk), min(n, c * chunk + chunk), periods_per_year,
                        rf_annual, out)


@njit(cache=True, nogil=True, error_model="numpy")
def _equity_rows_nb(equity, lo, hi, periods_per_year, rf_annual, out):
    """Rows lo..hi-1 of equity_metrics_nb, in pairs, with one scratch for all of them."""
    rf = (1.0 + rf_annual) ** (1.0 / periods_per_year) - 1.0
    ann = math.sqrt(periods_per_year)
    ret = np.empty((2, max(equity.shape[1] - 1, 1)))
    off = np.empty((2, SELECT_BLOCK), dtype=np.uint64)
    for a in range(lo, hi, 2):
        _equity_pair_nb(equity, a, min(a + 1, hi - 1), periods_per_year, rf, ann, ret, off, out)


@njit(cache=True, nogil=True, error_model="numpy")
def _equity_pair_nb(equity, a, b, periods_per_year, rf, ann, ret, off, out):
    """Rows a and b of equity_metrics_nb (a == b: row a alone); ret float64 (2, >= T) and off
    are scratch. A row's sums are serial chains of additions, several cycles of latency per bar
    that its other work does not fill: the two rows step in one loop, their chains side by
    side (each sum keeps its order, so its bits)."""
    ra = ret[0]
    rb = ret[1]
    na = row_bars_nb(equity, a)
    nb = row_bars_nb(equity, b)
    _returns_nb(equity[a], na, ra)
    _returns_nb(equity[b], nb, rb)
    ca = _curve_start(equity[a, 0])
    cb = _curve_start(equity[b, 0])
    m = min(na, nb)
    for t in range(m):
        ca = _curve_step(ca, equity[a, t + 1], ra[t])
        cb = _curve_step(cb, equity[b, t + 1], rb[t])
    for t in range(m, na):
        ca = _curve_step(ca, equity[a, t + 1], ra[t])
    for t in range(m, nb):
        cb = _curve_step(cb, equity[b, t + 1], rb[t])
    qa = _curve_metrics_nb(equity, a, na, ca, periods_per_year, ra, off, out)
    qb = _curve_metrics_nb(equity, b, nb, cb, periods_per_year, rb, off, out)
    # the tail and both dispersions, each summed in the order the selection left the returns in
    # (the reference order of these sums)
    mean_a = ca[0] / max(na, 1)
    mean_b = cb[0] / max(nb, 1)
    da = (0.0, 0, 0.0, 0.0)
    db = (0.0, 0, 0.0, 0.0)
    for t in range(m):
        da = _spread_step(da, ra[t], qa, mean_a, rf)
        db = _spread_step(db, rb[t], qb, mean_b, rf)
    for t in range(m, na):
        da = _spread_step(da, ra[t], qa, mean_a, rf)
    for t in range(m, nb):
        db = _spread_step(db, rb[t], qb, mean_b, rf)
    _spread_metrics_nb(a, na, ca, da, qa, mean_a, rf, ann, out)
    _spread_metrics_nb(b, nb, cb, db, qb, mean_b, rf, ann, out)


@njit(cache=True, nogil=True, error_model="numpy")
def _returns_nb(row, n_ret, ret):
    """ret[t-1] = row[t] / row[t-1] - 1 for t = 1..n_ret (a loop that vectorizes)."""
    for t in range(n_ret):
        ret[t] = row[t + 1] / row[t] - 1.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _curve_start(e0):
    """(total, total_abs, peak, low, max_dd, run, max_run) before the first bar."""
    return 0.0, 0.0, e0, e0, 0.0, 0, 0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _curve_step(c, e, r):
    """The running sums and drawdown state c after a bar of equity e and return r."""
    total, total_abs, peak, low, max_dd, run, max_run = c
    total += r
    total_abs += abs(r)
    if e < peak:
        run += 1
        low = min(low, e)  # the lowest equity since the peak
    else:
        # a drawdown ends: 1 - e / peak is monotone in e (so is its rounding), its maximum is
        # at the lowest e, one division per drawdown instead of one per bar below a peak
        if low < peak:
            max_dd = max(max_dd, 1.0 - low / peak)
        max_run = max(max_run, run)
        peak = e
        low = e
        run = 0
    return total, total_abs, peak, low, max_dd, run, max_run


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _spread_step(d, x, q, mean, rf):
    """(tail, n_tail, ss, down) after return x. Without a branch, a return above rf adds
    0.0 * 0.0 to the downside sum, which changes no bit of it (it is never -0.0)."""
    tail, n_tail, ss, down = d
    if x <= q:
        tail += x
        n_tail += 1
    dev = x - mean
    ss += dev * dev
    y = min(x - rf, 0.0)
    down += y * y
    return tail, n_tail, ss, down


@njit(cache=True, nogil=True, error_model="numpy")
def _curve_metrics_nb(equity, i, n_ret, c, periods_per_year, ret, off, out):
    """Write the drawdown, return and growth metrics of row i from its curve state c and NaN to
    the rest; returns the VaR quantile of ret[:n_ret] (reordered), NaN with no bars."""
    total, total_abs, peak, low, max_dd, run, max_run = c
    if low < peak:  # a drawdown still open at the end
        max_dd = max(max_dd, 1.0 - low / peak)
    max_run = max(max_run, run)
    out[i, Metric.MAX_DRAWDOWN] = max_dd
    out[i, Metric.MAX_DD_DURATION] = max_run
    nan = np.nan
    for col in (Metric.TOTAL_RETURN, Metric.CAGR, Metric.ANN_VOL, Metric.SHARPE,
                Metric.SORTINO, Metric.CALMAR, Metric.VAR_95, Metric.CVAR_95):
        out[i, col] = nan
    if n_ret == 0:
        return nan
    growth = equity[i, n_ret] / equity[i, 0]
    out[i, Metric.TOTAL_RETURN] = growth - 1.0
    cagr = growth ** (periods_per_year / n_ret) - 1.0 if growth > 0.0 else -1.0
    out[i, Metric.CAGR] = cagr
    if max_dd > 0.0:
        out[i, Metric.CALMAR] = cagr / max_dd
    return _quantile_nb(ret, n_ret, VAR_LEVEL, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _spread_metrics_nb(i, n_ret, c, d, q, mean, rf, ann, out):
    """Write the VaR, CVaR, volatility, Sharpe and Sortino of row i (c: its curve state, d: its
    tail and dispersion sums)."""
    if n_ret == 0:
        return
    total_abs = c[1]
    tail, n_tail, ss, down = d
    out[i, Metric.VAR_95] = -q
    out[i, Metric.CVAR_95] = -tail / n_tail
    if n_ret < 2:
        return
    std = math.sqrt(ss / (n_ret - 1))
    dd_dev = math.sqrt(down / n_ret)
    tiny = ZERO_RTOL * (total_abs / n_ret + abs(rf))
    excess = mean - rf
    if std <= tiny:
        out[i, Metric.ANN_VOL] = 0.0
    else:
        out[i, Metric.ANN_VOL] = std * ann
        out[i, Metric.SHARPE] = excess / std * ann
    if dd_dev > tiny:
        out[i, Metric.SORTINO] = excess / dd_dev * ann


@njit(cache=True, nogil=True, error_model="numpy")
def exposure_turnover_nb(gross_notional, traded_notional, equity, periods_per_year, out):
    """Fill EXPOSURE and TURNOVER of out (n, N_METRICS) from per-bar notionals (n, T) and the
    equity curves (n, T+1) that give each row's length; NaN for a row with no bars."""
    for i in range(equity.shape[0]):
        n_bars = row_bars_nb(equity, i)
        out[i, Metric.EXPOSURE] = np.nan
        out[i, Metric.TURNOVER] = np.nan
        if n_bars == 0:
            continue
        held = 0
        traded = 0.0
        for t in range(n_bars):
            if gross_notional[i, t] > 0.0:
                held += 1
            traded += traded_notional[i, t]
        _exposure_turnover_row(i, held, traded, equity, n_bars, periods_per_year, out)


@njit(cache=True, nogil=True, error_model="numpy")
def exposure_turnover_sums_nb(held_bars, traded_sum, equity, periods_per_year, out):
    """EXPOSURE and TURNOVER from per-env sums accumulated during a run: held_bars int64 (n,)
    bars with gross notional > 0, traded_sum float64 (n,) currency; rows as above."""
    _exposure_turnover_sums_rows_nb(held_bars, traded_sum, equity, periods_per_year, out, 0,
                                    equity.shape[0])


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def exposure_turnover_sums_par_nb(n_chunks, held_bars, traded_sum, equity, periods_per_year,
                                  out):
    """exposure_turnover_sums_nb on n_chunks chunks of rows in parallel; the same results."""
    n = equity.shape[0]
    n_chunks = max(1, min(n, n_chunks))
    chunk = (n + n_chunks - 1) // n_chunks
    chunk += chunk & 1  # even: the rows go in pairs
    for c in prange(n_chunks):
        _exposure_turnover_sums_rows_nb(held_bars, traded_sum, equity, periods_per_year, out,
                                        min(n, c * chunk), min(n, c * chunk + chunk))


@njit(cache=True, nogil=True, error_model="numpy")
def _exposure_turnover_sums_rows_nb(held_bars, traded_sum, equity, periods_per_year, out, lo,
                                    hi):
    # rows in pairs, as in _equity_pair_nb: the two equity sums are chains side by side
    for a in range(lo, hi, 2):
        b = min(a + 1, hi - 1)
        na = row_bars_nb(equity, a)
        nb = row_bars_nb(equity, b)
        eq_a = 0.0
        eq_b = 0.0
        m = min(na, nb)
        for t in range(m):
            eq_a += equity[a, t + 1]
            eq_b += equity[b, t + 1]
        for t in range(m, na):
            eq_a += equity[a, t + 1]
        for t in range(m, nb):
            eq_b += equity[b, t + 1]
        _exposure_turnover_out(a, held_bars[a], traded_sum[a], eq_a, na, periods_per_year, out)
        _exposure_turnover_out(b, held_bars[b], traded_sum[b], eq_b, nb, periods_per_year, out)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _exposure_turnover_row(i, held, traded, equity, n_bars, periods_per_year, out):
    eq = 0.0
    for t in range(n_bars):
        eq += equity[i, t + 1]
    _exposure_turnover_out(i, held, traded, eq, n_bars, periods_per_year, out)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _exposure_turnover_out(i, held, traded, eq, n_bars, periods_per_year, out):
    """EXPOSURE and TURNOVER of row i from its sums over its n_bars bars (eq: of equity)."""
    out[i, Metric.EXPOSURE] = np.nan
    out[i, Metric.TURNOVER] = np.nan
    if n_bars == 0:
        return
    out[i, Metric.EXPOSURE] = held / n_bars
    if eq > 0.0:
        out[i, Metric.TURNOVER] = traded * periods_per_year / eq  # (sum/T) * ppy / (eq/T)


# ---- trade statistics --------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def trade_metrics_nb(trade_env, trade_pnl, trade_bars, n_envs, out):
    """Fill the trade columns of out (n_envs, N_METRICS) from round trips (m,) in exit order
    per env: trade_env int64, trade_pnl float64, trade_bars int64 or float64 (any strides, e.g.
    fields of ``TRADE_DTYPE`` records). A pnl of exactly 0 is neither a win nor a loss (it still
    counts as a trade). NaN: WIN_RATE, EXPECTANCY, AVG_TRADE_BARS with no trades; AVG_WIN with
    no wins; AVG_LOSS and PROFIT_FACTOR with no losses; KELLY when AVG_WIN or AVG_LOSS is NaN.
    Returns the ``TradeDefect`` bits of the round trips (0: the results are valid)."""
    # per env: trades, wins, losses, sum of wins, |sum of losses|, sum of pnl, sum of bars,
    # current losing streak, longest losing streak
    acc = np.zeros((n_envs, 9))
    bits = 0
    for j in range(trade_env.shape[0]):
        e = trade_env[j]
        if e < 0 or e >= n_envs:
            bits |= TradeDefect.ENV
            continue
        a = acc[e]
        p = trade_pnl[j]
        if not math.isfinite(p):
            bits |= TradeDefect.PNL
        a[0] += 1.0
        if p > 0.0:
            a[1] += 1.0
            a[3] += p
        if p < 0.0:
            a[2] += 1.0
            a[4] -= p
            a[7] += 1.0
            a[8] = max(a[8], a[7])
        else:
            a[7] = 0.0
        a[5] += p
        a[6] += trade_bars[j]
    nan = np.nan
    for e in range(n_envs):
        n, wins, losses = acc[e, 0], acc[e, 1], acc[e, 2]
        avg_win = acc[e, 3] / wins if wins > 0.0 else nan
        avg_loss = acc[e, 4] / losses if losses > 0.0 else nan
        win_rate = wins / n if n > 0.0 else nan
        out[e, Metric.N_TRADES] = n
        out[e, Metric.WIN_RATE] = win_rate
        out[e, Metric.EXPECTANCY] = acc[e, 5] / n if n > 0.0 else nan
        out[e, Metric.AVG_TRADE_BARS] = acc[e, 6] / n if n > 0.0 else nan
        out[e, Metric.MAX_CONSEC_LOSSES] = acc[e, 8]
        out[e, Metric.AVG_WIN] = avg_win
        out[e, Metric.AVG_LOSS] = avg_loss
        out[e, Metric.PROFIT_FACTOR] = acc[e, 3] / acc[e, 4] if losses > 0.0 else nan
        if wins > 0.0 and losses > 0.0:
            out[e, Metric.KELLY] = win_rate - (1.0 - win_rate) / (avg_win / avg_loss)
        else:
            out[e, Metric.KELLY] = nan
    return bits
