"""The layer contract of docs/architecture.md, checked on the source with ``ast`` (no import runs).

``io -> models -> scorers -> ops -> pipeline -> integrations / cli / service``: a
module may import only from its own layer or one to its left, and no set of
modules may import each other in a cycle. Every ``import`` counts, also those
inside functions, under ``if TYPE_CHECKING`` or in ``try``: a lazy import still
ties the two modules together, it only hides it until run time.

Two top-level modules sit outside the chain: ``_version`` (imports nothing; layer
0, so anyone may read the version) and ``paddlemix_iqa/__init__.py``, the public
facade. The facade re-exports names from any layer (eagerly or through a lazy
``__getattr__``), so it sits above every layer and no module of the package may
import it (``from .. import x`` where ``x`` is a subpackage is an import of the
subpackage, not of the facade). ``registry`` is layer 0: scorers and ops register
through it, so it must not import them. A new top-level module or subpackage fails
the test until it is given a layer here.

Not counted: imports by string (``importlib.import_module("pkg.mod")``, the
registries' ``"module:Class"`` entries); they are how lower layers list
implementations lazily without depending on them.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import paddlemix_iqa

PACKAGE = Path(paddlemix_iqa.__file__).resolve().parent

#: first name under the package -> layer; "__init__" is the package's own __init__.py
LAYERS = {
    "_version": 0,
    "registry": 0,
    "params": 0,  # Bounds / check_params: the parameter ranges scorers and ops declare; imports nothing
    "io": 0,
    "models": 1,
    "scorers": 2,
    "ops": 3,
    "dedup": 3,  # near-duplicate search and grouping (near_pairs, union-find, the dedup op); hashes come from scorers
    "pipeline": 4,
    "evaluation": 4,  # eval / make-eval-set / calibrate: labelled sets, tables, fitting (never imported by a run)
    "integrations": 5,
    "service": 5,  # serve: the HTTP scoring service
    "client": 5,  # the HTTP client of the service (score --server)
    "monitor": 5,  # monitor run / report: a metric's time series per source, alerts
    "cli": 5,
    "testing": 5,  # the contract checks (paddlemix_iqa.testing) a plugin's tests run too
    "__init__": 6,
}


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every .py under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (path, is_pkg)
    return out


def _imports(module: str, path: Path, is_pkg: bool, known: set[str]) -> list[tuple[str, int]]:
    """(imported module of the package, line) for every import statement in the file."""
    package = module.split(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        for target in targets:
            if target != package and not target.startswith(package + "."):
                continue
            while target not in known and "." in target:  # `import pkg.mod.attr` style: the module part
                target = target.rsplit(".", 1)[0]
            found.append((target, node.lineno))
    return found


def _layer(module: str) -> tuple[str, int | None]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return top, LAYERS.get(top)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def check_layers(root: Path) -> list[str]:
    """Every violation of the contract in the package at ``root`` (a folder named like the package)."""
    modules = _modules(root)
    problems = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, (path, is_pkg) in modules.items():
        top, layer = _layer(module)
        if layer is None:
            problems.append(f"{module}: '{top}' has no layer; add it to LAYERS in tests/test_layers.py")
            continue
        for target, line in _imports(module, path, is_pkg, set(modules)):
            if target == module:
                continue
            graph[module].add(target)
            target_top, target_layer = _layer(target)
            if target_layer is not None and target_layer > layer:
                problems.append(
                    f"{module} line {line} imports {target}: upward ({top} is layer {layer}, "
                    f"{target_top} is layer {target_layer}); move the shared piece one layer down"
                )
    for component in _cycles(graph):
        problems.append(f"import cycle between {', '.join(component)}")
    return problems


# --- the real package ------------------------------------------------------------------------
def test_the_package_keeps_its_layers_and_has_no_cycles():
    assert check_layers(PACKAGE) == []


# --- the checker itself catches what it is for ------------------------------------------------
@pytest.fixture()
def copy(tmp_path) -> Path:
    """A copy of the real package to plant violations in."""
    return Path(
        shutil.copytree(PACKAGE, tmp_path / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    )


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


@pytest.mark.parametrize(
    "statement",
    [
        "from ..cli import main",  # relative, module level
        "def _lazy():\n    from ..pipeline.runner import run_pipeline\n",  # inside a function
        "import paddlemix_iqa.ops.base",  # absolute
        "from .. import ops",  # a subpackage through `from .. import`
        "from paddlemix_iqa import get_scorer",  # the facade
    ],
)
def test_a_planted_upward_import_is_caught(copy, statement):
    _append(copy / "models" / "weights.py", statement)
    problems = check_layers(copy)
    assert len(problems) >= 1 and problems[0].startswith("paddlemix_iqa.models.weights line ")
    assert "upward (models is layer 1" in problems[0]


def test_a_planted_cycle_is_caught_even_through_a_function_level_import(copy):
    # scorers.brisque imports scorers.base; base importing brisque back (lazily) closes a cycle
    _append(copy / "scorers" / "base.py", "def _lazy():\n    from . import brisque\n")
    assert check_layers(copy) == [
        "import cycle between paddlemix_iqa.scorers.base, paddlemix_iqa.scorers.brisque"
    ]


def test_a_longer_cycle_and_an_unmapped_module_are_caught(tmp_path):
    root = tmp_path / "pkg"
    (root / "io").mkdir(parents=True)
    for name in ("__init__.py", "io/__init__.py"):
        (root / name).write_text("")
    (root / "io" / "a.py").write_text("from .b import x\n")
    (root / "io" / "b.py").write_text("from .c import x\n")
    (root / "io" / "c.py").write_text("def f():\n    import pkg.io.a\n")
    (root / "extras.py").write_text("")
    assert check_layers(root) == [
        "pkg.extras: 'extras' has no layer; add it to LAYERS in tests/test_layers.py",
        "import cycle between pkg.io.a, pkg.io.b, pkg.io.c",
    ]
