"""Where a command may write a file: one check, used before any work starts.

``output_file_problem(path, make_parents)`` says in words why a file cannot be written at
``path`` (it is a directory; a file stands where a folder of its path must be; its folder does
not exist and will not be made), or returns None. ``blocking_file(path)`` is the first of
``path`` and its parents that exists and is not a directory (Hydra run dirs use it too).
"""

from __future__ import annotations

from pathlib import Path


def blocking_file(path: str | Path) -> Path | None:
    """The first of ``path`` and its parents that exists and is not a directory, or None."""
    p = Path(path).expanduser()
    for a in (p, *p.parents):
        if a.exists():
            return None if a.is_dir() else a
    return None


def output_file_problem(path: str | Path, *, make_parents: bool = False) -> str | None:
    """Why a file cannot be written at ``path`` (a sentence), or None when it can be.

    Args:
        path: the file to write.
        make_parents: the writer creates missing folders (else a missing folder is a problem).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return f"{str(p)!r} is a directory, expected a file path"
    block = blocking_file(p.parent)
    if block is not None:
        return (f"{str(block)!r} is a file, so {str(p)!r} cannot be written under it; "
                f"choose another path")
    if not make_parents and not p.parent.is_dir():
        return f"the folder {str(p.parent)!r} does not exist"
    return None
