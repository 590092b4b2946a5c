"""An nbws server inside this process, for kernels that have no Jupyter server with nbws.

A kernel started by VS Code or ``jupyter console``, a plain ``python`` script, a notebook
run by ``nbconvert --execute``, or a kernel whose Jupyter server lacks the extension
(``%pip install nbws`` in a notebook) has nowhere to stream to. :class:`EmbeddedServer`
runs the same server as ``nbws serve`` (:class:`~nbws.server.standalone.StandaloneServer`:
same endpoints, routes, hub and broker) in a daemon thread with its own asyncio loop, so
the caller's loop (ipykernel runs one in the main thread) is never blocked by it.

Security: it listens on 127.0.0.1 only, on a random free port, and requires a random
token (``secrets.token_urlsafe``); the ``Host`` check of ``nbws serve`` applies, and a
browser may connect only from the server's own origin, the origins passed in (the
Jupyter page's, when known), ``vscode-webview://*`` (VS Code's notebook webviews), the
origins of pages whose widget views asked the kernel for the endpoint
(:meth:`EmbeddedServer.allow_origin`) and ``c.Nbws.allow_origins``. Settings are the
``c.Nbws.*`` of ``jupyter_nbws_config.*``, read by the same code as ``nbws serve``.
:func:`embedded_server` is the one per process, started on first use and stopped at
interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import secrets
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Nbws
    from .standalone import StandaloneServer

__all__ = [
    "EDITOR_ORIGINS",
    "EmbeddedServer",
    "EmbeddedServerError",
    "embedded_server",
    "load_config",
    "shared_server",
]

log = logging.getLogger("nbws.server")

EDITOR_ORIGINS = ("vscode-webview://*",)
"""Origins of front ends that show a local kernel's output without a Jupyter page."""

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class EmbeddedServerError(Exception):
    """The embedded server could not start; the message says why in one line."""


def load_config() -> Nbws:
    """The ``Nbws`` settings ``nbws serve`` would use with no command-line options.

    Raises:
        EmbeddedServerError: a broken config file or a bad value in it.
    """
    from ..cli import NbwsServe, UsageError

    app = NbwsServe()
    try:
        app.initialize([])
        return app.nbws_config()
    except UsageError as exc:
        raise EmbeddedServerError(str(exc)) from None


class EmbeddedServer:
    """``nbws serve`` on 127.0.0.1, a random port and token, in a thread of its own.

    Args:
        config: the settings (default: :func:`load_config`).
        origins: page origins allowed besides the server's own and :data:`EDITOR_ORIGINS`.
    """

    def __init__(self, config: Nbws | None = None, *, origins: Sequence[str] = ()) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._token = secrets.token_urlsafe(32)
        self._config = config
        self.origins = tuple(dict.fromkeys([*origins, *EDITOR_ORIGINS]))
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: StandaloneServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<nbws.EmbeddedServer {state} at {self.url}>"

    @property
    def token(self) -> str:
        """The token clients must send (kept out of ``repr``)."""
        return self._token

    @property
    def config(self) -> Nbws | None:
        """The settings in use (None until :meth:`start` has read them)."""
        return self._config

    @property
    def url(self) -> str:
        """The server's HTTP URL (``http://127.0.0.1:PORT/``)."""
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None and self._thread is not None and self._thread.is_alive()

    def allow_origin(self, origin: str) -> None:
        """Let pages of ``origin`` connect from now on (a view on a page the kernel learnt of
        through its widget comm, e.g. Voila's or marimo's; the token is still required)."""
        origin = origin.rstrip("/")
        if origin in self.origins:
            return
        self.origins = (*self.origins, origin)
        if self._config is not None:
            self._config.allow_origins = [*self._config.allow_origins, origin]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the thread and wait until the server listens (a no-op when it does).

        Raises:
            EmbeddedServerError: bad settings, no port to bind, or no answer in ``timeout``.
        """
        with self._lock:
            if self.running:
                return
            if self._thread is not None:
                raise EmbeddedServerError("the embedded nbws server was stopped")
            config = self._config if self._config is not None else load_config()
            config.allow_origins = [*config.allow_origins, *self.origins]
            self._config = config
            self._thread = threading.Thread(
                target=self._run, name="nbws-embedded-server", daemon=True
            )
            self._thread.start()
            if not self._ready.wait(timeout):
                raise EmbeddedServerError(f"the embedded nbws server did not start in {timeout}s")
            if self._error is not None:
                raise EmbeddedServerError(
                    f"the embedded nbws server did not start: {self._error}"
                ) from self._error

    def _run(self) -> None:
        """The thread: build and start the server on a new loop, then run that loop."""
        from .standalone import StandaloneServer

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            assert self._config is not None
            server = StandaloneServer(self._config, host=self.host, port=0, token=self._token)
            self.port = loop.run_until_complete(server.start())
        except BaseException as exc:  # reported by start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._server = server
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close every connection with 1001 (going away) and end the thread."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(server.stop(), loop)
        try:
            future.result(timeout)
        except Exception as exc:  # shutting down anyway
            log.warning("embedded nbws server: stopping failed: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._server = None


_shared: EmbeddedServer | None = None
_shared_pid = 0
_shared_lock = threading.Lock()


def embedded_server(*, origins: Sequence[str] = ()) -> tuple[EmbeddedServer, bool]:
    """This process's embedded server, started on first use (again in a forked child).

    Args:
        origins: page origins to allow, used when this call starts it.

    Returns:
        The server, and whether this call started it.

    Raises:
        EmbeddedServerError: it could not start.
    """
    global _shared, _shared_pid
    with _shared_lock:
        if _shared is not None and _shared_pid == os.getpid() and _shared.running:
            return _shared, False
        server = EmbeddedServer(origins=origins)
        server.start()
        _shared, _shared_pid = server, os.getpid()
        return server, True


def shared_server() -> EmbeddedServer | None:
    """This process's embedded server if it has been started, else None."""
    with _shared_lock:
        if _shared is not None and _shared_pid == os.getpid() and _shared.running:
            return _shared
        return None


@atexit.register
def _stop_at_exit() -> None:
    # Registered when this module is imported, which the client's discovery does before
    # the client's own exit handler is registered: atexit runs handlers last-registered
    # first, so pending publishes get their last chance before the server goes away.
    if _shared is not None and _shared_pid == os.getpid():
        _shared.stop()
