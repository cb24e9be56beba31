"""Execute docs/tutorial.ipynb in a fresh kernel and store its new outputs in the file (one command).

    pip install -e '.[test]'              # nbclient, ipykernel, nbformat (and matplotlib)
    python docs/refresh_tutorial.py       # about 1-3 minutes on 2 cores; rewrites docs/tutorial.ipynb

The notebook's outputs are kept in the repository so that a reader sees the numbers, tables and pictures on
a repository page without running anything; the demo's numbers change when the code does, so refresh them
with this command after such a change and commit the notebook. The kernel works in a temporary folder
(nothing is written into the checkout but the notebook), uses this Python's environment and the demo base
cached on this machine (`$MEDLORA_CACHE`, else ~/.cache/medlora). Stored outputs are made readable as a
terminal shows them: progress bars keep their last state, and the temporary folder's path is shortened.
A cell that fails stops the refresh and leaves the notebook unchanged.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().with_name("tutorial.ipynb")
SHOWN_WORK = "/tmp/medlora-tutorial-…"  # how the temporary folder's path reads in the stored outputs


def terminal_text(text: str) -> str:
    """What a terminal shows of `text`: on each line only what follows its last carriage return."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def shorten(text: str, work: Path) -> str:
    """The temporary folder as `SHOWN_WORK`, the home folder as `~` (no path of the refreshing machine is stored)."""
    return text.replace(str(work), SHOWN_WORK).replace(str(Path.home()) + "/", "~/")


def clean_outputs(nb, work: Path) -> None:
    """Merge each run of stream outputs (a progress bar arrives in many pieces) and show it as a terminal
    would, shorten the work folder's path, drop per-run metadata."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and outputs and outputs[-1].get("output_type") == "stream" \
                    and outputs[-1]["name"] == out["name"]:
                outputs[-1]["text"] += out["text"]
            else:
                outputs.append(out)
        for out in outputs:
            if out.get("output_type") == "stream":
                out["text"] = shorten(terminal_text(out["text"]), work).lstrip("\n")
            for key in ("text/plain", "text/markdown"):
                if key in out.get("data", {}):
                    out["data"][key] = shorten(out["data"][key], work)
        cell.outputs = [out for out in outputs if out.get("output_type") != "stream" or out["text"].strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help="the notebook to refresh in place")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may run (default 900)")
    args = parser.parse_args(argv)
    try:
        import nbclient
        import nbformat
        from plumbing.durable import write_text_atomic
    except ImportError as exc:
        print(f"error: {exc.name} is missing: pip install -e '.[test]' (nbclient, ipykernel, nbformat)", file=sys.stderr)
        return 2
    nb = nbformat.read(args.notebook, as_version=4)
    work = Path(tempfile.mkdtemp(prefix="medlora-tutorial-"))
    os.environ["MEDLORA_TUTORIAL_DIR"] = str(work)
    started = time.perf_counter()
    try:
        client = nbclient.NotebookClient(nb, timeout=args.timeout, kernel_name="python3", record_timing=False,
                                         resources={"metadata": {"path": str(work)}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as exc:
            print(f"error: a cell failed; {args.notebook} is unchanged:\n{exc}", file=sys.stderr)
            return 1
        clean_outputs(nb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    nbformat.validate(nb)
    write_text_atomic(args.notebook, nbformat.writes(nb) + "\n")
    print(f"refreshed {args.notebook} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
