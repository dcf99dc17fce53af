"""Every notebook runs top to bottom in a Jupyter kernel (nbclient), and is committed clean.

Notebooks are committed without outputs and executed here so they never rot. Each runs in a
fresh ``python3`` kernel whose working directory is a temporary directory, so the run
directories the notebooks write stay out of the repository. The kernel must be this
interpreter's (the venv with optrader installed): jupyter_client replaces the ``python`` of
ipykernel's native kernel spec by ``sys.executable``, and a probe cell checks ``sys.prefix`` in
case another ``python3`` kernel spec shadows it.
"""

import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # s per cell: generous for a loaded 2-core box; a notebook takes ~5-15 s
PROBE = f"""import sys
assert sys.prefix == {sys.prefix!r}, (
    f"kernel runs {{sys.executable}} (prefix {{sys.prefix}}), expected the prefix "
    f"{sys.prefix!r} of the test's interpreter: another 'python3' kernel spec shadows it")
import optrader  # noqa: F401"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks


def read_clean(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``, checked: valid, a python3 kernel, code, no outputs."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{path.name}: expected kernelspec name 'python3', got {nb.metadata.get('kernelspec')}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name}: a notebook without code cells"
    dirty = [k for k, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs or execution counts; commit "
                       "notebooks without outputs (e.g. jupyter nbconvert --clear-output)")
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_is_clean(path, tmp_path):
    nb = read_clean(path)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))  # in memory only
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    failure = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        failure = ANSI.sub("", str(exc))  # the failing cell's source and its traceback
    if failure is not None:  # outside the except: no chained nbclient traceback
        pytest.fail(f"{path.name}: {failure}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs {[e.ename for e in errors]}"


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert len(NOTEBOOKS) >= 3, f"expected at least 3 notebooks in notebooks/, found {names}"
