"""The ``nbws`` command: ``nbws serve`` (standalone server) and ``nbws bench``.

``nbws serve`` is a traitlets :class:`NbwsServe` application, like the Jupyter extension it
reads ``jupyter_nbws_config.py`` / ``.json`` from Jupyter's config path and accepts
``--Nbws.<option>=value``; the short flags (``--port``, ``--token``, ``--set``...) are
aliases of the same traits. A user's mistake ends it with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from jupyter_core.application import JupyterApp
from traitlets import Bool, List, TraitError, Unicode, default
from traitlets.config import Application, Config
from traitlets.config.loader import ArgumentError, KVArgParseConfigLoader, _KVArgParser

from ._version import __version__
from .config import Count, Nbws, unknown_options

__all__ = ["NbwsServe", "UsageError", "eval_literal", "last_wins", "main", "serve"]

USAGE = """\
usage: nbws {serve,bench} ...

Real-time WebSocket streams for Jupyter.

commands:
  serve   run the nbws endpoints in a standalone server (nbws serve --help)
  bench   measure nbws against baselines side by side (nbws bench --help)
"""

REDIS_MISSING = 'the Redis backend needs the redis package: pip install "nbws[redis]"'


class UsageError(Exception):
    """A mistake on the command line or in a config file: printed as one line, exit 2."""


class _Parser(_KVArgParser):
    """traitlets' argparse parser, raising instead of printing its usage and exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see nbws serve --help)")


class _Loader(KVArgParseConfigLoader):
    parser_class = _Parser


