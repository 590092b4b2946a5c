"""A real JupyterHub for tests: configurable-http-proxy, the dummy authenticator (one shared
password), ``SimpleLocalProcessSpawner`` (each user's home a temp folder), named servers,
all on 127.0.0.1 with free ports and the Hub's state in a temp dir.

The test drives the Hub as an admin would, through its REST API with a service token
(start a user's server, wait until it is ready), and as a user would, through the login
form in a browser.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tools import chp_binary, free_port, wait_for, wait_http

__all__ = ["Hub", "start_hub"]

# Notebook pages without news or update pop-ups over the widgets being tested.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
NOTIFICATION_SETTINGS = {"checkForUpdates": False, "fetchNews": "false"}

CONFIG = """\
import sys
c = get_config()  # noqa
c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_bind_url = {hub_bind_url!r}
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {pid_file!r}
c.JupyterHub.allow_named_servers = True
c.JupyterHub.cleanup_servers = True
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = {proxy_api!r}
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r}
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {environment!r}
c.JupyterHub.services = [{{"name": "deploy-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{
        "name": "deploy-test",
        "scopes": ["admin:users", "admin:servers", "access:servers"],
        "services": ["deploy-test"],
    }}
]
{extra}
"""


@dataclass
class Hub:
    """A running JupyterHub (its proxy listens on ``port``)."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    password: str
    folder: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def home(self, user: str) -> Path:
        """The user's home: the root of the notebook file browser."""
        return self.folder / "home" / user

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the Hub's REST API (``hub/api/...``) with the service token."""
        return self.request(method, f"hub/api/{path.lstrip('/')}", body)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call ``path`` (below the Hub's root, e.g. ``user/alice/nbws/api/streams``) through
        the Hub's proxy with the service's Hub token, which may access every server.

        Returns:
            (status, the parsed JSON body, or the text if it is not JSON, or None)
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path.lstrip('/')}", data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def spawn(self, user: str, server: str = "") -> None:
        """Create ``user`` if needed and ask the Hub to start their (named) server."""
        status, body = self.api("POST", f"users/{user}")
        assert status in (201, 409), (status, body)
        path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
        status, body = self.api("POST", path)
        assert status in (201, 202), (status, body)

    def wait_ready(self, user: str, server: str = "", timeout: float = 120) -> str:
        """Wait until the server is ready; its URL prefix, e.g. ``/user/alice/second/``."""

        def ready() -> str | None:
            assert self.process.poll() is None, f"the Hub exited:\n{self.log()[-3000:]}"
            status, info = self.api("GET", f"users/{user}")
            assert status == 200, (status, info)
            spawned = info["servers"].get(server)
            if spawned and spawned.get("ready"):
                return str(spawned["url"])
            return None

        return wait_for(ready, timeout, f"{user}'s server {server!r} to be ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM: the Hub stops the user servers (cleanup_servers) and its proxy."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def start_hub(folder: Path, *, args: tuple[str, ...] = (), extra: str = "") -> Hub:
    """Start JupyterHub with its state under ``folder`` and wait until it answers.

    Args:
        args: extra command-line options of every single-user server (e.g. ``--Nbws.*``).
        extra: extra lines of ``jupyterhub_config.py``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config_dir = folder / "jupyter-config"
    _write_json(config_dir / "labconfig" / "page_config.json", PAGE_CONFIG)
    _write_json(
        config_dir
        / "lab"
        / "user-settings"
        / "@jupyterlab"
        / "apputils-extension"
        / "notification.jupyterlab-settings",
        NOTIFICATION_SETTINGS,
    )
    (folder / "home").mkdir(exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    password = secrets.token_urlsafe(12)
    environment = {
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "PYTHONUNBUFFERED": "1",
    }
    if os.environ.get("PYTHONPATH"):
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    config = folder / "jupyterhub_config.py"
    config.write_text(
        CONFIG.format(
            bind_url=f"http://127.0.0.1:{port}",
            hub_bind_url=f"http://127.0.0.1:{free_port()}",
            db_url=f"sqlite:///{folder / 'jupyterhub.sqlite'}",
            cookie_secret=str(folder / "jupyterhub_cookie_secret"),
            pid_file=str(folder / "jupyterhub.pid"),
            chp=chp_binary(),
            proxy_api=f"http://127.0.0.1:{free_port()}",
            proxy_pid=str(folder / "proxy.pid"),
            password=password,
            home=str(folder / "home" / "{username}"),
            args=["--allow-root", "--LabApp.expose_app_in_browser=True", *args],
            environment=environment,
            token=token,
            extra=extra,
        )
    )
    log_path = folder / "jupyterhub.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    hub = Hub(process, port, token, password, folder, log_path)
    try:
        wait_http(f"{hub.url}hub/api/", 90, alive=lambda: process.poll() is None)
    except AssertionError:
        hub.stop()
        raise AssertionError(f"JupyterHub did not start:\n{hub.log()[-3000:]}") from None
    return hub
