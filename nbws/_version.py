"""The version of nbws: the one in ``labextension/package.json``.

That file is the single source. hatch reads it into the package metadata
(``[tool.hatch.version]`` in pyproject.toml); a source checkout or editable install reads
it here directly, so a bumped package.json needs no reinstall; an installed wheel (which
has no labextension/ source folder) reports its metadata.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

__all__ = ["__version__", "read_version"]

PACKAGE_JSON = Path(__file__).resolve().parent.parent / "labextension" / "package.json"


def read_version(package_json: Path = PACKAGE_JSON) -> str:
    """nbws's version from ``package_json`` if it is nbws's own, else the installed one."""
    try:
        data = json.loads(package_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("name") == "nbws" and "version" in data:
        return str(data["version"])
    try:
        return installed_version("nbws")
    except PackageNotFoundError:  # neither a checkout nor installed: say so, do not guess
        return "0+unknown"


__version__ = read_version()
