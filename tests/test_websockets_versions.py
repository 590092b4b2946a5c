"""The lowest websockets that pyproject.toml allows really works: every non-browser test
that touches websockets (protocol, transport, server, client, explore) runs again in a
venv that has exactly that version, and ``nbws.protocol`` (``_compat`` above all)
type-checks against it.

The rerun is split into groups (one pytest process each, two at a time), so a failure
names its part and each part gets its own time limit. :data:`NOT_RERUN` says why every
other test module is left out, and :func:`test_every_test_module_is_rerun_or_says_why`
keeps the two lists complete, so a new test module cannot be skipped by accident. When
this suite itself runs on the lowest version (a CI job pinned to it), the rerun would
repeat it and is skipped.

The venv is cached under ``~/.cache/nbws/venv-websockets-<version>`` (made with
``--system-site-packages``, so only websockets is installed into it, from pip's cache or
index), which makes every run after the first take seconds to set up.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import tomllib
from websockets.version import version as installed_version

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("NBWS_CACHE", pathlib.Path.home() / ".cache" / "nbws"))

RECOVERY = [
    "tests/client/test_client_chaos.py",
    "tests/client/test_client_publish_batches.py",
    "tests/client/test_client_scale_out.py",
]
CLIENT = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "client").glob("test_*.py"))

GROUPS: dict[str, list[str]] = {
    "protocol": [
        "tests/protocol",
        "tests/test_compat.py",
        "tests/test_framing.py",
        "tests/test_session.py",
        "tests/test_tap.py",
        "tests/test_conformance.py",
        "tests/test_fuzz.py",
    ],
    "transport": [
        "tests/test_echo.py",
        "tests/test_limits.py",
        "tests/test_streaming.py",
        "tests/test_interop.py",
        "tests/test_isolation.py",
    ],
    "server": ["tests/server", "tests/test_cli.py", "tests/test_jupyter_extension.py"],
    # tests/client in two parts of about the same length: the recovery tests (killed
    # links, servers and Redis) and the rest.
    "client": [p for p in CLIENT if p not in RECOVERY],
    "recovery": RECOVERY,
    "explore": [
        "tests/explore",
        "tests/test_secrets_shown.py",
        "tests/widgets/test_kernel_feed.py",
        "tests/widgets/test_handshake.py",
        "tests/widgets/test_relay.py",
        "tests/widgets/test_relay_fallback.py",
    ],
}
"""What the lowest websockets runs again, by part."""

NOT_RERUN: dict[str, str] = {
    "tests/broker": "Redis only: no WebSocket in them",
    "tests/e2e": "browser tests (Chromium speaks WebSocket, not the websockets package)",
    "tests/deploy": "nginx and JupyterHub in front of the same server and client code",
    "tests/widgets/test_build_progress.py": "widget traits, no connection",
    "tests/widgets/test_labextension.py": "the built labextension's files",
    "tests/widgets/test_ts_unit.py": "jest (TypeScript)",
    "tests/widgets/test_widget_traits.py": "widget traits, no connection",
    "tests/test_bench.py": "benchmarks: minutes of load, their code paths run in the groups",
    "tests/test_bench_isolation.py": "a benchmark",
    "tests/test_bench_browser.py": "the browser bench's arithmetic on fixed records",
    "tests/test_notebooks.py": "whole notebooks in kernels (minutes); their client calls "
    "run in the client group",
    "tests/test_config.py": "configuration only",
    "tests/test_docs.py": "documentation checks",
    "tests/test_notebook_requirements.py": "notebook metadata",
    "tests/test_quality.py": "ruff and mypy (mypy on the lowest version is below)",
    "tests/test_version.py": "version strings",
    "tests/test_turns.py": "asyncio scheduling and the slice rule; no websockets code",
    "tests/test_websockets_versions.py": "this file",
}
"""Test modules (or folders) the rerun leaves out, and why."""


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


def test_every_test_module_is_rerun_or_says_why() -> None:
    listed = [p for paths in GROUPS.values() for p in paths] + list(NOT_RERUN)
    missing = [p for p in listed if not (ROOT / p).exists()]
    assert not missing, f"listed but not in the tree: {missing}"
    assert len(listed) == len(set(listed)), "a path is listed twice"

    def covered(path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in listed)

    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    modules = [m for m in modules if "node_modules" not in m]
    unaccounted = [m for m in modules if not covered(m)]
    assert not unaccounted, (
        f"add these to GROUPS (they touch websockets) or NOT_RERUN (with why): {unaccounted}"
    )


class Reruns:
    """The groups' pytest processes, run ``JOBS`` at a time in the background from the
    first test that asks for one (most of a run is waiting on servers, kernels and
    sockets, so two at a time take little more than the longest alone)."""

    def __init__(self, python: pathlib.Path, version: str, groups: list[str]) -> None:
        self.python, self.version = python, version
        self.processes: list[subprocess.Popen[str]] = []
        self.closed = False
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=JOBS)
        # Longest first, so the slowest group is never left to run alone at the end.
        self.results = {g: self.pool.submit(self._run, g) for g in sorted(groups, key=ORDER.index)}

    def _run(self, group: str) -> tuple[int, str]:
        if self.closed:
            return -1, "not run: the test session ended first"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NBWS_EXPECT_WEBSOCKETS": self.version}
        process = subprocess.Popen(
            [str(self.python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
             *GROUPS[group]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.processes.append(process)
        try:
            output, _ = process.communicate(timeout=RERUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            return -1, f"timed out after {RERUN_TIMEOUT} s\n{output}"
        return process.returncode, output

    def close(self) -> None:
        """Stop what is still running (the session ended or was interrupted)."""
        self.closed = True
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)


JOBS = max(1, int(os.environ.get("NBWS_RERUN_JOBS", "2")))
"""How many groups run at once (``NBWS_RERUN_JOBS``)."""
RERUN_TIMEOUT = 1500
ORDER = ["recovery", "server", "transport", "client", "explore", "protocol"]
"""The groups, longest first."""


@pytest.fixture(scope="module")
def reruns(request: pytest.FixtureRequest) -> Iterator[Reruns]:
    version = lowest_websockets()
    if installed_version == version:
        pytest.skip(f"this run is on websockets {version} already: the rerun would repeat it")
    wanted = [
        str(item.callspec.params["group"])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_the_lowest_supported_websockets_passes"
    ]
    runs = Reruns(venv_with(version), version, wanted)
    yield runs
    runs.close()


def test_every_group_has_its_place_in_the_order() -> None:
    assert sorted(ORDER) == sorted(GROUPS)


@pytest.mark.timeout(2 * RERUN_TIMEOUT)
@pytest.mark.parametrize("group", ORDER)
def test_the_lowest_supported_websockets_passes(reruns: Reruns, group: str) -> None:
    returncode, output = reruns.results[group].result()
    summary = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert returncode == 0, "\n".join(summary) + "\n" + output[-5000:]
    assert re.search(r"\d+ passed", output)
    if group == "protocol":
        assert "PASSED tests/test_compat.py::test_the_expected_version_is_imported" in output


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
