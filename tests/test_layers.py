"""The import graph of `pgfs`, read statically (README Design, "Layers").

Every `import` and `from ... import` in every module counts, at the top of
the file, inside functions and under `TYPE_CHECKING` alike: a lazy import is
still a dependency. The layers, lowest first:

    sqlite <- store <- emulator <- tracker <- fuse <- cli

A module may import its own layer and the ones below, never one above; no
modules import each other in a cycle; and the layers above the store know it
only through `pgfs.store`'s interface: no database driver, no backend module,
no embedded cluster (the composition root in `pgfs.cli` builds those).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pgfs"
LAYERS = ("sqlite", "store", "emulator", "tracker", "fuse", "cli")
TOP = len(LAYERS)
"""`pgfs/__init__.py` and `pgfs/__main__.py` sit above every layer."""
DRIVERS = ("psycopg", "psycopg_pool", "psycopg2", "mariadb", "MySQLdb", "pymysql")
BACKENDS = ("pgfs.store.postgres", "pgfs.store.mariadb", "pgfs.store.cluster")
STORE_CLIENTS = ("emulator", "tracker", "fuse")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str:
    """The module `name` stands for: itself, or the package holding the attribute."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str) -> set[str]:
    """Every name `module` imports, made absolute (a module, or a package's attribute)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # `from pgfs.fuse import control` imports the module pgfs.fuse.control
            submodules = {f"{source}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(source)
    return found


GRAPH = {
    module: {resolve(name) for name in imports(module) if name.startswith("pgfs")} - {module}
    for module in MODULES
}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return TOP
    return LAYERS.index(parts[1])


def test_every_module_has_a_layer() -> None:
    strays = [m for m in MODULES if layer(m) == TOP and m not in ("pgfs", "pgfs.__main__")]
    assert not strays, f"modules outside every layer: {strays}"


def test_imports_point_down() -> None:
    upward = [
        f"{module} ({LAYERS[layer(module)] if layer(module) < TOP else 'top'}) imports "
        f"{target} ({LAYERS[layer(target)]})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if layer(target) < TOP and layer(target) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module, or with a self-edge."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles() -> None:
    assert strongly_connected(GRAPH) == []


def test_cycle_detection_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("client", STORE_CLIENTS)
def test_store_clients_import_no_driver_and_no_backend(client: str) -> None:
    prefix = f"pgfs.{client}"
    offending = [
        f"{module} imports {name}"
        for module in MODULES
        if module == prefix or module.startswith(prefix + ".")
        for name in sorted(imports(module))
        if name.split(".")[0] in DRIVERS
        or any(name == b or name.startswith(b + ".") for b in BACKENDS)
    ]
    assert not offending, "\n".join(offending)


def test_cli_is_a_package_on_top() -> None:
    """The CLI imports the layers; nothing below registers itself into it."""
    assert (PACKAGE / "cli" / "__init__.py").is_file()
    assert not (PACKAGE / "cli.py").exists()


def test_the_cli_loads_without_fuse() -> None:
    """pyfuse3 is imported only when a mount starts: import, export, verify and inspect
    run where FUSE is not installed."""
    code = "import sys, pgfs.cli; print(sorted(m for m in sys.modules if 'pyfuse3' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
