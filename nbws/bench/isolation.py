"""Isolation: a well-behaved client's round-trip latency while another connection misbehaves.

For each case a fresh ``nbws serve`` (defaults, its own process) first serves the victim
alone ("quiet"), then while an attacker in a third process does one of:

- **ping flood**: sends 125-byte pings as fast as it can and never reads the pongs;
- **unread info**: floods nbws.v1 ``info`` requests and never reads the replies;
- **stuck conflate subscriber**: subscribes with ``policy: conflate`` and never reads,
  while the attacker's publisher sends keyed messages at ~10k msg/s;
- **stuck block subscriber**: the same with ``policy: block``;
- **load, nobody stuck**: the same 10k msg/s with a subscriber that reads everything: the
  work the two stuck cases add by their traffic alone, so what the stuck peer itself
  costs the victim is the difference between its row and this one;
- **control**: no attacker at all, a second quiet window measured like the attacked ones.
  Its ratio is what the machine alone does to the same victim between two windows: the
  noise floor of the other rows on a shared, loaded machine.

The victim measures one round trip at a time, every few milliseconds: an echo of a short
text (ping flood, unread info) or an nbws.v1 publish → its own ``message`` on a stream of
its own (the stuck subscribers). Each row is the attacked p99 against the quiet p99 of the
same victim on the same server (ratio 1.0: no change; target: within 2x), with p50s, the
server's RSS growth during the attack and what the attacker managed to send alongside.

Where the machine has two CPUs or more, the processes are placed as separate machines
would be (:func:`.base.placement`): the server alone on one CPU, the victim and the
attacker on the others, the attacker in the idle scheduling class. What is measured is
then what the attacker's traffic costs *the server* and so the victim, not what three
processes sharing two CPUs cost each other: the scheduler lets a woken process wait
behind a running one for milliseconds, and on a shared CPU the victim's p99 mostly
measured that. Full runs repeat the streaming cases with all three sharing every CPU
("shared CPUs" rows, no target), so that cost is still on record.

``python -m nbws.bench.isolation KIND PORT SECONDS`` runs one attacker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psutil
from websockets.frames import Frame, Opcode

from ..protocol.messages import (
    InfoRequest,
    Message,
    Policy,
    Publish,
    Subscribe,
    Subscribed,
    decode_event,
    encode,
)
from .base import Placement, Row, percentile, placement, server
from .wsclient import Peer, client_frame, handshake_request, open_peer

__all__ = ["CASES", "isolation"]

TARGET = "p99 within 2x of quiet"
MiB = 1024 * 1024

CASES: dict[str, str] = {
    "ping": "ping flood, pongs never read",
    "info": "unread nbws.v1 info replies",
    "conflate": "stuck conflate subscriber, 10k keyed msg/s",
    "block": "stuck block subscriber, 10k msg/s",
    "load": "load: 10k msg/s, a subscriber that reads (nobody stuck)",
    "control": "control: no attacker (second quiet window)",
}
"""Attack kind → what the row calls it."""

STREAMING = ("conflate", "block", "load")
"""Cases whose attacker publishes 10k msg/s."""

INTERVAL = 0.005  # seconds between the victim's round trips
FLOOD_STREAM = "isolation-flood"
VICTIM_STREAM = "isolation-victim"


# --- the victim (in the bench process) ----------------------------------------------------


async def _echo_round_trips(port: int, seconds: float) -> list[float]:
    peer = await open_peer(port, "/nbws/echo")
    frame = client_frame(b"victim round trip")
    samples: list[float] = []
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            peer.writer.write(frame)
            await asyncio.wait_for(peer.next_frame(), 60)
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(INTERVAL)
    finally:
        peer.writer.close()
    return samples


async def _next_event(peer: Peer) -> object:
    _opcode, payload = await peer.next_frame()
    return decode_event(payload)


async def _publish_round_trips(port: int, seconds: float) -> list[float]:
    peer = await open_peer(port, "/nbws/ws", "nbws.v1")
    samples: list[float] = []
    try:
        await _next_event(peer)  # welcome
        peer.writer.write(client_frame(encode(Subscribe(stream=VICTIM_STREAM)).data))
        while not isinstance(await _next_event(peer), Subscribed):
            pass
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            started = time.perf_counter()
            peer.writer.write(client_frame(encode(Publish(stream=VICTIM_STREAM, payload=n)).data))
            while True:
                event = await asyncio.wait_for(_next_event(peer), 60)
                if isinstance(event, Message) and event.payload == n:
                    break
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(INTERVAL)
    finally:
        peer.writer.close()
    return samples


# --- attackers (each in its own process) ----------------------------------------------------


def _raw_connect(port: int, path: str, protocol: str | None = None) -> socket.socket:
    """A blocking socket after the opening handshake, with a small receive buffer (a peer
    that does not read shows it at once)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.sendall(handshake_request(port, path, protocol))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace").splitlines()[0])
    return sock


