"""The layout rules of docs/architecture.md: the floors depend one way (every import counted, those inside
functions too), installed packages and no sys.path tricks, no import cycle inside a package, no torch and no
model in the metrics, one implementation of the things that were written twice."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("plumbing", "minillama", "lora", "evalkit", "judge", "pipeline", "scripts")
ALIASES = {"medlora_scripts": "scripts"}  # scripts/ is installed under this name (pyproject.toml)


def python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        return [REPO / line for line in listed.stdout.split()]
    return [p for p in REPO.rglob("*.py") if ".git" not in p.parts]


def imports(path: Path, package: str) -> list[str]:
    """Every module `path` imports, at the top or inside functions; relative imports resolved in `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = path.relative_to(REPO).with_suffix("").parts[:-node.level]
                base = ".".join(parts + ((node.module,) if node.module else ()))
                found += [base] + [f"{base}.{a.name}" for a in node.names]
            elif node.module:
                found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return found


def owner(module: str) -> str | None:
    top = module.split(".")[0]
    top = ALIASES.get(top, top)
    return top if top in PACKAGES else None


def package_edges() -> dict[tuple[str, str], set[str]]:
    """(importer, imported) -> the files of the importer that import it."""
    edges: dict[tuple[str, str], set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for module in imports(path, package):
                target = owner(module)
                if target and target != package:
                    edges.setdefault((package, target), set()).add(str(path.relative_to(REPO)))
    return edges


def drawn_floors() -> dict[str, set[str]]:
    """The graph docs/architecture.md draws: `package -> what it may import` lines in its ```text block."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n# may import\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```text block starting with '# may import'"
    allowed = {}
    for line in block.group(1).splitlines():
        name, _, deps = line.partition("->")
        allowed[name.strip()] = {d.strip() for d in deps.split(",") if d.strip() and d.strip() != "(nothing)"}
    return allowed


def test_the_package_graph_is_the_one_drawn_in_docs_architecture():
    allowed = drawn_floors()
    assert set(allowed) == set(PACKAGES)
    edges = package_edges()
    upward = {f"{a} imports {b} ({sorted(files)[0]})" for (a, b), files in edges.items() if b not in allowed[a]}
    assert not upward, upward
    assert {b for (a, b) in edges if a == "pipeline"} == allowed["pipeline"]  # the top floor uses every floor


def test_the_floors_have_no_cycle():
    allowed = drawn_floors()
    order: list[str] = []
    while len(order) < len(allowed):  # peel off the packages whose allowed imports are all placed
        ready = [p for p in allowed if p not in order and allowed[p] <= set(order)]
        assert ready, f"the drawn graph has a cycle among {sorted(set(allowed) - set(order))}"
        order += sorted(ready)
    assert order[0] == "plumbing" and order[-1] == "scripts"


def test_metrics_and_judges_need_no_torch_and_no_model():
    for package in ("evalkit", "judge"):
        for path in (REPO / package).rglob("*.py"):
            heavy = [m for m in imports(path, package) if m.split(".")[0] in ("torch", "minillama", "lora")]
            assert not heavy, f"{path.relative_to(REPO)} imports {heavy}"


