"""Jupyter servers whose environment has no nbws, with a kernel from this one (which has it).

The usual JupyterHub / conda setup: the server runs from one environment, notebooks run in
a kernel from another, and ``pip install nbws`` only reached the kernel's. Each server
environment is a real virtualenv (without this environment's site-packages) holding only
what its name says, cached under ``~/.cache/nbws/server-env-<hash of its requirements>``,
so every run after the first starts in seconds:

- ``anywidget``: ``jupyterlab`` + ``ipywidgets`` + ``anywidget`` (the page can load the
  views; the kernel hosts the nbws server);
- ``widgets-only``: ``jupyterlab`` + ``ipywidgets`` (the page can load no nbws or anywidget
  code at all: the kernel-rendered fallback).

The versions are this environment's, so pip installs them from its cache. The lab gets a
kernelspec ``nbws-kernel`` running this environment's python with this tree on its path.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from .lab import LabServer, start_lab

__all__ = ["KERNEL_NAME", "ROOT", "SERVER_ENVS", "server_env", "start_kernel_only_lab", "write"]

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("NBWS_CACHE", Path.home() / ".cache" / "nbws"))
KERNEL_NAME = "nbws-kernel"


def _pinned(*names: str) -> tuple[str, ...]:
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in names)


SERVER_ENVS: dict[str, tuple[str, ...]] = {
    "anywidget": _pinned("jupyterlab", "ipywidgets", "anywidget"),
    "widgets-only": _pinned("jupyterlab", "ipywidgets"),
}


def _works(python: Path, requirements: tuple[str, ...]) -> bool:
    """Whether ``python`` has exactly what it should (and no nbws)."""
    if not python.exists():
        return False
    check = (
        "import importlib.metadata as m, importlib.util as u, sys\n"
        f"reqs = {list(requirements)!r}\n"
        "ok = all(m.version(r.split('==')[0]) == r.split('==')[1] for r in reqs)\n"
        "sys.exit(0 if ok and u.find_spec('nbws') is None else 1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONSAFEPATH"] = "1"  # not this tree's nbws through the working directory
    return subprocess.run([str(python), "-c", check], env=env, cwd="/").returncode == 0


def server_env(kind: str) -> Path:
    """The cached server environment's python, made (under a lock) if missing or broken."""
    requirements = SERVER_ENVS[kind]
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    CACHE.mkdir(parents=True, exist_ok=True)
    home = CACHE / f"server-env-{kind}-{key}"
    python = home / "bin" / "python"
    with open(CACHE / f"server-env-{kind}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _works(python, requirements):
            return python
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *requirements],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert pip.returncode == 0, f"cannot install {requirements}:\n{pip.stderr[-3000:]}"
    assert _works(python, requirements), f"{home} lacks {requirements} (or has nbws)"
    return python


def _kernelspec(data_dir: Path) -> None:
    """A kernel from this environment (nbws importable from this tree)."""
    spec = data_dir / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (nbws)",
                "language": "python",
                "env": {"PYTHONPATH": str(ROOT)},
            }
        )
    )


def start_kernel_only_lab(base: Path, kind: str, token: str, **env: str) -> LabServer:
    """``jupyter lab`` from the ``kind`` server environment, with the ``nbws-kernel`` spec."""
    python = server_env(kind)
    _kernelspec(base / "data")
    # The server must not import this tree's nbws (neither through PYTHONPATH nor through
    # the working directory); only its kernels get it, from their kernelspec.
    # `python -m jupyter lab` runs the first `jupyter-lab` on PATH: the environment's own.
    path = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    server_env_vars = {"PYTHONPATH": "", "PYTHONSAFEPATH": "1", "PATH": path, **env}
    return start_lab(base, token=token, python=str(python), env=server_env_vars)


def write(lab: LabServer, name: str, cells: list[str], **metadata: Any) -> str:
    """A notebook of code cells that runs in the ``nbws-kernel`` kernel."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Python (nbws)",
        "language": "python",
    }
    notebook.metadata.update(metadata)
    nbformat.write(notebook, str(lab.root / name))
    return name
