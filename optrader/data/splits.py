"""Train / validation / test splits of a bar axis, by fraction of the bars or by date.

``split_bounds(timestamps, split_cfg) -> (lo, hi)``: the half-open bar range [lo, hi) of the
split named by ``split_cfg.use`` (``all``: every bar). Fractions: train = the first
floor(train x T) bars, validation the next floor((train + validation) x T) - floor(train x T),
test the rest. Dates (ISO strings, UTC unless they carry a zone): train = bars before the train
date, validation = bars before the validation date (or none), test the rest. An env samples
episode starts so that the observation window and the whole episode stay inside [lo, hi): no bar
of another split is ever observed or traded. The features are causal EWMAs with no fitted
statistics, so nothing is fitted on any split (nothing can leak from test into train).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optrader.checks import ConfigError


def split_bounds(timestamps: np.ndarray, split) -> tuple[int, int]:
    """(lo, hi) bar range of ``split.use`` over ``timestamps`` int64 (T,) UTC ns."""
    n = int(timestamps.shape[0])
    if split.use == "all":
        return 0, n
    if isinstance(split.train, str):
        cut_train = int(np.searchsorted(timestamps, _utc_ns(split.train), side="left"))
        if isinstance(split.validation, str):
            cut_val = int(np.searchsorted(timestamps, _utc_ns(split.validation), side="left"))
        else:
            cut_val = cut_train
    else:
        cut_train = int(np.floor(split.train * n + 1e-9))
        cut_val = int(np.floor((split.train + split.validation) * n + 1e-9))
    bounds = {"train": (0, cut_train), "validation": (cut_train, cut_val), "test": (cut_val, n)}
    lo, hi = bounds[split.use]
    if hi <= lo:
        raise ConfigError(f"data.split.use={split.use}: the split is empty (train={split.train!r}, "
                          f"validation={split.validation!r} over {n} bars)")
    return lo, hi


def _utc_ns(value: str) -> int:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)
