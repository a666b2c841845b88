"""The package's house rules, measured from its imports: no import circle among seqcli's modules, the
core never reaches up to the CLI, its renderers or the verbs, and importing the core stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seqcli"

# Modules below the verbs and the CLI: they may import each other (without circles), never what sits above.
# A package (specfile, modelbuild, distribute) stands for every module in it: modelbuild.layers, distribute.cluster...
CORE = [
    "display",
    "errors",
    "stages",
    "shapes",
    "files",
    "keras_env",
    "exit_status",
    "budget",
    "inputs",
    "archives",
    "records",
    "memory",
    "manifest",
    "outputs",
    "datacheck",
    "specfile",
    "registry",
    "compile",
    "compile_checks",
    "directions",
    "applications",
    "data",
    "distribute",
    "modelbuild",
    "trainable",
    "models",
]
# What the core must never import: the CLI and its terminal stack, and the verbs built on the core.
ABOVE_CORE = [
    "seqcli.cli",
    "seqcli.views",
    "seqcli.verbs",
    "seqcli.training",
    "seqcli.tune",
    "rich",
    "click",
]
# The verbs and the training/tuning engines sit above the core and below the CLI: they never import click,
# the CLI, or the terminal views (a verb reports through callbacks the CLI renders).
BELOW_CLI = ["seqcli.verbs", "seqcli.training", "seqcli.tune"]
BELOW_CLI_NEVER = ["seqcli.cli", "click"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The statements under ``if TYPE_CHECKING:``: imports a type checker reads and Python never runs."""
    blocks = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    return {inner for block in blocks for statement in block.body for inner in ast.walk(statement)}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in the file that runs, at module level or inside functions
    alike (not those only a type checker reads)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(), str(path))
    skipped = type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in modules else base, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """seqcli module -> {imported module (seqcli's or third party): first line}."""
    modules = package_modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for imported, line in imports_of(name, path, modules):
            if imported != name:
                edges.setdefault(imported, line)
    return graph


def where(graph, source: str, target: str) -> str:
    path = package_modules()[source].relative_to(PACKAGE.parent)
    return f"{source} -> {target} ({path}:{graph[source][target]})"


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    internal = {name: [t for t in edges if t in graph] for name, edges in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in internal[node]:
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(internal):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle_among_seqcli_modules():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle:\n  " + "\n  ".join(where(graph, a, b) for a, b in zip(cycle, cycle[1:]))


def is_core(name: str) -> bool:
    return any(name == f"seqcli.{core}" or name.startswith(f"seqcli.{core}.") for core in CORE)


def test_core_modules_never_import_the_cli_its_renderers_or_the_verbs():
    graph = import_graph()
    assert [name for name in graph if is_core(name)], "no core module found"
    upward = [
        where(graph, source, target)
        for source, edges in graph.items()
        if is_core(source)
        for target in edges
        if any(target == above or target.startswith(above + ".") for above in ABOVE_CORE)
    ]
    assert not upward, "core modules import from above the core:\n  " + "\n  ".join(upward)


def test_verbs_and_engines_never_import_the_cli_or_click():
    graph = import_graph()
    upward = [
        where(graph, source, target)
        for source, edges in graph.items()
        if any(source == below or source.startswith(below + ".") for below in BELOW_CLI)
        for target in edges
        if any(target == above or target.startswith(above + ".") for above in BELOW_CLI_NEVER)
    ]
    assert not upward, "verbs and engines import the CLI:\n  " + "\n  ".join(upward)


def loaded_after(module: str, watched: list[str]) -> list[str]:
    code = f"import sys, {module}\nprint(' '.join(name for name in {watched!r} if name in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    return result.stdout.split()


@pytest.mark.parametrize("module", ["seqcli.modelbuild", "seqcli.data", "seqcli.specfile"])
def test_importing_the_core_leaves_rich_and_click_unloaded(module):
    assert loaded_after(module, ["rich", "click"]) == []


def test_importing_the_spec_leaves_tensorflow_and_keras_unloaded():
    assert loaded_after("seqcli.specfile", ["rich", "click", "tensorflow", "keras"]) == []


# The house's size rule: a file a reader can hold (~500 lines), a class with one job (~200 lines).
MAX_FILE_LINES, MAX_CLASS_LINES = 500, 200
# Files over the rule while they are being split; remove an entry when its split lands.
BEING_SPLIT: set[str] = set()


def test_no_module_or_class_is_too_big_to_read():
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE.parent).as_posix()
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_FILE_LINES and name not in BEING_SPLIT:
            too_big.append(f"{name}: {lines} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text, name)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_big.append(
                    f"{name}:{node.lineno}: class {node.name}: {node.end_lineno - node.lineno + 1} "
                    f"lines (at most {MAX_CLASS_LINES})"
                )
    assert not too_big, "split by concern:\n  " + "\n  ".join(too_big)


def test_every_test_file_has_an_area():
    """`pytest -m AREA` is the quick loop for a change in one area; a test file in no area would never run in it."""
    from tests.conftest import area_of

    tests = Path(__file__).resolve().parent
    unplaced = [path.name for path in sorted(tests.glob("test_*.py")) if area_of(path.name) is None]
    assert not unplaced, f"add these to AREAS in tests/conftest.py: {unplaced}"
