"""The jupyter-server extension: nbws inside Jupyter, enabled on install."""

from __future__ import annotations

from typing import Any, NoReturn

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import TraitError

from ..config import Nbws, unknown_options
from .context import SETTINGS_KEY, NbwsContext, create_context
from .jupyter import jupyter_handlers

__all__ = ["NbwsApp"]


class NbwsApp(ExtensionApp):
    """Hosts nbws's streams, echo playground and REST API under Jupyter's ``base_url``.

    Settings are ``c.Nbws.*`` (the same object ``nbws serve`` reads). A bad setting stops
    the server at start-up with one line naming the option (exit status 2): a server
    running without the streams its notebooks expect would fail later and less clearly.
    """

    name = "nbws"
    description = "Real-time WebSocket streams for Jupyter"
    load_other_extensions = True
    classes = [Nbws]

    def initialize_settings(self) -> None:
        unknown = unknown_options(self.config)
        if unknown:
            self.fail(f"c.Nbws.{unknown[0]}: no such option (see docs/configuration.md)")
        try:
            config = Nbws(parent=self)
            self.context: NbwsContext = create_context(config)
        except TraitError as exc:
            self.fail(str(exc))
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            self.fail('the Redis backend needs the redis package: pip install "nbws[redis]"')
        self.settings.update({SETTINGS_KEY: self.context})
        base_url = self.serverapp.base_url if self.serverapp is not None else "/"
        self.log.info(
            "nbws: streams at %s (backend %s)", url_path_join(base_url, "nbws/ws"), config.backend
        )

    def fail(self, message: str) -> NoReturn:
        """Log ``message`` as one line and stop the server (SystemExit is not one of the
        exceptions jupyter-server's extension loader catches and logs with a traceback)."""
        self.log.critical("nbws: %s", message)
        raise SystemExit(2)

    def initialize_handlers(self) -> None:
        for path, handler, kwargs in jupyter_handlers(self.name):
            self.handlers.append((path, handler, kwargs))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await self.context.start()

    async def stop_extension(self) -> None:
        """Close every nbws connection with 1001 and release the broker."""
        await self.context.shutdown()
