"""Baseline servers, each runnable as ``python -m nbws.bench.baselines KIND PORT``.

- ``tornado``: tornado's ``WebSocketHandler`` at ``/echo`` (echo) and ``/broadcast`` (each
  received message is sent with ``write_message`` to every connected client, the usual
  broadcast loop);
- ``tcp``: a raw TCP socket that echoes bytes (the physical limit of loopback copying).
"""

from __future__ import annotations

import asyncio
import socket
import sys

__all__ = ["serve_tcp_echo", "serve_tornado", "serve_websockets"]


def serve_tornado(port: int) -> None:
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    clients: set[WebSocketHandler] = set()

    class Echo(WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            self.write_message(message, binary=isinstance(message, bytes))

    class Broadcast(WebSocketHandler):
        def open(self) -> None:
            clients.add(self)

        def on_close(self) -> None:
            clients.discard(self)

        def on_message(self, message: str | bytes) -> None:
            for client in list(clients):
                if client is not self:
                    client.write_message(message)

    async def main() -> None:
        app = Application(
            [("/echo", Echo), ("/broadcast", Broadcast)], websocket_max_message_size=1 << 31
        )
        app.listen(port, "127.0.0.1")
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_tcp_echo(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_websockets(port: int) -> None:
    """The ``websockets`` library's own asyncio server, echoing."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, max_size=None, compression=None):
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    {"tornado": serve_tornado, "tcp": serve_tcp_echo, "websockets": serve_websockets}[kind](port)