class NbwsServe(JupyterApp):
    """``nbws serve``: the nbws endpoints in a standalone tornado server with its own token."""

    name = "nbws"
    description = (
        "Run the nbws endpoints (streams, echo, tap, REST) in a standalone server. Settings "
        "are c.Nbws.* (the same object the Jupyter extension reads), from "
        "jupyter_nbws_config.py/.json on Jupyter's config path or --Nbws.<option>=value."
    )
    examples = """
nbws serve --no-token
nbws serve --port 9000 --token secret --Nbws.max_message_size=1048576
nbws serve --redis redis://127.0.0.1:6379/0 --set buffer_policy=conflate
"""
    version = __version__
    classes = [Nbws]

    host = Unicode("127.0.0.1", help="Interface to listen on.").tag(config=True)
    port = Count(8765, minimum=0, zero="any free port", help="Port to listen on.").tag(config=True)
    token = Unicode(
        "", help="Token clients must send (default: a random one, printed at start)."
    ).tag(config=True)
    no_token = Bool(False, help="Accept clients without a token.").tag(config=True)
    redis = Unicode(
        "", help="Use the Redis broker at this URL (sets c.Nbws.backend and c.Nbws.redis_url)."
    ).tag(config=True)
    set_options = List(
        Unicode(),
        help="Nbws options as NAME=VALUE, e.g. --set max_message_size=1048576 (the same as "
        "--Nbws.max_message_size=1048576); repeatable.",
    ).tag(config=True)
    verbose = Bool(False, help="Log connections.").tag(config=True)
    base_url = Unicode(
        "/", help="Path prefix of every route (e.g. /nbws-prefix/ behind a reverse proxy)."
    ).tag(config=True)
    certfile = Unicode("", help="TLS certificate (PEM) to serve https:// and wss://.").tag(
        config=True
    )
    keyfile = Unicode("", help="TLS private key (PEM) for --certfile.").tag(config=True)
    trust_proxy = Bool(
        False,
        help="Take the client address and scheme from X-Forwarded-For/-Proto (X-Real-Ip, "
        "X-Scheme): only behind a reverse proxy that sets them, or clients can forge them.",
    ).tag(config=True)
    allow_unauthenticated_remote = Bool(
        False,
        help="Allow --no-token on an address other than loopback: anyone who can reach it "
        "may publish and read every stream.",
    ).tag(config=True)

    aliases = {
        "host": "NbwsServe.host",
        "port": "NbwsServe.port",
        "token": "NbwsServe.token",
        "redis": "NbwsServe.redis",
        "set": "NbwsServe.set_options",
        "allow-origin": "Nbws.allow_origins",
        "allow-host": "Nbws.allow_hosts",
        "config": "NbwsServe.config_file",
        "base-url": "NbwsServe.base_url",
        "certfile": "NbwsServe.certfile",
        "keyfile": "NbwsServe.keyfile",
    }
    flags = {
        "no-token": ({"NbwsServe": {"no_token": True}}, "Accept clients without a token."),
        "v": ({"NbwsServe": {"verbose": True}}, "Log connections."),
        "verbose": ({"NbwsServe": {"verbose": True}}, "Log connections."),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log everything."),
        "trust-proxy": (
            {"NbwsServe": {"trust_proxy": True}},
            "Trust X-Forwarded-* headers (only behind a reverse proxy that sets them).",
        ),
        "allow-unauthenticated-remote": (
            {"NbwsServe": {"allow_unauthenticated_remote": True}},
            "Allow --no-token on a non-loopback address (anyone who reaches it may use it).",
        ),
        "generate-config": (
            {"JupyterApp": {"generate_config": True}},
            "Write a default jupyter_nbws_config.py into the Jupyter config dir.",
        ),
    }

    @default("config_file_name")
    def _config_file_name_default(self) -> str:
        return "jupyter_nbws_config"  # the file the Jupyter extension (NbwsApp) reads too

    def _create_loader(
        self, argv: Any, aliases: Any, flags: Any, classes: Any
    ) -> KVArgParseConfigLoader:
        return _Loader(argv, aliases, flags, classes=classes, log=self.log)

    def initialize(self, argv: Any = None) -> None:
        """Read the command line, then the config files (the command line wins).

        Raises:
            UsageError: a bad option or value, or a broken config file.
        """
        try:
            # Application's own versions log a traceback-free "Bad config" and exit 1;
            # nbws says what is wrong in its own words and exits 2.
            Application.parse_command_line.__wrapped__(self, argv)  # type: ignore[attr-defined]
            cl_config = deepcopy(self.config)
            self._read_config_files()
            self.update_config(cl_config)
        except (TraitError, ArgumentError) as exc:
            raise UsageError(str(exc)) from None

    def _read_config_files(self) -> None:
        self.raise_config_file_errors = True  # traitlets would log a traceback and go on
        if self.config_file and not os.path.isfile(self.config_file):
            raise UsageError(f"no config file {self.config_file} (--config)")
        try:
            self.load_config_file(suppress_errors=False)
        except TraitError:
            raise
        except Exception as exc:  # a syntax or runtime error inside a user's config file
            name = self.config_file or f"{self.config_file_name}.py"
            raise UsageError(f"error in config file {name}: {exc}") from None

    def nbws_config(self) -> Nbws:
        """The one ``Nbws`` object, with ``--set`` and ``--redis`` applied.

        Raises:
            UsageError: a malformed ``--set``, an unknown option or a bad value.
        """
        cfg = Config()
        known = Nbws.class_trait_names(config=True)
        for item in self.set_options:
            key, eq, value = item.partition("=")
            if not key or not eq:
                raise UsageError(f"--set takes NAME=VALUE, not {item!r}")
            if key not in known:
                raise UsageError(f"--set {key}: no such option (see nbws serve --help-all)")
            cfg.Nbws[key] = eval_literal(value)
        unknown = unknown_options(self.config)
        if unknown:
            raise UsageError(f"c.Nbws.{unknown[0]}: no such option (see nbws serve --help-all)")
        if self.redis:
            cfg.Nbws.backend = "redis"
            cfg.Nbws.redis_url = self.redis
        self.update_config(cfg)
        try:
            return Nbws(parent=self)
        except TraitError as exc:
            raise UsageError(str(exc)) from None

    def start(self) -> None:
        """Serve until SIGINT/SIGTERM.

        Raises:
            UsageError: conflicting flags, bad settings, a missing optional package, or a
                port that cannot be bound.
        """
        if self.generate_config:
            self.write_default_config()
            return
        if self.extra_args:
            raise UsageError(f"unexpected argument {self.extra_args[0]!r} (see nbws serve --help)")
        if self.token and self.no_token:
            raise UsageError("--token and --no-token exclude each other")
        if self.no_token and not is_loopback(self.host) and not self.allow_unauthenticated_remote:
            raise UsageError(
                f"--no-token on {self.host} would let anyone on the network use this server; "
                "bind 127.0.0.1, give a --token, or add --allow-unauthenticated-remote"
            )
        if bool(self.certfile) != bool(self.keyfile):
            raise UsageError("--certfile and --keyfile go together")
        config = self.nbws_config()
        token: str | None = None if self.no_token else self.token or new_token()
        logging.basicConfig(
            level=logging.INFO if self.verbose else logging.WARNING,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        from .server.standalone import CannotListen, CannotServeTLS, StandaloneServer

        try:
            server = StandaloneServer(
                config,
                host=self.host,
                port=self.port,
                token=token,
                token_generated=not self.token,
                base_url=self.base_url,
                certfile=self.certfile or None,
                keyfile=self.keyfile or None,
                trust_proxy=self.trust_proxy,
            )
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] == "redis":
                raise UsageError(REDIS_MISSING) from None
            raise
        except CannotServeTLS as exc:
            raise UsageError(str(exc)) from None
        try:
            with contextlib.suppress(KeyboardInterrupt):  # the signal handler normally does
                asyncio.run(server.run())
        except CannotListen as exc:
            raise UsageError(str(exc)) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a --host value) only listens on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A random token for ``nbws serve`` when none is given."""
    from .server.standalone import new_token as make

    return make()


def eval_literal(value: str) -> object:
    """Parse a ``--set`` value as a Python literal, falling back to a plain string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


SINGLE_VALUED = ("host", "port", "token", "redis")


def last_wins(argv: Sequence[str], names: Sequence[str] = SINGLE_VALUED) -> list[str]:
    """Drop all but the last ``--name VALUE`` / ``--name=VALUE`` of each single-valued option.

    A repeated option means "this one instead" (as with most command-line tools, e.g. a
    wrapper script adding ``--port`` to a command that already has one); traitlets would
    refuse it as two values for one trait.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        for name in names:
            if arg == f"--{name}" and i + 1 < len(argv):
                spans.setdefault(name, []).append((i, i + 2))
                i += 1
                break
            if arg.startswith(f"--{name}="):
                spans.setdefault(name, []).append((i, i + 1))
                break
        i += 1
    dropped = {k for found in spans.values() for a, b in found[:-1] for k in range(a, b)}
    return [arg for k, arg in enumerate(argv) if k not in dropped]


def serve(argv: Sequence[str]) -> int:
    """Run ``nbws serve ARGV``; the exit status."""
    app = NbwsServe()
    try:
        app.initialize(last_wins(argv))
        app.start()
    except UsageError as exc:
        print(f"nbws: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "bench":  # its own parser: nbws bench [--quick] [--only NAME] ...
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if command == "serve":
        return serve(argv[1:])
    if command in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if command in ("-V", "--version"):
        print(f"nbws {__version__}")
        return 0
    problem = f"unknown command {command!r}" if command else "a command is required"
    print(f"{USAGE}\nnbws: {problem}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