def _flood(sock: socket.socket, block: bytes, until: float) -> int:
    """Write ``block`` again and again until ``until``; bytes the server took."""
    sock.settimeout(0.2)
    sent = 0
    view = memoryview(block)
    while time.monotonic() < until:
        try:
            n = sock.send(view)
        except TimeoutError:
            continue  # the server stopped reading from us: that is the point
        except OSError:
            break  # closed by the server
        sent += n
        view = view[n:] or memoryview(block)
    return sent


def _repeat(frame: bytes, size: int = 64 * 1024) -> bytes:
    return frame * max(1, size // len(frame))


def _drain(sock: socket.socket, stop: threading.Event) -> None:
    """Read and drop what the server sends (the publisher is a well-behaved reader)."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not sock.recv(1 << 20):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def _stuck_subscriber(port: int, policy: Policy | None, until: float) -> int:
    """A subscriber that never reads (with ``policy``; None: one that reads everything)
    and a publisher of 10k msg/s to its stream; the messages sent."""
    stuck = _raw_connect(port, "/nbws/ws", "nbws.v1")
    stuck.sendall(client_frame(encode(Subscribe(stream=FLOOD_STREAM, policy=policy)).data))
    publisher = _raw_connect(port, "/nbws/ws", "nbws.v1")
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(publisher, stop), daemon=True)
    reader.start()
    if policy is None:
        threading.Thread(target=_drain, args=(stuck, stop), daemon=True).start()
    rate, batch = 10_000, 100
    sent = 0
    started = time.monotonic()
    publisher.settimeout(5)
    while time.monotonic() < until:
        frames = b"".join(
            client_frame(
                encode(
                    Publish(
                        stream=FLOOD_STREAM,
                        payload={"n": sent + i, "pad": "x" * 100},
                        key=f"k{(sent + i) % 100}" if policy is Policy.CONFLATE else None,
                    )
                ).data
            )
            for i in range(batch)
        )
        try:
            publisher.sendall(frames)
        except OSError:
            break
        sent += batch
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    stop.set()
    reader.join(1)
    stuck.close()
    publisher.close()
    return sent


def attack(kind: str, port: int, seconds: float) -> int:
    """Run one attacker for ``seconds``; the number of bytes or messages it sent."""
    until = time.monotonic() + seconds
    if kind == "ping":
        sock = _raw_connect(port, "/nbws/echo")
        print("ready", flush=True)
        ping = Frame(Opcode.PING, b"p" * 125).serialize(mask=True, extensions=[])
        return _flood(sock, _repeat(ping), until)
    if kind == "info":
        sock = _raw_connect(port, "/nbws/ws", "nbws.v1")
        # The stream exists, so every request is a valid one with an ``info`` reply.
        sock.sendall(client_frame(encode(Publish(stream=FLOOD_STREAM, payload=0)).data))
        print("ready", flush=True)
        request = client_frame(encode(InfoRequest(stream=FLOOD_STREAM)).data)
        return _flood(sock, _repeat(request), until)
    policy = {"conflate": Policy.CONFLATE, "block": Policy.BLOCK}.get(kind)
    print("ready", flush=True)
    return _stuck_subscriber(port, policy, until)


# --- the scenario -------------------------------------------------------------------------------


class _RssWatch:
    """Samples a process's RSS in a thread; the peak since :meth:`reset`."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        return int(self.process.memory_info().rss)

    def reset(self) -> int:
        self.peak = self.now()
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)


