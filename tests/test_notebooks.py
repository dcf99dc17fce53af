"""Every notebook's code cells run top to bottom without error, and notebooks carry no outputs."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_is_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook without code"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        "commit notebooks without outputs"
    namespace: dict = {}
    for k, cell in enumerate(code):
        exec(compile("".join(cell["source"]), f"{path.name}[cell {k}]", "exec"), namespace)


def test_there_are_notebooks():
    assert NOTEBOOKS
