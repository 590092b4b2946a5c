"""Every notebook runs after the README's install, ``pip install ".[lab]"``.

The notebook tests run with the test extras installed, which include more than ``lab``
(pandas, pyarrow, ...), so a notebook importing one of those passes in CI and fails for a
user with ``ModuleNotFoundError``. This test reads the imports of every code cell and
checks each is provided by nbws's own dependencies plus the ``lab`` extra, or by what
those require in turn (read from the installed distributions' metadata).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import pathlib
import re
import sys
from collections.abc import Iterator

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXTRA = "lab"


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        data: dict[str, object] = tomllib.load(file)["project"]
    return data


def install_requirements(extra: str = EXTRA) -> list[Requirement]:
    """What ``pip install ".[extra]"`` asks for directly: dependencies + the extra."""
    data = project()
    extras = data.get("optional-dependencies", {})
    assert isinstance(extras, dict) and extra in extras, f"no [{extra}] extra in pyproject.toml"
    names = list(data.get("dependencies", [])) + list(extras[extra])  # type: ignore[call-overload]
    return [Requirement(str(text)) for text in names]


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras or {""})


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the distributions those requirements install, transitively."""
    seen: set[str] = set()
    todo = [(r, set(r.extras)) for r in requirements if _applies(r, set())]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} (required by nbws[{EXTRA}]) is not installed here")
        for text in requires:
            child = Requirement(text)
            if _applies(child, extras):
                todo.append((child, set(child.extras)))
    return seen


OPTIONAL = frozenset({"ImportError", "ModuleNotFoundError"})


def _guarded(node: ast.Try) -> bool:
    """``try: import x`` / ``except ImportError:``: the cell works without ``x``."""
    for handler in node.handlers:
        caught = handler.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(n, ast.Name) and n.id in OPTIONAL for n in names):
            return True
    return False


def _imports(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield node.module.split(".")[0]
    for name, value in ast.iter_fields(node):
        if isinstance(node, ast.Try) and name == "body" and _guarded(node):
            continue  # optional imports
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST):
                yield from _imports(child)


def cell_imports(source: str) -> Iterator[str]:
    """Top-level module names a code cell needs (IPython magics and shell lines skipped,
    and imports guarded by ``except ImportError`` too: they are optional)."""
    code = "\n".join("" if re.match(r"\s*[%!]", line) else line for line in source.splitlines())
    yield from _imports(ast.parse(code))


def notebook_imports(path: pathlib.Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return {name for c in nb.cells if c.cell_type == "code" for name in cell_imports(c.source)}


def missing_imports(path: pathlib.Path, provided: set[str]) -> dict[str, list[str]]:
    """Imports of ``path`` that no distribution in ``provided`` supplies, with the
    distributions that do supply them here."""
    owners = metadata.packages_distributions()
    missing = {}
    for module in sorted(notebook_imports(path)):
        if module in sys.stdlib_module_names or module == "nbws":
            continue
        dists = owners.get(module, [])
        if not {canonicalize_name(d) for d in dists} & provided:
            missing[module] = dists
    return missing


def test_the_import_scan_sees_what_a_cell_imports() -> None:
    source = (
        "%matplotlib inline\nimport a.b, c\nfrom d.e import f\nfrom . import g\n!ls\n"
        "def h():\n    import inner\n"
        "try:\n    import optional\nexcept ImportError:\n    import fallback\n"
        "try:\n    import needed\nexcept KeyError:\n    pass\n"
    )
    assert sorted(cell_imports(source)) == ["a", "c", "d", "fallback", "inner", "needed"]


def test_the_closure_follows_requirements_with_their_extras() -> None:
    closure = installed_closure([Requirement("jupyter_server>=2")])
    assert {"jupyter-server", "tornado", "traitlets"} <= closure
    assert "pandas" not in closure


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_import_is_installed_by_the_lab_extra(path: pathlib.Path) -> None:
    provided = installed_closure(install_requirements())
    missing = missing_imports(path, provided)
    assert not missing, (
        f'{path.name} imports {", ".join(missing)}, which pip install ".[{EXTRA}]" does not '
        f"install (provided here by {missing}); add them to the [{EXTRA}] extra"
    )
