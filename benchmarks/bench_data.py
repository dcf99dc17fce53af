"""Loading 10 M bars (10 symbols x 1 M one-minute bars, one long Parquet file): cold (read +
quality report + clean + align + validate, no cache), from the cache (memory-mapped), and the
baseline ``pandas.read_parquet`` + pivot to aligned (T, A) arrays. Each load runs in a fresh
process so its peak resident memory (VmHWM, including the interpreter and imports: ~125 MB for
optrader) is its own; rows report the load's seconds (imports excluded) and peak MB in
extra_info.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

N_SYMBOLS = 10
N_BARS = 1_000_000

_LOAD = {
    "pandas_read_parquet_pivot": """
import pandas as pd, numpy as np
df = pd.read_parquet(PATH)
wide = df.pivot(index="timestamp", columns="symbol")
bars = np.stack([wide[c].to_numpy() for c in ("open", "high", "low", "close", "volume")])
n = bars.shape[1]
""",
    "optrader_cold": """
import optrader
from optrader.config import FileDataConfig, CacheConfig
from optrader.data.loader import load_files
m = load_files(FileDataConfig(path=PATH, cache=CacheConfig(enabled=False)))
n = m.n_bars
""",
    "optrader_cached": """
import optrader
from optrader.config import FileDataConfig, CacheConfig
from optrader.data.loader import load_files
m = load_files(FileDataConfig(path=PATH, cache=CacheConfig(dir=CACHE)))
n = m.n_bars
""",
}

_RUNNER = """
import optrader  # imports are not part of the load
import json, sys, time
PATH, CACHE = sys.argv[1], sys.argv[2]


def peak_mb():  # VmHWM is per address space: unlike ru_maxrss it is not inherited via fork
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
{body}
dt = time.perf_counter() - t0
print(json.dumps({{"seconds": dt, "peak_mb": peak_mb(), "bars": int(n)}}))
"""


@pytest.fixture(scope="module")
def parquet_10m(tmp_path_factory):
    d = tmp_path_factory.mktemp("bars10m")
    rng = np.random.default_rng(0)
    ts = pd.date_range("2020-01-01", periods=N_BARS, freq="1min", tz="UTC").as_unit("ns")
    parts = []
    for k in range(N_SYMBOLS):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, N_BARS)))
        open_ = np.r_[100.0, close[:-1]]
        spread = np.abs(rng.normal(0, 5e-4, N_BARS))
        parts.append(pd.DataFrame({
            "timestamp": ts, "symbol": f"S{k:02d}", "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close, "volume": rng.lognormal(10, 1, N_BARS)}))
    path = d / "bars.parquet"
    pd.concat(parts, ignore_index=True).to_parquet(path)
    return path, d / "cache"


def _run(kind, path, cache):
    code = _RUNNER.format(body=_LOAD[kind].strip())
    out = subprocess.run([sys.executable, "-c", code, str(path), str(cache)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", list(_LOAD))
def test_load_10m_bars(benchmark, parquet_10m, kind):
    path, cache = parquet_10m
    if kind == "optrader_cached":
        _run(kind, path, cache)  # fill the cache (a cold load)
    results = []
    benchmark.pedantic(lambda: results.append(_run(kind, path, cache)), rounds=3,
                       iterations=1)
    best = min(results, key=lambda r: r["seconds"])
    assert best["bars"] == N_BARS
    benchmark.extra_info["load_seconds"] = round(best["seconds"], 3)
    benchmark.extra_info["peak_rss_mb"] = round(max(r["peak_mb"] for r in results), 1)
