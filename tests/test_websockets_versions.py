"""The lowest websockets that pyproject.toml allows really works: the protocol, session,
framing and client-frame tests run again in a venv that has exactly that version, and
``nbws.protocol`` (``_compat`` above all) type-checks against it.

The venv is cached under ``~/.cache/nbws/venv-websockets-<version>`` (made with
``--system-site-packages``, so only websockets is installed into it, from pip's cache or
index), which makes every run after the first take seconds.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import re
import shutil
import subprocess
import sys

import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("NBWS_CACHE", pathlib.Path.home() / ".cache" / "nbws"))
TESTS = [
    "tests/test_compat.py",
    "tests/test_framing.py",
    "tests/test_session.py",
    "tests/test_tap.py",
    "tests/client/test_client_frames.py",
    "tests/client/test_client_connection.py",
    "tests/explore/test_explore_frames.py",
    "tests/explore/test_explore_rfc.py",
]


def lowest_websockets() -> str:
    """The lower bound of the websockets requirement in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [requirement] = [d for d in project["dependencies"] if d.startswith("websockets")]
    match = re.search(r">=\s*([0-9][0-9.]*)", requirement)
    assert match, f"websockets needs a lower bound in pyproject.toml: {requirement!r}"
    return match.group(1)


def installed(python: pathlib.Path) -> str | None:
    """The websockets version ``python`` imports, or None if it cannot."""
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import websockets; print(websockets.__version__)"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def venv_with(version: str) -> pathlib.Path:
    """The cached venv's python, made (under a lock) if missing or broken."""
    CACHE.mkdir(parents=True, exist_ok=True)
    home = CACHE / f"venv-websockets-{version}"
    python = home / "bin" / "python"
    with open(CACHE / f"venv-websockets-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed(python) == version:
            return python
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", str(home)], check=True
        )
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"websockets=={version}"],
            capture_output=True,
            text=True,
        )
        assert pip.returncode == 0, f"cannot install websockets=={version}:\n{pip.stderr}"
    assert installed(python) == version
    return python


def test_the_lowest_supported_websockets_passes_the_protocol_tests() -> None:
    version = lowest_websockets()
    python = venv_with(version)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NBWS_EXPECT_WEBSOCKETS": version}
    result = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "PASSED tests/test_compat.py::test_the_expected_version_is_imported" in output
    assert re.search(r"\d+ passed", output)


def test_compat_type_checks_against_the_lowest_supported_websockets() -> None:
    version = lowest_websockets()
    python = venv_with(version)
    cache = CACHE / f"mypy-websockets-{version}"  # apart from the tree's own mypy cache
    result = subprocess.run(
        [str(python), "-m", "mypy", "--strict", "--cache-dir", str(cache), "nbws/protocol"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
