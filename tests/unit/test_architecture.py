"""The layers keep to their imports (docs/ARCHITECTURE.md), and the Bento lists what the service
imports.

Every module of service/, training/ and bench/ is parsed (nothing is imported); its imports,
at module level or in functions, and the modules it lists to `importlib.import_module`, are
checked against the rules below. The rules are the architecture's: a folder is a layer, and a
layer imports only what sits below it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "training", "bench")
STDLIB = set(sys.stdlib_module_names)
WEB = ("bentoml", "fastapi", "starlette", "grpc", "grpc_health", "grpc_reflection", "uvicorn")

# (modules a rule applies to, what they must not import); prefixes match whole dotted parts
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("service", ("torch", "torchvision", "training", "bench")),
    ("service.pipeline", (*WEB, "service.tasks", "service.faces", "service.gallery")),
    ("service.pipeline", ("service.serving", "service.api")),
    ("service.tasks", (*WEB, "service.faces", "service.gallery", "service.serving", "service.api")),
    ("service.tasks", ("service.pipeline.run",)),
    ("service.gallery", (*WEB, "service.tasks", "service.pipeline", "service.faces")),
    ("service.gallery", ("service.serving", "service.api")),
    ("service.faces", (*WEB, "service.serving", "service.api")),
    ("service.api", ("bentoml", "service.serving")),
    ("service.api.rest", ("grpc", "grpc_health", "grpc_reflection")),
    ("service.api.grpc", ("fastapi", "starlette")),
    ("service.api.oip", ("grpc", "fastapi", "starlette")),
    ("service.api.gateway", ("grpc", "fastapi", "starlette")),
    ("service.api.bodies", ("grpc", "fastapi", "starlette")),
    ("training", ("bench", "service.serving", "service.api.rest", "service.api.grpc", *WEB)),
]
# ops: pure numpy (and Pillow for images, pycocotools for RLE), nothing else of ours
OPS_ALLOWED = ("numpy", "PIL", "pycocotools", "service.ops")
# the composition root: the one module of serving/ that puts the API edges on the service
COMPOSITION_ROOT = "service.serving.gateway"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (absolute, dotted)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith("_pb2.py") and not path.name.endswith("_pb2_grpc.py"):
                found[module_name(path)] = path
    return found


def is_ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def named_modules(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Our modules a module-level tuple or list names, in a module that imports by name
    (`importlib.import_module`): the gRPC server's servicer modules."""
    if "import_module" not in ast.unparse(tree):
        return
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List):
            for item in node.value.elts:
                if isinstance(item, ast.Constant) and item.value in sources():
                    yield item.value, item.lineno


def imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for target, line in named_modules(tree):
        yield Import(module, target, line)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Import(module, full if full in sources() else base, node.lineno)


@cache
def all_imports() -> list[Import]:
    return [found for module, path in sources().items() for found in imports_of(module, path)]


def resolved(target: str) -> str:
    """The module of ours an import names (`service.api.bodies.box` -> `service.api.bodies`)."""
    while target and target not in sources():
        target = target.rpartition(".")[0]
    return target


def test_every_module_is_parsed() -> None:
    assert len(sources()) > 100 and "service.serving.gateway" in sources()


@pytest.mark.parametrize(("scope", "forbidden"), RULES, ids=[f"{s}:{f[0]}" for s, f in RULES])
def test_layers_import_only_downward(scope: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in all_imports()
        if within(i.module, scope) and any(within(i.target, f) for f in forbidden)
    ]
    assert not bad, "\n".join(bad)


def test_ops_is_pure_numpy() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in all_imports()
        if within(i.module, "service.ops")
        and i.target.split(".")[0] not in STDLIB
        and not any(within(i.target, allowed) for allowed in OPS_ALLOWED)
    ]
    assert not bad, "\n".join(bad)


def test_only_the_composition_root_puts_the_api_on_the_service() -> None:
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in all_imports()
        if within(i.module, "service.serving")
        and i.module != COMPOSITION_ROOT
        and within(i.target, "service.api")
    ]
    assert not bad, "\n".join(bad)


def test_service_root_holds_only_settings_errors_and_the_cli() -> None:
    top = {p.name for p in (ROOT / "service").iterdir() if p.suffix == ".py"}
    assert top == {"__init__.py", "settings.py", "errors.py", "cli.py"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the module graph, or None (depth-first, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        state[start], path = 1, [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in sources()}
    for i in all_imports():
        target = resolved(i.target) if is_ours(i.target) else ""
        if target and target != i.module and not within(i.module, target):
            graph[i.module].add(target)
    return graph


def test_no_import_cycle() -> None:
    assert find_cycle(module_graph()) is None, " -> ".join(find_cycle(module_graph()) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# ---- the Bento's packages are what the service imports ----


def distribution(name: str) -> str:
    base = name.split("[")[0].split("=")[0].split(">")[0].split("<")[0]
    return base.strip().lower().replace("_", "-")


def service_distributions() -> set[str]:
    """The distributions whose modules service/ imports (third party only)."""
    owners = packages_distributions()
    found = set()
    for i in all_imports():
        top = i.target.split(".")[0]
        if within(i.module, "service") and top not in STDLIB and not is_ours(top):
            names = owners.get(top)
            assert names, f"{i.module}:{i.line}: no installed distribution provides {top!r}"
            found.add(distribution(names[0]))
    return found


def pyproject_serving() -> set[str]:
    """The serving install's requirements: the dependencies and the `cpu` extra."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {*project["dependencies"], *project["optional-dependencies"]["cpu"]}


def test_the_bento_lists_exactly_what_the_service_imports() -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    packages = set(bentofile["python"]["packages"])
    listed = {distribution(p) for p in packages}
    imported = service_distributions()
    assert imported - listed == set(), "imported by service/ but not in bentofile.yaml"
    assert listed - imported == set(), "in bentofile.yaml but not imported by service/"
    assert packages == pyproject_serving(), "bentofile.yaml and pyproject.toml disagree"
    assert "torch" not in listed and "bentoml" in listed


# ---- docs/ARCHITECTURE.md names the code as it is ----

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def test_every_file_the_architecture_names_exists() -> None:
    import re

    text = ARCHITECTURE.read_text()
    paths = set(re.findall(r"`((?:service|training|bench|tests)/[\w/.]+\.py)`", text))
    assert len(paths) > 20
    assert [p for p in paths if not (ROOT / p).is_file()] == []


def test_every_function_the_architecture_names_is_in_its_file() -> None:
    """`name` (`file.py`) and `Class.method` (`file.py`): the name is defined in that file."""
    import re

    text = " ".join(ARCHITECTURE.read_text().split())
    pairs = re.findall(
        r"`([A-Za-z_][\w.]*)(?:\([^`]*\))?`\s*\(`((?:service|training|bench)/[\w/]+\.py)`", text
    )
    assert len(pairs) > 15
    missing = []
    for name, path in pairs:
        tree = ast.parse((ROOT / path).read_text())
        defined = {
            n.name
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        defined |= {
            t.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        parts = name.split(".")
        if parts[0] == Path(path).stem:  # `module.function`
            parts = parts[1:]
        if not set(parts) <= defined:
            missing.append(f"{name} ({path})")
    assert missing == []
