"""``labextension/build.py`` says what it is doing: a build from a checkout takes minutes
(``npm ci``, ``npm run build:prod``), so each step is announced, long steps print a
heartbeat, and each ends with its elapsed time; a restore from the cache says so too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

LABEXTENSION = Path(__file__).resolve().parents[2] / "labextension"


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nbws_build_progress", LABEXTENSION / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_restore_from_the_cache_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = build_script()
    key = build.input_key()
    entry = tmp_path / "cache" / key
    (entry / "labextension" / "static").mkdir(parents=True)
    (entry / "labextension" / "package.json").write_text("{}")
    (entry / "labextension" / "static" / "style.js").write_text("")
    (entry / "views.js").write_text("")
    output = tmp_path / "out" / "labextension"
    output.parent.mkdir()
    views = tmp_path / "out" / "views.js"
    result = build.ensure_built(cache=tmp_path / "cache", output=output, esm_output=views)
    shown = capsys.readouterr().out
    assert f"restoring the labextension from the cache ({key})" in shown
    assert result.startswith(f"labextension restored from cache {key} in ")
    assert (output / "static" / "style.js").is_file()


def test_a_cache_miss_says_it_builds_with_npm_and_how_long_that_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build = build_script()
    built = tmp_path / "built"  # where npm would write (nbws/labextension)
    built_views = tmp_path / "built-views.js"  # and nbws/widgets/static/views.js

    def fake_build(cache: Path | None = None, root: Path | None = None) -> None:
        (built / "static").mkdir(parents=True)
        (built / "package.json").write_text("{}")
        (built / "static" / "style.js").write_text("")
        built_views.write_text("export function render() {}")

    monkeypatch.setattr(build, "OUTPUT", built)
    monkeypatch.setattr(build, "ESM_OUTPUT", built_views)
    monkeypatch.setattr(build, "build", fake_build)
    output = tmp_path / "out"
    views = tmp_path / "views.js"
    result = build.ensure_built(cache=tmp_path / "cache", output=output, esm_output=views)
    shown = capsys.readouterr().out
    assert "no cached build" in shown and "npm ci" in shown and "npm run build:prod" in shown
    assert "minutes" in shown
    assert result.startswith("labextension built and cached as ")
    assert (output / "static" / "style.js").is_file()
    assert views.read_text() == "export function render() {}"


def test_a_long_step_streams_its_output_with_a_heartbeat_and_its_elapsed_time(
    capfd: pytest.CaptureFixture[str],
) -> None:
    build = build_script()
    command = [sys.executable, "-c", "import time; print('step output', flush=True); time.sleep(2)"]
    build._run(command, heartbeat=0.05)
    shown = capfd.readouterr().out
    lines = shown.splitlines()
    assert lines[0].startswith("+ ") and "step output" in shown
    assert any(line.startswith("... still running") for line in lines), shown
    assert lines[-1].startswith("done in ") and lines[-1].endswith(" s")


def test_a_failing_step_says_what_failed(capfd: pytest.CaptureFixture[str]) -> None:
    build = build_script()
    with pytest.raises(SystemExit, match="exit code 3"):
        build._run([sys.executable, "-c", "raise SystemExit(3)"], heartbeat=10)
