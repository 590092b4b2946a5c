"""Lint, format and types are part of the one test command: ruff, mypy, eslint and
prettier must be clean (the same checks as .pre-commit-config.yaml)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABEXTENSION = ROOT / "labextension"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_is_clean():
    result = run("ruff", "check", "nbws", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = run("ruff", "format", "--check", "nbws", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def npm_script(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``npm run SCRIPT`` in labextension/ (skipped only outside CI without the tools)."""
    tools = [LABEXTENSION / "node_modules" / ".bin" / name for name in ("eslint", "prettier")]
    missing = [t.name for t in tools if not t.exists()]
    npm = shutil.which("npm")
    if missing or npm is None:
        reason = (
            f"labextension/node_modules has no {', '.join(missing)}"
            if missing
            else "npm is not installed"
        ) + ": run `python labextension/build.py --node-modules` first"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return subprocess.run(
        [npm, "run", "--silent", script],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_eslint_is_clean():
    result = npm_script("eslint:check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prettier_is_clean():
    result = npm_script("prettier:check")
    assert result.returncode == 0, result.stdout + result.stderr
