"""The prebuilt labextension: built from this checkout, installed where Jupyter looks, and
rebuilt only when its inputs change (the build cache CI relies on)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from types import ModuleType

import pytest
from jupyter_core.paths import jupyter_path

import nbws

ROOT = Path(__file__).resolve().parents[2]
LABEXTENSION = ROOT / "labextension"
BUILT = ROOT / "nbws" / "labextension"
VIEWS = ROOT / "nbws" / "widgets" / "static" / "views.js"


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "nbws_labextension_build", LABEXTENSION / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed() -> Path:
    for base in jupyter_path("labextensions"):
        candidate = Path(base) / "nbws" / "package.json"
        if candidate.is_file():
            return candidate
    raise AssertionError("Jupyter finds no nbws labextension: pip install -e . (or .)")


def test_jupyter_serves_the_labextension_built_from_this_checkout() -> None:
    built = json.loads((BUILT / "package.json").read_text())
    installed = json.loads(_installed().read_text())
    assert installed["name"] == "nbws"
    assert installed["version"] == nbws.__version__
    assert installed["jupyterlab"]["_build"]["load"] == built["jupyterlab"]["_build"]["load"], (
        "the installed labextension is stale: pip install -e . again, or link it with "
        "jupyter-builder develop --overwrite ."
    )
    assert (BUILT / installed["jupyterlab"]["_build"]["load"]).is_file()
    assert nbws._jupyter_labextension_paths() == [{"src": "labextension", "dest": "nbws"}]


def test_input_key_changes_with_sources_but_not_with_unit_tests(tmp_path: Path) -> None:
    build = _build_script()
    root = tmp_path / "ext"
    (root / "src" / "__tests__").mkdir(parents=True)
    (root / "style").mkdir()
    for name in ("package.json", "package-lock.json", "tsconfig.json"):
        (root / name).write_text("{}")
    (root / "src" / "index.ts").write_text("export {};")
    (root / "style" / "base.css").write_text("")
    key = build.input_key(root)
    assert build.input_key(root) == key
    (root / "src" / "__tests__" / "a.spec.ts").write_text("test")
    assert build.input_key(root) == key
    (root / "src" / "index.ts").write_text("export const x = 1;")
    changed = build.input_key(root)
    assert changed != key
    (root / "style" / "base.css").write_text("a {}")
    assert build.input_key(root) not in (key, changed)
    (root / "src" / "index.ts").rename(root / "src" / "main.ts")
    assert build.input_key(root) not in (key, changed)


def test_cache_restores_exactly_what_was_stored(tmp_path: Path) -> None:
    build = _build_script()
    output = tmp_path / "out"
    views = tmp_path / "widgets" / "static" / "views.js"
    (output / "static").mkdir(parents=True)
    views.parent.mkdir(parents=True)
    (output / "package.json").write_text('{"name": "nbws"}')
    (output / "static" / "style.js").write_text("// style")
    views.write_text("export function render() {}")
    cache = tmp_path / "cache"
    assert not build.restore("k1", cache, output, views)
    entry = build.store("k1", cache, output, views)
    assert entry == cache / "k1"
    (output / "static" / "style.js").write_text("// changed")
    (output / "static" / "extra.js").write_text("")
    views.unlink()
    assert build.restore("k1", cache, output, views)
    assert (output / "static" / "style.js").read_text() == "// style"
    assert not (output / "static" / "extra.js").exists()
    # The widgets' views come back with the labextension (one key for both).
    assert views.read_text() == "export function render() {}"
    # Restored files are newer than any source, so the editable build hook sees no staleness.
    stored = entry / "labextension" / "package.json"
    assert os.stat(output / "package.json").st_mtime >= os.stat(stored).st_mtime


def test_a_cache_entry_without_the_views_is_not_a_hit(tmp_path: Path) -> None:
    build = _build_script()
    entry = tmp_path / "cache" / "k1" / "labextension"
    (entry / "static").mkdir(parents=True)
    (entry / "package.json").write_text("{}")
    (entry / "static" / "style.js").write_text("")
    views = tmp_path / "views.js"
    assert not build.restore("k1", tmp_path / "cache", tmp_path / "out", views)
    assert not views.exists()


def test_cache_keeps_only_the_newest_entries(tmp_path: Path) -> None:
    build = _build_script()
    output = tmp_path / "out"
    (output / "static").mkdir(parents=True)
    (output / "package.json").write_text("{}")
    (output / "static" / "style.js").write_text("")
    views = tmp_path / "views.js"
    views.write_text("")
    cache = tmp_path / "cache"
    for i in range(build.KEEP_ENTRIES + 2):
        entry = build.store(f"k{i}", cache, output, views)
        os.utime(entry, (1000 + i, 1000 + i))
    build.store("newest", cache, output, views)
    kept = sorted(p.name for p in cache.iterdir())
    assert len(kept) == build.KEEP_ENTRIES
    assert "newest" in kept and "k0" not in kept


@pytest.mark.parametrize("name", ["static/style.js", "package.json"])
def test_build_output_has_what_the_wheel_hook_ensures(name: str) -> None:
    assert (BUILT / name).is_file()


def test_the_widgets_views_are_built_and_are_one_es_module() -> None:
    text = VIEWS.read_text()
    assert "export" in text and "render" in text
    # Self-contained: anywidget loads it from a string, with nothing to resolve imports.
    assert not re.search(r"^import\b|\}\s*from\s*[\"'][^\"']+[\"']|\bimport\s*[\"']", text, re.M)
