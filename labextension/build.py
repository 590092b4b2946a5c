"""Build the nbws labextension into ``nbws/labextension`` and the widgets' views into
``nbws/widgets/static/views.js``, or restore both from a cache.

The build (``npm ci`` + ``npm run build:prod``, which ends with ``build:esm``) only depends
on the files hashed by :func:`input_key`: package.json, package-lock.json, tsconfig.json,
install.json, src/ (without the unit tests) and style/. The output for each key is kept
under ``~/.cache/nbws/labextension/<key>`` (``labextension/`` and ``views.js``;
``$NBWS_LABEXTENSION_CACHE`` overrides the folder), so unchanged sources are copied in well
under a second instead of rebuilt. The wheel's
build hook skips when the output exists (``skip-if-exists`` in pyproject.toml), which is
why CI runs this first.

``--node-modules`` also makes ``labextension/node_modules`` match package-lock.json (the
TypeScript unit tests need it): restored from ``<cache>/node_modules-<lock hash>.tar``, or
installed with ``npm ci`` and then saved there.

Each step says what it does: the restore from the cache, or ``npm ci`` and ``npm run
build:prod`` (about two minutes on a first build) with npm's own output, a heartbeat line
while a step is quiet, and its elapsed time.

Usage: ``python labextension/build.py [--node-modules] [--force] [--key] [--cache-dir DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = [
    "build",
    "cache_root",
    "ensure_built",
    "ensure_node_modules",
    "input_key",
    "restore",
    "store",
]

HERE = Path(__file__).resolve().parent
OUTPUT = HERE.parent / "nbws" / "labextension"
ESM_OUTPUT = HERE.parent / "nbws" / "widgets" / "static" / "views.js"
INPUT_FILES = ("package.json", "package-lock.json", "tsconfig.json", "install.json")
INPUT_DIRS = ("src", "style")
EXCLUDED_PARTS = frozenset({"__tests__", "node_modules", ".ipynb_checkpoints"})
KEEP_ENTRIES = 5
KEEP_NODE_MODULES = 2
KEY_FORMAT = b"nbws-labextension-2\n"  # 2: entries hold labextension/ and views.js
LOCK_STAMP = ".nbws-lock-sha256"
HEARTBEAT_SECONDS = 15.0


def input_key(root: Path = HERE) -> str:
    """A hash of everything the build output depends on (paths and contents)."""
    digest = hashlib.sha256(KEY_FORMAT)
    paths = [root / name for name in INPUT_FILES if (root / name).is_file()]
    for folder in INPUT_DIRS:
        base = root / folder
        if base.is_dir():
            paths += [
                p
                for p in base.rglob("*")
                if p.is_file() and not EXCLUDED_PARTS.intersection(p.relative_to(root).parts)
            ]
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def cache_root() -> Path:
    """Where built outputs are kept, one folder per input key."""
    configured = os.environ.get("NBWS_LABEXTENSION_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nbws" / "labextension"


def _copy_tree(source: Path, target: Path) -> None:
    """Copy files with fresh modification times (newer than the sources, so the editable
    build hook's staleness check sees an up-to-date output)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)


def restore(key: str, cache: Path, output: Path = OUTPUT, esm_output: Path = ESM_OUTPUT) -> bool:
    """Replace ``output`` and ``esm_output`` with the cached build for ``key``; False if
    there is none."""
    entry = cache / key
    built = entry / "labextension"
    if not all(
        p.is_file()
        for p in (built / "package.json", built / "static" / "style.js", entry / "views.js")
    ):
        return False
    staging = output.with_name(f"{output.name}.restore-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    _copy_tree(built, staging)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(staging, output)
    esm_output.parent.mkdir(parents=True, exist_ok=True)
    esm_staging = esm_output.with_name(f".{esm_output.name}.restore-{os.getpid()}")
    shutil.copyfile(entry / "views.js", esm_staging)
    os.replace(esm_staging, esm_output)
    os.utime(entry)  # most recently used: kept by the pruning below
    return True


def store(key: str, cache: Path, output: Path = OUTPUT, esm_output: Path = ESM_OUTPUT) -> Path:
    """Save ``output`` and ``esm_output`` as the cached build for ``key`` (atomically) and
    prune old entries."""
    cache.mkdir(parents=True, exist_ok=True)
    entry = cache / key
    staging = cache / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    _copy_tree(output, staging / "labextension")
    shutil.copyfile(esm_output, staging / "views.js")
    try:
        os.replace(staging, entry)
    except OSError:  # another build stored the same key first
        shutil.rmtree(staging, ignore_errors=True)
    entries = sorted(
        (p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP_ENTRIES:]:
        shutil.rmtree(old, ignore_errors=True)
    return entry


def _say(text: str) -> None:
    print(text, flush=True)


def _run(command: list[str], *, heartbeat: float = HEARTBEAT_SECONDS) -> None:
    """Run one step in ``labextension/``: its output streams through, a heartbeat line
    shows every ``heartbeat`` seconds that it is still running, then its elapsed time."""
    _say("+ " + " ".join(Path(command[0]).name if i == 0 else a for i, a in enumerate(command)))
    started = time.perf_counter()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat):
            _say(f"... still running ({time.perf_counter() - started:.0f} s)")

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    try:
        code = subprocess.run(command, cwd=HERE, check=False).returncode
    finally:
        done.set()
        beating.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    _say(f"done in {time.perf_counter() - started:.1f} s")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to build the labextension (Node.js 18 or newer)")
    return npm


def _lock_hash(root: Path) -> str:
    return hashlib.sha256((root / "package-lock.json").read_bytes()).hexdigest()[:32]


def ensure_node_modules(cache: Path | None = None, root: Path = HERE) -> str:
    """Make ``node_modules`` match package-lock.json: as is, from the cache, or ``npm ci``."""
    cache = cache or cache_root()
    lock = _lock_hash(root)
    modules = root / "node_modules"
    stamp = modules / LOCK_STAMP
    if stamp.is_file() and stamp.read_text().strip() == lock:
        return "node_modules up to date"
    archive = cache / f"node_modules-{lock}.tar"
    started = time.perf_counter()
    if archive.is_file():
        _say(f"restoring node_modules from {archive}")
        shutil.rmtree(modules, ignore_errors=True)
        subprocess.run(["tar", "-xf", str(archive), "-C", str(root)], check=True)
        os.utime(archive)
        if stamp.is_file() and stamp.read_text().strip() == lock:
            return f"node_modules restored from cache in {time.perf_counter() - started:.1f} s"
    _run([_npm(), "ci", "--no-audit", "--no-fund"])
    stamp.write_text(lock + "\n")
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".node_modules-{lock}.tmp-{os.getpid()}"
    subprocess.run(["tar", "-cf", str(staging), "-C", str(root), "node_modules"], check=True)
    os.replace(staging, archive)
    archives = sorted(
        cache.glob("node_modules-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in archives[KEEP_NODE_MODULES:]:
        old.unlink(missing_ok=True)
    return f"node_modules installed with npm ci in {time.perf_counter() - started:.1f} s"


def build(cache: Path | None = None, root: Path = HERE) -> None:
    """``npm ci`` (unless node_modules matches the lock file) + ``npm run build:prod``."""
    if shutil.which("jupyter-builder") is None:
        raise SystemExit(
            "jupyter-builder is needed to build the labextension: "
            "pip install 'jupyter-builder>=1.2.0,<2'"
        )
    print(ensure_node_modules(cache, root), flush=True)
    _run([_npm(), "run", "build:prod"])


def ensure_built(
    *,
    force: bool = False,
    cache: Path | None = None,
    output: Path = OUTPUT,
    esm_output: Path = ESM_OUTPUT,
) -> str:
    """Restore or build ``output`` (``nbws/labextension``) and ``esm_output`` (the
    widgets' ``views.js``), saying which as it starts; returns what happened, for the log."""
    cache = cache or cache_root()
    key = input_key()
    started = time.perf_counter()
    if not force:
        _say(f"restoring the labextension from the cache ({key}) in {cache}")
        if restore(key, cache, output, esm_output):
            elapsed_ms = (time.perf_counter() - started) * 1000
            return f"labextension restored from cache {key} in {elapsed_ms:.0f} ms"
        _say("no cached build for these sources")
    _say(
        "building the labextension with npm (npm ci, then npm run build:prod): "
        "a first build takes a few minutes"
    )
    build(cache)  # npm always writes nbws/labextension (package.json's outputDir)
    for product in (OUTPUT / "static" / "style.js", ESM_OUTPUT):
        if not product.is_file():
            raise SystemExit(f"the build did not produce {product}")
    store(key, cache, OUTPUT, ESM_OUTPUT)
    if output != OUTPUT or esm_output != ESM_OUTPUT:
        restore(key, cache, output, esm_output)
    return f"labextension built and cached as {key} in {time.perf_counter() - started:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if cached")
    parser.add_argument(
        "--node-modules",
        action="store_true",
        help="also make node_modules match package-lock.json (for npm test)",
    )
    parser.add_argument("--key", action="store_true", help="print the input key and exit")
    parser.add_argument(
        "--cache-dir", type=Path, help="cache folder (default: %(default)s)", default=None
    )
    args = parser.parse_args(argv)
    if args.key:
        print(input_key())
        return 0
    print(ensure_built(force=args.force, cache=args.cache_dir), flush=True)
    if args.node_modules:
        print(ensure_node_modules(args.cache_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
