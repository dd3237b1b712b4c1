"""examples/seed_study.ipynb runs from top to bottom (nbclient), its outputs are what the
cells promise, no cell prints terminal escape codes, and the file in git has no outputs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).parents[1]
NOTEBOOK = REPO / "examples" / "seed_study.ipynb"


def _text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        for kind, value in o.get("data", {}).items():
            if kind.startswith("text/"):
                parts.append(value)
    return "".join(parts)


def test_the_notebook_in_git_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_example_notebook_runs_and_shows_the_study(tmp_path):
    (tmp_path / "examples").mkdir()
    shutil.copy(NOTEBOOK, tmp_path / "examples")
    shutil.copytree(REPO / "studies", tmp_path / "studies")
    nb = nbformat.read(tmp_path / "examples" / NOTEBOOK.name, as_version=4)
    t0 = time.monotonic()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "examples")}}).execute()
    took = time.monotonic() - t0
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [_text(c) for c in code]
    assert all("\x1b[" not in o for o in outputs), "terminal escape codes in a cell's output"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert "quick: 18 runs" in outputs[1]  # 8 SVMs, 4 of Q2 (2 on a GPU), 6 FLOPs counts
    assert "Outcome(done=16, failed=0, skipped=0, waiting_for_gpu=2, total=18" in outputs[2]
    # the live display, updated in place, ends with the last finished runs
    assert "[16/16] done   flops · model=resnet50 variant=imagenet" in outputs[2]
    table = code[3].outputs[0]["data"]
    assert "text/html" in table and table["text/plain"].count("done") == 16  # the DataFrame
    assert any(o.get("data", {}).get("image/png") for o in code[4].outputs)  # the figure
    assert "tiny:" in outputs[5] and "% test accuracy after one epoch" in outputs[5]
    assert "report.html" in outputs[6] and "# perfstudy report: study quick" in outputs[6]
    assert (tmp_path / "examples" / "seed-mini" / "report" / "report.html").exists()
    print(f"notebook ran in {took:.0f} s")
