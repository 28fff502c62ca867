"""Imports run one way: contracts and domain <- activities <- workflows <- worker, API and clients.

The graph is read from the source with :mod:`ast`, so it counts every import the interpreter
could run: at module level, inside functions, inside
``workflow.unsafe.imports_passed_through()`` blocks and under ``if TYPE_CHECKING:``. The last
are counted because a type-only import is still a dependency a reader (and mypy) must follow; a
cycle through one means two modules that cannot be read apart, and it is the usual way to hide a
runtime cycle. Importing ``a.b.c`` is an edge to ``a.b.c`` only (not to the packages ``a`` and
``a.b``), so a package ``__init__`` that re-exports its modules is not a cycle.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("jobsheet", "activities", "workflows", "worker.py")

# Bottom to top. A module may import modules of its own layer and of the layers below.
LIBRARY = 0  # jobsheet/: core, contracts (models, names, errors) and domain rules
ACTIVITIES = 1
WORKFLOWS = 2
FACES = 3  # the worker, the API, the SDK, the CLI, the local stack, and Temporal clients
LAYER_NAMES = {LIBRARY: "library", ACTIVITIES: "activities", WORKFLOWS: "workflows", FACES: "faces"}

# What under jobsheet/ is a face by nature: it serves, starts or calls the whole system.
FACE_PACKAGES = {
    "jobsheet.api": "the public HTTP service",
    "jobsheet.sdk": "the client library (HTTP only)",
    "jobsheet.cli": "the command line",
    "jobsheet.ops": "the local stack, the demo and the deployment's one-shot jobs",
}
FACE_MODULES = {
    "jobsheet": "the package root: `from jobsheet import Client` re-exports the SDK",
    "jobsheet.jobs.operations": "starts and calls the job sheet workflow through typed handles "
    "on JobSheetWorkflow (the API and tests use it; no library code does)",
}

# Imports that cross the layers the wrong way and stay, each with its reason. Keep it short.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    """``jobsheet/ledger/operations.py`` -> ``jobsheet.ledger.operations``; a package is its ``__init__``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> Iterator[Path]:
    """Every Python file of the packages under test."""
    for source in SOURCES:
        path = ROOT / source
        if path.is_file():
            yield path
        else:
            yield from sorted(path.rglob("*.py"))


def layer(module: str) -> int:
    """The layer a module belongs to."""
    top = module.split(".")[0]
    if top == "worker" or module in FACE_MODULES:
        return FACES
    if any(module == p or module.startswith(p + ".") for p in FACE_PACKAGES):
        return FACES
    if top == "workflows":
        return WORKFLOWS
    if top == "activities":
        return ACTIVITIES
    return LIBRARY


def imports(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The project modules a module imports, anywhere in its body; relative imports resolved.

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_known_prefix(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else _known_prefix(base, known))
    found.discard("")
    found.discard(module)
    return found


def _known_prefix(name: str, known: set[str]) -> str:
    """The longest prefix of a dotted name that is a project module ("" if none is)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return ""


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (read once per test run)."""
    files = {module_name(path): path for path in source_files()}
    known = set(files)
    return {
        module: imports(
            ast.parse(path.read_text(), filename=str(path)),
            module,
            path.name == "__init__.py",
            known,
        )
        for module, path in files.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None if the graph has none.

    A depth-first search without recursion: ``stack`` holds the path from the start, each
    module with the imports still to visit.
    """
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        on_path = {start}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                path = [module for module, _ in stack]
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph.get(child, set())))))
                on_path.add(child)
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_run_down_the_layers() -> None:
    upward = sorted(
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(module) and (module, target) not in ALLOWED_UPWARD
    )
    assert not upward, "imports up the layers:\n" + "\n".join(
        f"  {m} ({LAYER_NAMES[layer(m)]}) imports {t} ({LAYER_NAMES[layer(t)]})" for m, t in upward
    )


def test_allowed_exceptions_are_still_needed() -> None:
    graph = import_graph()
    stale = [pair for pair in ALLOWED_UPWARD if pair[1] not in graph.get(pair[0], set())]
    assert not stale, f"remove from ALLOWED_UPWARD: {stale}"


def test_the_graph_sees_hidden_imports() -> None:
    """Imports in sandbox pass-through blocks, in functions and for type checking are edges."""
    graph = import_graph()
    assert "activities.ledger" in graph["workflows.account"]  # imports_passed_through()
    assert "jobsheet.sdk" in graph["jobsheet"]  # in __getattr__ and under TYPE_CHECKING


def test_a_cycle_is_reported_as_a_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_sdk_speaks_http_only() -> None:
    """The SDK reaches the system through the public API: no workflow, activity or module
    that calls Temporal (``jobsheet.jobs.operations``, ``jobsheet.ledger.operations``,
    ``jobsheet.identity.registry``)."""
    graph = import_graph()
    temporal_clients = {
        "jobsheet.jobs.operations",
        "jobsheet.ledger.operations",
        "jobsheet.identity.registry",
    }
    crossing = sorted(
        (module, target)
        for module, targets in graph.items()
        if module.startswith("jobsheet.sdk")
        for target in targets
        if layer(target) in (ACTIVITIES, WORKFLOWS) or target in temporal_clients
    )
    assert not crossing
