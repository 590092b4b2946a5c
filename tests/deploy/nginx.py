"""Debian's nginx, terminating TLS, configured with the snippet ``docs/deploying.md`` gives
admins.

The snippet is read from the doc (the fenced ``nginx`` block after the marker
``<!-- nginx-snippet -->``) and run as written; only the lines that name this machine
(listen address, certificate and log files, upstream) and, where a test asks, the proxy timeouts
are replaced, each of which must appear exactly once, so a doc that drifts fails here.
nginx runs in the foreground (``daemon off``) with its own prefix in a temp dir.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .tls import Certificates
from .tools import free_port, nginx_binary, wait_for

__all__ = ["DOC", "Nginx", "doc_snippet", "start_nginx"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploying.md"
MARKER = "<!-- nginx-snippet -->"

# What the doc's snippet says for the machine-specific lines, and what the test uses.
LISTEN = "listen 443 ssl;"
CERT = "ssl_certificate     /etc/ssl/certs/hub.example.org.pem;"
KEY = "ssl_certificate_key /etc/ssl/private/hub.example.org.key;"
UPSTREAM = "proxy_pass http://127.0.0.1:8000;"
ACCESS_LOG = "access_log /var/log/nginx/hub.access.log noquery;"
READ_TIMEOUT = re.compile(r"proxy_read_timeout\s+\S+;")
SEND_TIMEOUT = re.compile(r"proxy_send_timeout\s+\S+;")


def doc_snippet() -> str:
    """The nginx configuration block of docs/deploying.md."""
    text = DOC.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"{DOC} must contain {MARKER!r} exactly once"
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```nginx\n(.*?)\n```", after, re.S)
    assert match, f"no ```nginx block right after {MARKER!r} in {DOC}"
    return match.group(1)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the snippet must contain {old!r} exactly once"
    return text.replace(old, new)


def _replace_pattern(text: str, pattern: re.Pattern[str], new: str) -> str:
    assert len(pattern.findall(text)) == 1, f"the snippet must match {pattern.pattern!r} once"
    return pattern.sub(new, text)


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    prefix: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def access_log(self) -> str:
        """The site's access log (the doc's ``noquery`` format)."""
        return (self.prefix / "access.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_nginx(
    prefix: Path,
    certificates: Certificates,
    upstream_port: int,
    *,
    timeout: str | None = None,
) -> Nginx:
    """Start nginx with the doc's snippet in front of ``127.0.0.1:upstream_port``.

    Args:
        timeout: replaces the snippet's ``proxy_read_timeout``/``proxy_send_timeout``
            (e.g. ``"2s"``: a proxy that cuts quiet connections quickly).
    """
    binary = nginx_binary()
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = doc_snippet()
    site = _replace_once(site, LISTEN, f"listen 127.0.0.1:{port} ssl;")
    site = _replace_once(site, CERT, f"ssl_certificate {certificates.cert};")
    site = _replace_once(site, KEY, f"ssl_certificate_key {certificates.key};")
    site = _replace_once(site, UPSTREAM, f"proxy_pass http://127.0.0.1:{upstream_port};")
    site = _replace_once(site, ACCESS_LOG, f"access_log {prefix / 'access.log'} noquery;")
    if timeout is not None:
        site = _replace_pattern(site, READ_TIMEOUT, f"proxy_read_timeout {timeout};")
        site = _replace_pattern(site, SEND_TIMEOUT, f"proxy_send_timeout {timeout};")
    (prefix / "site.conf").write_text(site)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(exist_ok=True)
    # As root, nginx's workers would switch to "nobody", who cannot read this temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / "http-access.log"};
    client_body_temp_path {prefix / "client_body"};
    proxy_temp_path {prefix / "proxy"};
    fastcgi_temp_path {prefix / "fastcgi"};
    uwsgi_temp_path {prefix / "uwsgi"};
    scgi_temp_path {prefix / "scgi"};
    include {prefix / "site.conf"};
}}
"""
    )
    conf = prefix / "nginx.conf"
    check = subprocess.run(
        [binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, f"nginx refuses the documented snippet:\n{check.stderr}"
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    server = Nginx(process, port, prefix)

    def listening() -> bool | None:
        assert process.poll() is None, f"nginx exited:\n{server.log()[-2000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return None

    wait_for(listening, 20, "nginx to listen")
    return server
