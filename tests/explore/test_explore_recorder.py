"""The recorder against the wire: a pass-through TCP proxy captures every byte between the
explorer and ``nbws serve``, and each record must match the frame parsed from those bytes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

from nbws.explore import connect
from nbws.explore.frames import close_payload, parse_frames


class CaptureProxy:
    """Forwards one TCP connection to ``upstream`` and keeps both byte streams."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.finished = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        pumps = [
            threading.Thread(target=self._pump, args=(client, server, self.to_server)),
            threading.Thread(target=self._pump, args=(server, client, self.to_client)),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join(30)
        client.close()
        server.close()
        self.listener.close()
        self.finished.set()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, capture: bytearray) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)  # pass the half-close on
                return
            capture.extend(data)
            try:
                sink.sendall(data)
            except OSError:
                return


def fields(record) -> tuple:
    return (record.opcode, record.fin, record.rsv, record.masked, record.length, record.preview)


async def test_every_record_matches_the_bytes_on_the_wire(nbws_server):
    proxy = CaptureProxy(("127.0.0.1", nbws_server.port))
    url = f"ws://127.0.0.1:{proxy.port}/nbws/echo"

    def run() -> list:
        conn = connect(url)
        conn.text("hello")
        conn.binary(bytes(range(256)) * 300)  # 76800 bytes: the 64-bit length form
        conn.send_frame(0x1, "frag-1 ", fin=False)
        conn.ping(b"between")
        conn.send_frame(0x0, "frag-2", fin=True)
        conn.text("")
        conn.send_frame(0x1, "long form", length_form=64)
        conn.pong(b"unsolicited")
        for _ in range(5):
            conn.receive()
        conn.wait_for("pong")
        conn.send_frame(0x1, "bad", rsv=(1, 0, 0))  # the server fails the connection (1002)
        conn.wait_closed()
        assert conn.close_code == 1002
        return conn.records

    records = await asyncio.to_thread(run)
    assert await asyncio.to_thread(proxy.finished.wait, 10)

    def frames_after_handshake(stream: bytearray, direction: str) -> list:
        head, _, rest = bytes(stream).partition(b"\r\n\r\n")
        assert head.startswith((b"GET ", b"HTTP/1.1 101"))
        frames, pending = parse_frames(rest, direction)
        assert pending == 0
        return frames

    sent = frames_after_handshake(proxy.to_server, "out")
    received = frames_after_handshake(proxy.to_client, "in")
    assert [fields(r) for r in records if r.direction == "out"] == [fields(f.record) for f in sent]
    assert [fields(r) for r in records if r.direction == "in"] == [
        fields(f.record) for f in received
    ]
    # the sequence itself, as the wire saw it
    assert [f.opcode_name for f in sent] == [
        "TEXT",
        "BINARY",
        "TEXT",
        "PING",
        "CONT",
        "TEXT",
        "TEXT",
        "PONG",
        "TEXT",
        "CLOSE",
    ]
    assert (
        sent[6].length == 9
        and proxy.to_server.count(b"\x81\xff\x00\x00\x00\x00\x00\x00\x00\x09") == 1
    )
    assert sorted(f.opcode_name for f in received) == sorted(
        ["TEXT", "BINARY", "TEXT", "TEXT", "TEXT", "PONG", "CLOSE"]
    )
    assert received[-1].payload[:2] == close_payload(1002)
    assert sent[-1].payload == received[-1].payload  # the close reply echoes the code
    assert all(f.masked for f in sent) and not any(f.masked for f in received)
