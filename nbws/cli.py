"""The ``nbws`` command: ``nbws serve`` (standalone server) and ``nbws bench``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from traitlets import TraitError
    from traitlets.config import Config

    from .config import Nbws
    from .server.standalone import StandaloneServer, new_token

    cfg = Config()
    for item in args.set or []:
        key, _, value = item.partition("=")
        if not key or not _:
            print(f"nbws serve: --set takes NAME=VALUE, not {item!r}", file=sys.stderr)
            return 2
        if key not in Nbws.class_trait_names(config=True):
            print(f"nbws serve: --set {key}: no such option", file=sys.stderr)
            return 2
        cfg.Nbws[key] = eval_literal(value)
    if args.allow_origin:
        cfg.Nbws.allow_origins = list(args.allow_origin)
    if args.redis:
        cfg.Nbws.backend = "redis"
        cfg.Nbws.redis_url = args.redis
    try:
        config = Nbws(config=cfg)
    except (TraitError, ValueError) as exc:
        print(f"nbws serve: --set: {exc}", file=sys.stderr)
        return 2
    token: str | None = None if args.no_token else args.token or new_token()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    server = StandaloneServer(config, host=args.host, port=args.port, token=token)
    with contextlib.suppress(KeyboardInterrupt):  # the signal handler normally catches it
        asyncio.run(server.run())
    return 0


def eval_literal(value: str) -> object:
    """Parse a ``--set`` value as a Python literal, falling back to a plain string."""
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbws", description="Real-time WebSocket streams for Jupyter."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the nbws endpoints in a standalone server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    group = serve.add_mutually_exclusive_group()
    group.add_argument("--token", help="token clients must send (default: a random one)")
    group.add_argument("--no-token", action="store_true", help="accept clients without a token")
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="an Origin allowed besides the server's own ('*' for any)",
    )
    serve.add_argument("--redis", metavar="URL", help="use the Redis broker at URL")
    serve.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="set an Nbws option, e.g. --set max_message_size=1048576",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log connections")
    serve.set_defaults(func=_serve)
    bench = sub.add_parser(
        "bench", help="measure nbws against baselines side by side", add_help=False
    )
    bench.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser: nbws bench [--quick] [--only NAME] ...
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