@contextlib.contextmanager
def _attacker(
    kind: str, port: int, seconds: float, pinned: Placement | None
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbws.bench.isolation", kind, str(port), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=None if pinned is None else functools.partial(pinned.pin_client, idle=True),
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _on_client_cpus(pinned: Placement | None) -> Iterator[None]:
    """Run this (the victim's) process on the clients' CPUs meanwhile."""
    if pinned is None:
        yield
        return
    before = os.sched_getaffinity(0)
    pinned.pin_client()
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _case(
    kind: str, quiet_s: float, ramp_s: float, attack_s: float, pinned: Placement | None
) -> Row:
    measure: Callable[[int, float], Coroutine[Any, Any, list[float]]]
    measure = _echo_round_trips if kind in ("ping", "info", "control") else _publish_round_trips
    with _on_client_cpus(pinned), server("nbws", pinned=pinned) as (port, proc):
        watch = _RssWatch(proc.pid)
        try:
            asyncio.run(measure(port, 0.3))  # warm up: imports, first stream, caches
            quiet = asyncio.run(measure(port, quiet_s))
            before = watch.reset()
            if kind == "control":
                time.sleep(ramp_s)
                loud = asyncio.run(measure(port, attack_s))
                peak, out = watch.peak, ""
            else:
                with _attacker(kind, port, ramp_s + attack_s + 1, pinned) as attacker:
                    time.sleep(ramp_s)  # let the flood fill the socket buffers first
                    loud = asyncio.run(measure(port, attack_s))
                    peak = watch.peak
                    out, _ = attacker.communicate(timeout=30)  # it stops by itself
            after = watch.now()
        finally:
            watch.stop()
    sent = out.strip().rpartition(" ")[2] or ("0" if kind == "control" else "?")
    shared = pinned is None and placement() is not None  # could have been placed, was not
    label = f"{kind} (shared CPUs)" if shared else kind
    return Row(
        "isolation",
        f"victim p99 ms, {CASES[kind]}" + (", shared CPUs" if shared else ""),
        percentile(loud, 99),
        "same victim, quiet server",
        percentile(quiet, 99),
        higher_is_better=False,
        target="" if shared else TARGET,
        extra={
            f"{label} p50 ms quiet/attacked": (
                f"{percentile(quiet, 50):.2f} / {percentile(loud, 50):.2f}"
            ),
            f"{label} round trips quiet/attacked": f"{len(quiet)} / {len(loud)}",
            f"{label} attacker sent ({'messages' if kind in STREAMING else 'bytes'})": (sent),
            f"{label} server RSS growth MiB (peak, after)": (
                f"{(peak - before) / MiB:.1f}, {(after - before) / MiB:.1f}"
            ),
        },
    )


def isolation(quick: bool) -> list[Row]:
    quiet_s, ramp_s, attack_s = (1.5, 0.7, 2.5) if quick else (4.0, 1.5, 8.0)
    pinned = placement()
    rows = [_case(kind, quiet_s, ramp_s, attack_s, pinned) for kind in CASES]
    if pinned is not None and not quick:
        rows += [_case(kind, quiet_s, ramp_s, attack_s, None) for kind in STREAMING]
    return rows


def main(argv: list[str]) -> int:
    kind, port, seconds = argv[0], int(argv[1]), float(argv[2])
    if kind not in CASES or kind == "control":
        print(f"unknown attack {kind!r}; one of {', '.join(CASES)}", file=sys.stderr)
        return 2
    sent = attack(kind, port, seconds)
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
