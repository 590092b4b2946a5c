"""One version: labextension/package.json's, read by hatch, ``nbws.__version__`` and the
widgets' ``MODULE_VERSION``."""

from __future__ import annotations

import json
import pathlib
import re
from importlib.metadata import PackageNotFoundError, version

import pytest

import nbws
from nbws._version import read_version

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE_JSON = ROOT / "labextension" / "package.json"


def package_version() -> str:
    return str(json.loads(PACKAGE_JSON.read_text())["version"])


def test_python_version_is_the_package_json_one() -> None:
    assert nbws.__version__ == package_version()


def test_version_ts_matches_package_json() -> None:
    version_ts = (ROOT / "labextension" / "src" / "version.ts").read_text()
    assert f"export const MODULE_VERSION = '{package_version()}';" in version_ts


def test_hatch_reads_the_version_from_package_json() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["version"]
    assert config["path"] == "labextension/package.json"
    match = re.search(config["pattern"], PACKAGE_JSON.read_text())
    assert match is not None and match.group("version") == package_version()


def test_another_package_json_is_not_taken_for_ours(tmp_path: pathlib.Path) -> None:
    other = tmp_path / "package.json"
    other.write_text(json.dumps({"name": "something-else", "version": "9.9.9"}))
    try:
        expected = version("nbws")
    except PackageNotFoundError:
        expected = "0+unknown"
    assert read_version(other) == expected
    assert read_version(tmp_path / "missing.json") == expected
