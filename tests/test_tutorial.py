"""docs/*.ipynb: every notebook runs top to bottom in a fresh kernel without a cell error (the tutorial's claims
are `assert`s in its cells), offline, in a temporary folder, leaving nothing in the checkout; and the copy stored
in the repository shows its outputs, every picture with its caption."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "docs").glob("*.ipynb"))
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache"}


def checkout_files() -> set[str]:
    """Every file and folder of the checkout (ignored ones too, `runs/` say), but for git's, the virtualenv's
    and Python's bytecode caches."""
    found = set()
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        rel = Path(root).relative_to(REPO)
        found |= {str(rel / name) for name in dirs + files}
    return found


def test_there_is_a_notebook_and_the_readme_links_it():
    assert [p.name for p in NOTEBOOKS] == ["tutorial.ipynb"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "](docs/tutorial.ipynb)" in readme and "jupyter notebook docs/tutorial.ipynb" in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_stored_copy_shows_its_outputs(path):
    """Outputs are kept in the file (a repository page shows them); `python docs/refresh_tutorial.py` renews them."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run top to bottom, once"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = 0
    for cell in code:
        for i, out in enumerate(cell.outputs):
            if "image/png" in out.get("data", {}):
                pictures += 1
                after = cell.outputs[i + 1] if i + 1 < len(cell.outputs) else {}
                assert after.get("data", {}).get("text/markdown", "").startswith("*Figure"), \
                    f"a picture without its caption line in cell {cell.execution_count}"
    assert pictures >= 1
    text = "".join(o.get("text", "") + "".join(map(str, o.get("data", {}).values())) for o in outputs)
    assert "\r" not in text and not re.search(r"/tmp/medlora-tutorial-[^…]", text) and str(Path.home()) + "/" not in text


def test_the_notebook_uses_the_project_by_import():
    """The method is imported from the packages, never pasted: no class is defined in the notebook."""
    nbformat = pytest.importorskip("nbformat")
    for path in NOTEBOOKS:
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for package in ("minillama", "lora"):
            assert re.search(rf"^\s*(import|from) {package}\b", source, re.M), f"{path.name} does not import {package}"
        assert not re.search(r"^\s*class ", source, re.M)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_runs_in_a_fresh_kernel(path, tmp_path, monkeypatch):
    """A fresh kernel, a fresh demo cache (so the demo base's warm-up runs, as on a new machine), one thread
    (the suite's rule: CI shares 2 cores), no network; any cell error fails the test."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEDLORA_TUTORIAL_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = checkout_files()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed:\n{str(exc)[-4000:]}", pytrace=False)
    seconds = time.perf_counter() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no picture was drawn"
    assert (tmp_path / "work" / "run" / "DONE").is_file()  # it worked where it was told to
    assert checkout_files() == before, sorted(checkout_files() ^ before)
    print(f"{path.name}: {seconds:.0f} s in a fresh kernel")
