"""The layout rules: installed packages and no sys.path tricks; no import cycle in minillama (the imports
inside functions counted too), so `model.py` imports nothing that imports it."""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        return [REPO / line for line in listed.stdout.split()]
    return [p for p in REPO.rglob("*.py") if ".git" not in p.parts]


def test_no_sys_path_manipulation_anywhere():
    pattern = re.compile(r"sys\.path\.(insert|append|extend)|PYTHONPATH")
    offenders = [str(p.relative_to(REPO)) for p in python_files()
                 if p.name != "test_layout.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def minillama_graph() -> dict[str, set[str]]:
    """module -> minillama modules it imports (at the top or inside functions)."""
    graph = {}
    for path in sorted((REPO / "minillama").glob("*.py")):
        name = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    deps.add(node.module.split(".")[0])
                elif node.module and node.module.startswith("minillama."):
                    deps.add(node.module.split(".")[1])
                elif node.level == 1 or node.module == "minillama":
                    deps.update(a.name for a in node.names if (REPO / "minillama" / f"{a.name}.py").exists())
        graph[name] = deps - {name}
    return graph


def test_minillama_has_no_import_cycle():
    graph = minillama_graph()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, dep]))
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = 2
    for node in graph:
        if node not in state:
            visit(node, [])
    importers_of_model = {m for m, deps in graph.items() if "model" in deps}
    assert not (graph["model"] & importers_of_model)  # model.py imports nothing that imports it
