"""`docs/architecture.md`'s layer table is the rule: every import of every module (read from its AST,
so imports under `TYPE_CHECKING` and inside functions count) must be one its package's row allows,
no package may reach kopf, a Kubernetes client or aiohttp where the doc says it never does, the
packages import each other without a circle, and the modules inside one package do too."""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).parents[3]
PACKAGE = REPO / "operator" / "oneiric_operator"
DOC = REPO / "docs" / "architecture.md"
ROOT = "oneiric_operator"
"""The unit name of the package's own `__init__.py` (it holds the version)."""

HEAVY = frozenset({"kopf", "kubernetes", "kubernetes_asyncio", "aiohttp"})
NEVER: dict[str, frozenset[str]] = {
    "resolution": HEAVY,
    "trust": HEAVY,
    "runtime": frozenset({"kopf"}),
    "manifest_reconciler": frozenset({"kopf"}),
    "swaps": frozenset({"kopf"}),
}
"""What the doc's sentence under the table promises, checked through every package a unit reaches."""


@dataclass
class Imports:
    """One unit's imports: our units and third-party top-level modules, each with where it happens."""

    ours: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    third_party: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def units_of(package: Path) -> set[str]:
    """A unit is a subpackage, a top-level module, or the package's `__init__.py` (`ROOT`)."""
    units = {ROOT}
    for child in package.iterdir():
        if child.is_dir() and (child / "__init__.py").exists():
            units.add(child.name)
        elif child.suffix == ".py" and child.name != "__init__.py":
            units.add(child.stem)
    return units


def _unit_of_file(package: Path, path: Path) -> tuple[str, list[str]]:
    parts = list(path.relative_to(package).with_suffix("").parts)
    unit = ROOT if parts == ["__init__"] else parts[0]
    return unit, [ROOT, *parts][:-1]  # the package a relative import starts from


