"""The package layout: everything imports, and the layering has no cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest


def _modules_after_import(package: str) -> set[str]:
    code = f"import sys, {package}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_all_packages_import_together():
    subprocess.run([sys.executable, "-c", "import musicgen, codec, diffusion, mgcore"], check=True)


@pytest.mark.parametrize("package", ["mgcore", "codec", "diffusion"])
def test_lower_layers_never_import_musicgen(package):
    loaded = _modules_after_import(package)
    assert "musicgen" not in loaded
    if package == "mgcore":
        assert not {"codec", "diffusion"} & loaded


def test_version_is_the_installed_distribution():
    from importlib.metadata import version

    import musicgen

    assert musicgen.__version__ == version("musicgen-jax")


# ------------------------------------------------------------------ the import graph
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mgcore", "codec", "diffusion", "musicgen")


def _project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(importer, imported project module, inside a function) for every import statement,
    wherever it stands: a function-level import is as much an edge as a top-level one."""

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(node, in_function: bool, name=name, package=package) -> None:
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                targets = []
                if isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join([*up, base] if base else up)
                    targets = [f"{base}.{a.name}" for a in child.names]
                for target in {resolve(t) for t in targets} - {None, name}:
                    edges.append((name, target, inner))
                visit(child, inner)

        visit(ast.parse(path.read_text()), False)
    return edges


def test_no_module_imports_another_in_a_cycle():
    modules = _project_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for source, target, _ in _imports(modules):
        graph[source].add(target)
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            connect(module)
    assert cycles == []


def test_few_project_imports_hide_inside_functions():
    """Imports inside functions only for startup time (the CLI's handlers, `import musicgen`
    staying light), never to dodge a cycle."""
    inner = [(s, t) for s, t, in_function in _imports(_project_modules()) if in_function]
    assert len(inner) <= 20, inner


def test_no_library_or_bench_file_is_over_500_lines():
    long = {}
    for folder in (*PACKAGES, "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > 500:
                long[str(path.relative_to(ROOT))] = lines
    assert long == {}