def test_the_ground_floor_imports_neither_torch_nor_numpy():
    """plumbing is imported by every command before anything heavy (the thread policy reads torch lazily)."""
    code = ("import sys, plumbing.errors, plumbing.signals, plumbing.command, plumbing.locks, plumbing.durable, "
            "plumbing.files, plumbing.threads; print(sorted({'torch', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


def test_no_sys_path_manipulation_anywhere():
    pattern = re.compile(r"sys\.path\.(insert|append|extend)|PYTHONPATH")
    offenders = [str(p.relative_to(REPO)) for p in python_files()
                 if p.name != "test_layout.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_no_import_cycle_inside_any_package():
    """module -> modules of the same package it imports (inside functions too) must form no cycle."""
    for package in PACKAGES:
        graph: dict[str, set[str]] = {}
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules = {m for m in imports(path, package) if owner(m) == package}
            real = {m for m in modules if (REPO / (m.replace(".", "/") + ".py")).is_file()}
            graph[name] = real - {name}
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


def test_one_implementation_of_each_shared_thing():
    """One atomic write (plumbing/durable.py), one record reader, one error base, one lr schedule."""
    sources = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in python_files()
               if p.parts[len(REPO.parts)] in PACKAGES}
    renames = [f for f, s in sources.items() if re.search(r"os\.replace\(|\.rename\(", s) and f != "plumbing/durable.py"]
    assert renames == [], f"temporary-file-and-rename writers beside plumbing/durable.py: {renames}"
    readers = [f for f, s in sources.items() if re.search(r"^def read_pairs\(", s, re.M)]
    assert readers == ["evalkit/records.py"]
    cosines = [f for f, s in sources.items() if "math.cos(" in s]
    assert cosines == ["lora/finetune/schedule.py"]
    bases = [f for f, s in sources.items() if re.search(r"^class \w+Error\(Exception\)", s, re.M)]
    assert bases == ["plumbing/errors.py"], bases
    assert [f for f, s in sources.items() if re.search(r"^def sha256_file\(", s, re.M)] == ["plumbing/files.py"]
    assert [f for f, s in sources.items() if re.search(r"^def is_hub_id\(", s, re.M)] == ["minillama/hub.py"]


def test_declared_runtime_dependencies_cover_the_imports():
    """What the installed packages import from outside the standard library is declared in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    deps = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    declared = {re.split(r"[<>=\[ ]", d.strip().strip('",'))[0].replace("-", "_") for d in deps.split("\n") if d.strip().startswith('"')}
    optional = {"matplotlib", "wandb"}  # the [plot] and [wandb] extras; every use is guarded
    third_party = set()
    for path in python_files():
        if path.parts[len(REPO.parts)] not in PACKAGES:
            continue
        for module in imports(path, path.parts[len(REPO.parts)]):
            top = module.split(".")[0]
            sibling = (path.parent / f"{top}.py").is_file()  # scripts/installed.py, imported by a script run as a file
            if top and not owner(module) and top not in sys.stdlib_module_names and top != "__future__" and not sibling:
                third_party.add(top)
    assert third_party - declared - optional == set()


def readers_path() -> str:
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    return doc[doc.index("## A reader's path"):doc.index("## One training step")]


def test_the_readers_path_gives_each_files_true_length():
    """Each row of docs/architecture.md's reader's path: its files (a path, then names beside it in
    parentheses) and their line counts, in the same order; the counts are the files' lengths now."""
    table = readers_path().split("**From each equation")[0]
    rows = [ln for ln in table.splitlines() if re.match(r"\| *\d+ \|", ln)]
    assert len(rows) == 10
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([\w/]+\.py)`", cells[1])
        folder = Path(names[0]).parent
        paths = [REPO / names[0]] + [REPO / folder / n for n in names[1:]]
        counts = [int(n) for n in re.findall(r"\d+", cells[-1])]
        actual = [len(p.read_text(encoding="utf-8").splitlines()) for p in paths]
        assert counts == actual, (row, actual)


def enclosing(tree: ast.AST, line: int, prefix: str = "") -> set[str]:
    """Qualified names (`Class.method`, `function`) of the functions and classes whose lines hold `line`."""
    found = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.lineno <= line <= node.end_lineno:
            found |= {prefix + node.name} | enclosing(node, line, prefix + node.name + ".")
    return found


def test_the_readers_path_points_each_equation_at_its_line():
    """The equation table of the reader's path: every `file.py:LINE` (`name`) is a code line inside the
    function or class `name`, so the table cannot drift from the code unnoticed."""
    table = readers_path().split("**From each equation")[1]
    places = re.findall(r"`([\w/]+\.py):(\d+)` \(`([\w.]+)`\)", table)
    assert len(places) >= 17, places
    for path, line, name in places:
        source = (REPO / path).read_text(encoding="utf-8")
        text = source.splitlines()[int(line) - 1].strip()
        assert text and not text.startswith(("#", '"""')), (path, line, text)
        assert name in enclosing(ast.parse(source), int(line)), (path, line, name, text)