def _targets(node: ast.Import | ast.ImportFrom, base: list[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        start = base[: len(base) - (node.level - 1)]
        module = ".".join([*start, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    return [f"{module}.{alias.name}" for alias in node.names]


def read_imports(package: Path) -> dict[str, Imports]:
    """Every import statement anywhere in every module, by the unit it is in."""
    units = units_of(package)
    found: dict[str, Imports] = defaultdict(Imports)
    for path in sorted(package.rglob("*.py")):
        unit, base = _unit_of_file(package, path)
        where = str(path.relative_to(package.parent))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, base):
                parts = target.split(".")
                if parts[0] == ROOT:
                    # `from oneiric_operator import metrics` names a unit; `... import __version__` the root.
                    imported = parts[1] if len(parts) > 1 and parts[1] in units else ROOT
                    if imported != unit:
                        found[unit].ours[imported].add(f"{where}:{node.lineno}")
                elif parts[0] not in sys.stdlib_module_names:
                    found[unit].third_party[parts[0]].add(f"{where}:{node.lineno}")
    return found


def read_table(doc: Path) -> dict[str, set[str]]:
    """The layer table: each package cell's units and what its "may import" cell names."""
    section = doc.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[1] in {"package", "---"} or not line.startswith("|"):
            continue
        allowed = set(re.findall(r"`([^`]+)`", cells[2]))
        for unit in re.findall(r"`([^`]+)`", cells[1]):
            assert unit not in table, f"{unit} has two rows in the layer table"
            table[unit] = allowed
    return table


def violations(imports: dict[str, Imports], table: dict[str, set[str]], units: set[str]) -> list[str]:
    """Each import the table does not allow, and each unit the table does not list."""
    found = [f"{unit} has no row in the layer table" for unit in sorted(units - table.keys())]
    for unit, its in sorted(imports.items()):
        allowed = table.get(unit, set())
        for name, where in sorted([*its.ours.items(), *its.third_party.items()]):
            if name not in allowed:
                found.append(f"{unit} imports {name} ({', '.join(sorted(where))})")
    return found


def reachable(imports: dict[str, Imports], unit: str) -> set[str]:
    """The units `unit` imports, directly or through others (itself included)."""
    seen, todo = {unit}, [unit]
    while todo:
        for other in imports[todo.pop()].ours:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def forbidden_reach(imports: dict[str, Imports], never: dict[str, frozenset[str]]) -> list[str]:
    found = []
    for unit, forbidden in sorted(never.items()):
        for via in sorted(reachable(imports, unit)):
            for name in sorted(forbidden & imports[via].third_party.keys()):
                where = ", ".join(sorted(imports[via].third_party[name]))
                found.append(f"{unit} reaches {name} through {via} ({where})")
    return found


def module_imports(package: Path) -> dict[str, set[str]]:
    """Each module's imports of modules of its own package (`manifest_reconciler.worker` ->
    `manifest_reconciler.reconciler`), read like `read_imports`: a circle inside one package is a
    circle all the same, only the package table cannot see it."""
    modules = {
        ".".join(path.relative_to(package).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
    }
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if len(parts) < 2:
            continue  # a top-level module is a unit of its own: `cycles` of `read_imports` covers it
        module = ".".join(parts).removesuffix(".__init__")
        _, base = _unit_of_file(package, path)
        edges = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, base):
                names = target.split(".")
                if names[0] != ROOT or len(names) < 2 or names[1] != parts[0]:
                    continue  # another package, or a third party: not a circle inside this one
                # the longest prefix that is a module: `pkg.mod.Class` -> `pkg.mod`, `pkg.mod` -> `pkg.mod`
                for end in range(len(names), 1, -1):
                    candidate = ".".join(names[1:end])
                    if candidate in modules:
                        if candidate != module:
                            edges.add(candidate)
                        break
    return found


def cycles(imports: Mapping[str, Imports | Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit or module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(_edges(imports, node)):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(imports):
        if node not in index:
            visit(node)
    return sorted(found)


def _edges(imports: Mapping[str, Imports | Iterable[str]], node: str) -> Iterable[str]:
    its = imports.get(node, ())
    return its.ours if isinstance(its, Imports) else its


# The real package against the real doc.


def test_every_import_is_one_the_layer_table_allows() -> None:
    imports = read_imports(PACKAGE)
    assert imports["kube"].third_party.keys() >= {"aiohttp", "kubernetes"}  # the reader sees imports
    assert violations(imports, read_table(DOC), units_of(PACKAGE)) == []


def test_the_pure_layers_never_reach_kopf_a_kubernetes_client_or_aiohttp() -> None:
    imports = read_imports(PACKAGE)
    assert "kopf" in imports["controllers"].third_party  # kopf's imports are visible where they are
    assert forbidden_reach(imports, NEVER) == []


def test_no_import_circle_between_packages() -> None:
    assert cycles(read_imports(PACKAGE)) == []


def test_no_import_circle_inside_a_package() -> None:
    """Imports only for the type checker count: they are still two modules that need each other."""
    imports = module_imports(PACKAGE)
    assert "manifest_reconciler.high_water" in imports["manifest_reconciler.reconciler"]  # it sees them
    assert cycles(imports) == []


def test_the_table_names_only_what_exists() -> None:
    """A typo in the doc (`fetchng` for `fetching`) would silently allow nothing; every name must be a
    unit of ours or a module that is installed."""
    units = units_of(PACKAGE)
    named = set().union(*read_table(DOC).values())
    unknown = sorted(
        name for name in named - units if name not in sys.stdlib_module_names and not _installed(name)
    )
    assert unknown == []


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# Positive controls: the same checks on a synthetic package with known faults.


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / ROOT
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


SYNTHETIC_DOC = """# x
## Layers
| layer | package | may import | holds |
|---|---|---|---|
| leaves | `oneiric_operator`, `clock` | | |
| API | `api` | `pydantic` | |
| pure | `resolution` | `api` | |
| wiring | `controllers` | `resolution`, `api`, `kopf` | |
## Next
"""


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path]:
    package = _write(
        tmp_path,
        {
            "__init__.py": "__version__ = '0'\n",
            "clock.py": "import datetime\n",
            "api/__init__.py": "import pydantic\n",
            "resolution/__init__.py": "from oneiric_operator.api import x\n",
            "resolution/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import kopf\n",
            "resolution/late.py": "def f():\n    from ..controllers import handlers\n",
            "controllers/__init__.py": "import kopf\nfrom oneiric_operator import clock, __version__\n",
            "controllers/handlers.py": "from oneiric_operator.resolution import y\n",
            "controllers/front.py": "from oneiric_operator.controllers.back import Back\n",
            "controllers/back.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from oneiric_operator.controllers import front\n"
            ),
            "swaps/__init__.py": "",
        },
    )
    doc = tmp_path / "architecture.md"
    doc.write_text(SYNTHETIC_DOC)
    return package, doc


def test_the_checks_flag_a_synthetic_bad_package(synthetic: tuple[Path, Path]) -> None:
    package, doc = synthetic
    imports = read_imports(package)
    found = violations(imports, read_table(doc), units_of(package))
    assert found == [
        "swaps has no row in the layer table",
        "controllers imports clock (oneiric_operator/controllers/__init__.py:2)",
        "controllers imports oneiric_operator (oneiric_operator/controllers/__init__.py:2)",
        # a function-local, relative import upwards
        "resolution imports controllers (oneiric_operator/resolution/late.py:2)",
        # an import only for the type checker still counts
        "resolution imports kopf (oneiric_operator/resolution/typed.py:3)",
    ]
    assert forbidden_reach(imports, {"resolution": HEAVY, "api": HEAVY}) == [
        "resolution reaches kopf through controllers (oneiric_operator/controllers/__init__.py:1)",
        "resolution reaches kopf through resolution (oneiric_operator/resolution/typed.py:3)",
    ]
    assert cycles(imports) == [["controllers", "resolution"]]
    assert cycles(module_imports(package)) == [["controllers.back", "controllers.front"]]


def test_a_clean_synthetic_package_passes(synthetic: tuple[Path, Path]) -> None:
    """The other half of the control: with the faults removed, the same checks report nothing."""
    package, doc = synthetic
    (package / "resolution" / "typed.py").write_text("from typing import TYPE_CHECKING\n")
    (package / "resolution" / "late.py").write_text("def f():\n    from ..api import z\n")
    (package / "controllers" / "__init__.py").write_text("import kopf\n")
    (package / "controllers" / "back.py").write_text("class Back: ...\n")
    (package / "swaps" / "__init__.py").unlink()
    (package / "swaps").rmdir()
    imports = read_imports(package)
    assert violations(imports, read_table(doc), units_of(package)) == []
    assert forbidden_reach(imports, {"resolution": HEAVY}) == []
    assert cycles(imports) == []
    assert cycles(module_imports(package)) == []
