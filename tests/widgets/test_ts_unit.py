"""Runs the labextension's TypeScript unit tests (jest: coalescing, resume bookkeeping,
parsing, browser rules) so the one pytest command covers them too."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "nbws_labextension_build", LABEXTENSION / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("npm") is None, reason="Node.js/npm is not installed")
def test_typescript_unit_tests_pass() -> None:
    # node_modules from the cache (or npm ci once); CI restores it before pytest.
    _build_script().ensure_node_modules()
    result = subprocess.run(
        ["npm", "test", "--silent", "--", "--ci"],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "failed" not in report.split("Tests:")[-1].split("\n")[0], report
