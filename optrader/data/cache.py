"""On-disk cache of loaded, validated, aligned market arrays: one directory of ``.npy`` files
per (source files, loading config), opened memory-mapped and read-only.

Key: SHA-256 of the resolved path, size and modification time (ns) of every source file, the
loading config (reader, alignment, resampling, calendar, quality thresholds) and
``CACHE_FORMAT``. An edited, replaced or added file changes the key, so a stale entry is never
read; entries are never modified in place (written to a temporary directory, then renamed, so a
concurrent reader sees a whole entry or none). Memory-mapped arrays share the page cache, so
every env and process using the same data reads one copy.

Layout of an entry: ``bars.npy`` float64 (5, T, A), ``timestamps.npy`` int64 (T,),
``tradable.npy`` bool (T, A), ``day.npy`` int64 (T,), optional ``spread.npy`` and
``extra_<name>.npy`` float64 (T, A), ``meta.json`` (symbols, periods per year, source, quality
score and warnings) and ``manifest.json``, written last: the size of every other file and the
CRC-32 of each of its 32 MiB blocks, and a CRC-32 of its own listing.

Integrity: a hit is used only if the manifest is intact, every file it lists has its size and
CRC-32, and the arrays form a valid MarketData (``MarketData.__post_init__``). Anything else (a
flipped byte anywhere, a truncated or shortened array, a missing file or manifest, bad JSON) is
logged as a warning, the entry is discarded and ``load_entry`` returns None, so the caller
rebuilds it from the source files: damaged data is never used and never an error. CRC-32
(``zlib``) detects accidental damage, not tampering; it costs ~0.1 s per 400 MB on one core
(a 10M-bar single-asset entry, ~570 MB, verifies in ~0.2 s). No fsync is done: a torn write
after a power loss fails the check and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from optrader.data.market import MarketData

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the layout or the loading rules change (2: manifest.json)
MANIFEST = "manifest.json"
_BLOCK = 32 << 20  # bytes per CRC-32: blocks are checked in parallel
_META_KEYS = ("symbols", "periods_per_year", "has_spread", "extra", "warnings")


class _Damaged(Exception):
    """A cache entry failed an integrity check (the message says which)."""


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


def file_digest(path: Path, pool: ThreadPoolExecutor | None = None) -> tuple[int, list]:
    """(size in bytes, CRC-32 of each 32 MiB block as 8 hex digits) of a file, read through a
    memory map; ``pool`` checks the blocks side by side (zlib.crc32 releases the GIL)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return 0, []
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            whole = memoryview(mm)
            blocks = [whole[i:i + _BLOCK] for i in range(0, size, _BLOCK)]  # views, no copies
            try:
                crcs = list((pool.map if pool is not None else map)(zlib.crc32, blocks))
            finally:  # the map can only close once no view of it is left
                for b in blocks:
                    b.release()
                whole.release()
    return size, [f"{c:08x}" for c in crcs]


def _listing_crc(files: dict) -> str:
    return f"{zlib.crc32(json.dumps(files, sort_keys=True).encode()):08x}"


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))


def _verify(d: Path) -> dict:
    """The manifest's file listing after checking every file against it; raises _Damaged."""
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except FileNotFoundError:
        raise _Damaged(f"{MANIFEST} is missing") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _Damaged(f"{MANIFEST} is unreadable ({exc})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("format") != CACHE_FORMAT or \
            manifest.get("check") != _listing_crc(files) or \
            not all(isinstance(w, dict) for w in files.values()):
        raise _Damaged(f"{MANIFEST} is damaged or of another format")
    with _pool() as pool:
        for name, want in files.items():
            try:
                size, crc = file_digest(d / name, pool)
            except OSError as exc:
                raise _Damaged(f"{name} is unreadable ({type(exc).__name__})") from None
            if size != want.get("size"):
                raise _Damaged(f"{name} has {size} bytes, expected {want.get('size')}")
            if crc != want.get("crc32"):
                bad = next((i for i, (x, y) in enumerate(zip(crc, want.get("crc32") or [],
                                                             strict=False)) if x != y), 0)
                raise _Damaged(f"{name} has CRC-32 mismatch in block {bad} (bytes from "
                               f"{bad * _BLOCK})")
    return files


def load_entry(root: Path, key: str) -> dict | None:
    """The verified entry of ``key``, or None (no entry, or a damaged one: see the module
    docstring).

    Returns:
        ``{"meta": dict, "market": MarketData}`` (memory-mapped, read-only arrays, ``quality``
        None, ``source`` naming the entry) plus the arrays under "bars", "timestamps",
        "tradable", "day", "spread" (or None) and "extra" (name -> array).
    """
    d = root / key
    if not d.is_dir():
        return None
    try:
        files = _verify(d)
        meta = json.loads((d / "meta.json").read_text())
        missing = [k for k in _META_KEYS if k not in meta]
        if missing or "meta.json" not in files:
            raise _Damaged(f"meta.json lacks {missing or 'a checksum'}")
        names = ["bars", "timestamps", "tradable", "day", *(["spread"] if meta["has_spread"]
                                                            else []),
                 *(f"extra_{n}" for n in meta["extra"])]
        unlisted = [n for n in names if f"{n}.npy" not in files]
        if unlisted:
            raise _Damaged(f"{unlisted} not in {MANIFEST}")
        out = {"meta": meta}
        for name in names:
            out[name] = np.load(d / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        out.setdefault("spread", None)
        out["extra"] = {n: out.pop(f"extra_{n}") for n in meta["extra"]}
        out["market"] = MarketData(out["bars"], out["timestamps"], tuple(meta["symbols"]),
                                   float(meta["periods_per_year"]), out["spread"],
                                   out["tradable"], out["day"], out["extra"], None,
                                   source=f"cache entry {d}")
    except (_Damaged, OSError, ValueError, TypeError, KeyError) as exc:
        # DataError is a ValueError: arrays that pass the checksum but not MarketData's checks
        log.warning("data cache: entry %s is damaged (%s); rebuilding it from the source files",
                    d, exc)
        _discard(root, key)
        return None
    return out


def _discard(root: Path, key: str) -> None:
    """Move a damaged entry aside (atomic), then delete it; never raises."""
    trash = root / f".broken-{key}-{os.getpid()}"
    try:
        os.rename(root / key, trash)
    except OSError:
        return  # already gone (another process discarded or replaced it) or not ours to move
    shutil.rmtree(trash, ignore_errors=True)


def save_entry(root: Path, key: str, arrays: dict, meta: dict) -> Path | None:
    """Write an entry atomically (files, then the manifest, in a temporary directory renamed
    into place); returns its directory, or None if the cache is not writable (loading still
    succeeds, uncached)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    except OSError:
        return None
    try:
        names = []
        for name, arr in arrays.items():
            if arr is not None:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
                names.append(f"{name}.npy")
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
        files = {}
        with _pool() as pool:
            for name in (*names, "meta.json"):
                size, crc = file_digest(tmp / name, pool)
                files[name] = {"size": size, "crc32": crc}
        manifest = {"format": CACHE_FORMAT, "files": files, "check": _listing_crc(files)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        final = root / key
        try:
            os.rename(tmp, final)
        except OSError:  # another process wrote the same entry first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
