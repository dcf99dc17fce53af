"""On-disk cache of loaded, validated, aligned market arrays: one directory of ``.npy`` files
per (source files, loading config), opened memory-mapped and read-only.

Key: SHA-256 of the resolved path, size and modification time (ns) of every source file, the
loading config (reader, alignment, resampling, calendar, quality thresholds) and
``CACHE_FORMAT``. An edited, replaced or added file changes the key, so a stale entry is never
read; entries are never modified in place (written to a temporary directory, then renamed).
Memory-mapped arrays share the page cache, so every env and process using the same data reads
one copy.

Layout of an entry: ``bars.npy`` float64 (5, T, A), ``timestamps.npy`` int64 (T,),
``tradable.npy`` bool (T, A), ``day.npy`` int64 (T,), optional ``spread.npy`` and
``extra_<name>.npy`` float64 (T, A), and ``meta.json`` (symbols, periods per year, source,
quality score and warnings).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

CACHE_FORMAT = 1  # bump when the layout or the loading rules change


def cache_root(configured=None) -> Path:
    """The configured directory, else $OPTRADER_CACHE_DIR, else ~/.cache/optrader."""
    if configured is not None:
        return Path(configured).expanduser()
    env = os.environ.get("OPTRADER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "optrader"


def cache_key(files: list[Path], config: dict) -> str:
    """Hex key of the source files' identity (path, size, mtime) and the loading config."""
    h = hashlib.sha256()
    h.update(f"format={CACHE_FORMAT}\n".encode())
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def load_entry(root: Path, key: str) -> dict | None:
    """The cached arrays (memory-mapped, read-only) and meta of ``key``, or None."""
    d = root / key
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        out = {"meta": meta}
        for name in ("bars", "timestamps", "tradable", "day"):
            out[name] = np.load(d / f"{name}.npy", mmap_mode="r")
        out["spread"] = np.load(d / "spread.npy", mmap_mode="r") if meta["has_spread"] else None
        out["extra"] = {n: np.load(d / f"extra_{n}.npy", mmap_mode="r") for n in meta["extra"]}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        # an unreadable entry is a miss: move it aside so the rebuilt entry can take its place
        trash = root / f".broken-{key}-{os.getpid()}"
        try:
            os.rename(d, trash)
            shutil.rmtree(trash, ignore_errors=True)
        except OSError:
            pass
        return None
    return out


def save_entry(root: Path, key: str, arrays: dict, meta: dict) -> Path | None:
    """Write an entry atomically; returns its directory, or None if the cache is not writable
    (loading still succeeds, uncached)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    except OSError:
        return None
    try:
        for name, arr in arrays.items():
            if arr is not None:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
        final = root / key
        try:
            os.rename(tmp, final)
        except OSError:  # another process wrote the same entry first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
