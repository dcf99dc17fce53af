"""Round-trip kernels: FIFO matching of fills into round trips, and the fills' checks.

**Inputs.** Fill columns (m,): env, bar, asset int64; qty float64 signed units; price float64
(slippage included); cost float64 currency (commission + explicit fees). Any strides: the
fields of a ``FILL_DTYPE`` record array (``fills["qty"]``, a view) are read in place, without a
copy per column. The kernels validate nothing but ``fill_defects_nb``, which finds the defects
``optrader.metrics`` rejects as ``FillDefect`` bits.

**Round trips (FIFO).** Required order: each env's fills in execution order (bars
non-decreasing, same-bar fills in the order they executed); envs may interleave, e.g. one env
step's fills after another's. Each (env, asset) keeps a FIFO queue of lots, one per fill that
opened (or added to) a position. A fill against the position closes the oldest lots first; every
(lot, closing fill) pair is one round trip, so its entry price is the lot's fill price. A fill
that crosses zero closes every lot, then opens a lot in its own direction with the rest. Costs
are apportioned pro rata to quantity: a trade of q units carries q / |qty| of both its entry and
exit fill's cost, and pnl = side * q * (exit - entry) - those costs. Lots still open at the end
are not trades; they are reported separately (exit fields -1 / NaN). Fills of qty 0 are skipped
(a cost they carry belongs to no trade). Remainders below ``QTY_RTOL`` x |qty| of their fill are
float dust of the position arithmetic and count as 0 (no ghost lots).
Trades are written in exit order: by closing fill, then FIFO lot order; open lots by
(env, asset), then FIFO order. Both are ``TRADE_DTYPE`` records (``kernels.enums``).
"""

import math
from typing import NamedTuple

import numpy as np
from numba import njit

QTY_RTOL = 1e-9  # a lot or fill remainder this small relative to its fill's |qty| is dust
_INT64_MIN = np.iinfo(np.int64).min


class FillDefectT(NamedTuple):
    """Bits of the defect mask of ``fill_defects_nb`` (0: valid fills)."""

    ENV: int = 1  # an env id outside [0, n_envs)
    ASSET: int = 2  # an asset id outside [0, n_assets)
    BAR: int = 4  # a bar < 0
    QTY: int = 8  # a NaN or inf qty
    COST: int = 16  # a NaN or inf cost
    PRICE: int = 32  # a price that is not finite and > 0
    ORDER: int = 64  # an env's fill on an earlier bar than its previous fill


FillDefect = FillDefectT()


@njit(cache=True, nogil=True, error_model="numpy")
def fill_defects_nb(env, bar, asset, qty, price, cost, n_envs, n_assets):
    """The ``FillDefect`` bits of the fills (m,), in one pass; order is checked per env, over
    the fills whose env id is in range."""
    last_bar = np.full(n_envs, _INT64_MIN, dtype=np.int64)
    bits = 0
    for k in range(qty.shape[0]):
        e = env[k]
        b = bar[k]
        if asset[k] < 0 or asset[k] >= n_assets:
            bits |= FillDefect.ASSET
        if b < 0:
            bits |= FillDefect.BAR
        if not math.isfinite(qty[k]):
            bits |= FillDefect.QTY
        if not math.isfinite(cost[k]):
            bits |= FillDefect.COST
        if not (price[k] > 0.0 and price[k] < np.inf):
            bits |= FillDefect.PRICE
        if e < 0 or e >= n_envs:
            bits |= FillDefect.ENV
        else:
            if b < last_bar[e]:
                bits |= FillDefect.ORDER
            last_bar[e] = b
    return bits


@njit(cache=True, nogil=True, error_model="numpy")
def round_trips_nb(env, bar, asset, qty, price, cost, n_envs, n_assets, trades, lots):
    """Match the fills (m,) FIFO; write the round trips into trades and the lots left open into
    lots (``TRADE_DTYPE``, m rows each is always enough: each round trip exhausts its lot or its
    closing fill, and each open lot is a fill that exhausted neither). Returns (trades written,
    lots written)."""
    n_fills = qty.shape[0]
    # the queues are linked lists of slots; slot s holds the lot of fill lot_fill[s] with
    # lot_rem[s] units left. A closed lot's slot goes to a free list and is reused, so only as
    # many slots are ever written (memory touched) as lots are open at once.
    lot_fill = np.empty(n_fills, dtype=np.int64)
    lot_rem = np.empty(n_fills)
    lot_next = np.empty(n_fills, dtype=np.int64)  # next slot in its queue or in the free list
    free = -1
    n_slots = 0
    head = np.full(n_envs * n_assets, -1, dtype=np.int64)
    tail = np.full(n_envs * n_assets, -1, dtype=np.int64)
    n_trades = 0
    for k in range(n_fills):
        q = qty[k]
        if q == 0.0:
            continue
        key = env[k] * n_assets + asset[k]
        left = abs(q)
        dust = QTY_RTOL * left
        s = head[key]
        # the queue holds lots of one side only; an opposite fill closes them oldest first
        while left > 0.0 and s >= 0:
            h = lot_fill[s]
            if (qty[h] > 0.0) == (q > 0.0):
                break
            rem = lot_rem[s]
            closed = min(rem, left)
            if rem - closed <= QTY_RTOL * abs(qty[h]):
                closed = rem  # dust left in the lot: it closes whole
            side = 1 if qty[h] > 0.0 else -1
            fee = closed * (cost[h] / abs(qty[h]) + cost[k] / abs(q))
            pnl = side * closed * (price[k] - price[h]) - fee
            r = trades[n_trades]
            r.env = env[k]
            r.asset = asset[k]
            r.side = side
            r.qty = closed
            r.entry_bar = bar[h]
            r.exit_bar = bar[k]
            r.entry_price = price[h]
            r.exit_price = price[k]
            r.pnl = pnl
            r["return"] = pnl / (closed * price[h])  # a Python keyword: no attribute syntax
            r.bars = bar[k] - bar[h]
            r.commission = fee
            r.entry_fill = h
            r.exit_fill = k
            n_trades += 1
            left = max(left - closed, 0.0)
            if left <= dust:
                left = 0.0
            if closed == rem:  # lot exhausted: pop it, free its slot
                nxt = lot_next[s]
                lot_next[s] = free
                free = s
                s = nxt
                head[key] = s
                if s < 0:
                    tail[key] = -1
            else:
                lot_rem[s] = rem - closed
        if left > 0.0:  # what is left opens (or adds) a lot on the fill's side
            if free >= 0:
                s = free
                free = lot_next[s]
            else:
                s = n_slots
                n_slots += 1
            lot_fill[s] = k
            lot_rem[s] = left
            lot_next[s] = -1
            if tail[key] >= 0:
                lot_next[tail[key]] = s
            else:
                head[key] = s
            tail[key] = s
    n_open = 0
    for key in range(n_envs * n_assets):
        s = head[key]
        while s >= 0:
            h = lot_fill[s]
            rem = lot_rem[s]
            r = lots[n_open]
            r.env = env[h]
            r.asset = asset[h]
            r.side = 1 if qty[h] > 0.0 else -1
            r.qty = rem
            r.entry_bar = bar[h]
            r.exit_bar = -1
            r.entry_price = price[h]
            r.exit_price = np.nan
            r.pnl = np.nan
            r["return"] = np.nan
            r.bars = -1
            r.commission = rem * cost[h] / abs(qty[h])
            r.entry_fill = h
            r.exit_fill = -1
            n_open += 1
            s = lot_next[s]
    return n_trades, n_open
