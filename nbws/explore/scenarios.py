"""Named protocol experiments: what a server does versus what RFC 6455 requires.

Each :class:`Scenario` opens its own connection (so one broken connection cannot spoil the
next), sends a few frames, watches the answer with timeouts, and returns an
:class:`Outcome` with a verdict:

- PASS: the server did what RFC 6455 requires (or, where the RFC is silent, what a robust
  server does);
- FAIL: it did something else (a different close code, no answer, an echo of a frame it
  had to reject);
- INFO: the RFC leaves the choice to the server, or the server took a lawful but weaker
  option (dropping TCP without a close frame); the row says what happened.

``run_all(url)`` runs them all against any echo server (nbws's ``/nbws/echo`` by default,
or for example one started with the ``websockets`` library) and returns a table.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._redact import redact_text
from ..errors import ConnectionClosed
from ..protocol.session import State
from .client import RawConnection, WriteTimeout, connect
from .display import html_table, preview_text, text_table
from .frames import ParsedFrame, close_payload
from .handshake import Headers

__all__ = [
    "DEFAULT_URL",
    "FAIL",
    "INFO",
    "PASS",
    "SCENARIOS",
    "Context",
    "Outcome",
    "Scenario",
    "ScenarioTable",
    "run",
    "run_all",
]

DEFAULT_URL = "ws://127.0.0.1:8765/nbws/echo"
PASS, FAIL, INFO = "PASS", "FAIL", "INFO"
MiB = 1024 * 1024

_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA

Observation = tuple[str, str, dict[str, Any]]  # (what the server did, verdict, details)


@dataclass(frozen=True, slots=True)
class Context:
    """Settings every scenario body sees.

    Attributes:
        timeout: seconds to wait for each answer.
        max_message_size: the server's message limit, for the scenarios that probe it
            (nbws's default is 16 MiB; the ``websockets`` library's is 1 MiB).
        slow_reader_budget: bytes the slow-reader scenario sends at most.
    """

    timeout: float = 3.0
    max_message_size: int = 16 * MiB
    slow_reader_budget: int = 64 * MiB


@dataclass
class Outcome:
    """One scenario's result; ``connection`` keeps every frame for a closer look."""

    name: str
    title: str
    requires: str
    observed: str
    verdict: str
    close_code: int | None = None
    close_reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    connection: RawConnection | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.verdict} {self.name}: {self.observed} (RFC 6455: {self.requires})"

    def _repr_html_(self) -> str:
        return ScenarioTable([self])._repr_html_()


@dataclass(frozen=True)
class Scenario:
    """A named experiment.

    Attributes:
        name: identifier (``run("unmasked_frame", url)``).
        title: one line for the table.
        requires: what RFC 6455 requires of the server.
        body: sends frames on an open connection and judges the answer.
        connect_options: extra :func:`~nbws.explore.connect` arguments.
    """

    name: str
    title: str
    requires: str
    body: Callable[[RawConnection, Context], Observation] = field(repr=False)
    connect_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def run(
        self,
        url: str = DEFAULT_URL,
        *,
        context: Context | None = None,
        headers: Headers | None = None,
        subprotocols: Sequence[str] | None = None,
    ) -> Outcome:
        """Run against ``url`` on a fresh connection.

        Raises:
            HandshakeError, OSError: the server could not be reached or refused the upgrade.
        """
        ctx = context or Context()
        conn = connect(
            url,
            headers=headers,
            subprotocols=subprotocols,
            timeout=ctx.timeout,
            **self.connect_options,
        )
        try:
            try:
                observed, verdict, details = self.body(conn, ctx)
            except Exception as exc:  # report, do not raise: the other scenarios go on
                observed = redact_text(f"could not complete: {exc!r}")  # shown and saved
                verdict, details = INFO, {}
        finally:
            if conn.state is not State.CLOSED:
                conn.close(timeout=min(ctx.timeout, 1.0))
            conn.abort()
        return Outcome(
            self.name,
            self.title,
            self.requires,
            observed,
            verdict,
            conn.close_code,
            conn.close_reason,
            details,
            conn,
        )


class ScenarioTable:
    """Results of :func:`run_all`: scenario | RFC 6455 requires | server did | verdict."""

    columns = ("scenario", "RFC 6455 requires", "server did", "verdict")

    def __init__(self, outcomes: Sequence[Outcome]) -> None:
        self.outcomes = list(outcomes)

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, name: str) -> Outcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(name)

    @property
    def verdicts(self) -> dict[str, str]:
        return {o.name: o.verdict for o in self.outcomes}

    def rows(self) -> list[dict[str, str]]:
        """Plain rows (e.g. for a DataFrame)."""
        return [
            {
                "scenario": o.name,
                "requires": o.requires,
                "observed": o.observed,
                "verdict": o.verdict,
            }
            for o in self.outcomes
        ]

    def _cells(self) -> list[list[str]]:
        return [[o.name, o.requires, o.observed, o.verdict] for o in self.outcomes]

    def __repr__(self) -> str:
        counts = {v: sum(o.verdict == v for o in self.outcomes) for v in (PASS, FAIL, INFO)}
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        table = text_table(self.columns, self._cells(), wrap=(None, 44, 56, None))
        return f"{table}\n\n{summary}"

    def _repr_html_(self) -> str:
        colours = {PASS: "#d7f5dc", FAIL: "#f9d6d5", INFO: "#e8eef9"}
        table = html_table(
            self.columns,
            self._cells(),
            row_classes=[f"nbws-{o.verdict.lower()}" for o in self.outcomes],
        )
        style = "".join(
            f".nbws-scenarios tr.nbws-{v.lower()} td:last-child{{background:{c}}}"
            for v, c in colours.items()
        )
        return f'<div class="nbws-scenarios"><style>{style}</style>{table}</div>'


# --- helpers ----------------------------------------------------------------------------


def _describe(frames: Sequence[ParsedFrame]) -> str:
    """A compact account of frames received: ``PONG 'p' · TEXT 'Hello'``."""
    parts = []
    for frame in frames:
        if frame.opcode == _CLOSE:
            continue
        parts.append(f"{frame.opcode_name} {preview_text(frame.record, 24)}")
    return " · ".join(parts)


def _close_text(conn: RawConnection) -> str:
    code = conn.close_code
    if code is None:
        return "kept the connection open"
    if code == 1006:
        return "dropped the connection without a close frame"
    if code == 1005:
        return "closed with an empty close frame"
    text = f"closed with {code}"
    if conn.close_reason:
        text += f" {conn.close_reason!r}"
    return text


def _wait_close(conn: RawConnection, timeout: float) -> None:
    """Wait for the server's close frame (or the end of TCP), whichever comes first."""
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        conn.wait_for(_CLOSE, timeout)


def _expect_close(conn: RawConnection, ctx: Context, code: int) -> Observation:
    """Judge a connection that RFC 6455 requires the server to fail with ``code``."""
    _wait_close(conn, ctx.timeout)
    before = _describe([f for f in conn.received if f.opcode != _CLOSE])
    observed = (f"sent {before}, then " if before else "") + _close_text(conn)
    if conn.close_code == code:
        verdict = FAIL if before else PASS
    elif conn.close_code == 1006:
        verdict = INFO  # the RFC asks for a close frame first (SHOULD), but allows dropping
        observed += f" (RFC 6455: SHOULD send {code} first)"
    else:
        verdict = FAIL
    return observed, verdict, {"expected_close": code}


def _sends(*frames: tuple[Any, ...]) -> Callable[[RawConnection, Context], None]:
    def send(conn: RawConnection, ctx: Context) -> None:
        for frame in frames:
            opcode, payload, *rest = frame
            options = rest[0] if rest else {}
            conn.send_frame(opcode, payload, **options)

    return send


def _closes_with(
    code: int, *frames: tuple[Any, ...]
) -> Callable[[RawConnection, Context], Observation]:
    send = _sends(*frames)

    def body(conn: RawConnection, ctx: Context) -> Observation:
        # the server may close before the last frame is out; judge what it sent
        with contextlib.suppress(ConnectionClosed):
            send(conn, ctx)
        return _expect_close(conn, ctx, code)

    return body


def _receive_all(conn: RawConnection, count: int, timeout: float) -> list[str | bytes]:
    messages: list[str | bytes] = []
    deadline = time.monotonic() + timeout
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        while len(messages) < count:
            messages.append(conn.receive(max(0.0, deadline - time.monotonic())))
    return messages


# --- scenario bodies ----------------------------------------------------------------------


def _fragmented_with_ping(conn: RawConnection, ctx: Context) -> Observation:
    conn.send_frame(_TEXT, "Hello, ", fin=False)
    conn.ping("in-between")
    conn.send_frame(_CONT, "world", fin=True)
    pong: ParsedFrame | None = None
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        pong = conn.wait_for(_PONG, ctx.timeout)
    echo = _receive_all(conn, 1, ctx.timeout)
    got_pong = pong is not None and pong.payload == b"in-between"
    got_echo = echo == ["Hello, world"]
    observed = _describe(conn.received) or "nothing"
    if not (got_pong and got_echo):
        observed += "; " + _close_text(conn)
    return observed, PASS if got_pong and got_echo else FAIL, {"pong": got_pong, "echo": echo}


def _invalid_utf8_across_fragments(conn: RawConnection, ctx: Context) -> Observation:
    conn.send_frame(_TEXT, b"split \xf4", fin=False)  # a valid lead byte, so far so good
    conn.send_frame(_CONT, b"\x90\x80\x80 more", fin=False)  # \xf4\x90: beyond U+10FFFF
    _wait_close(conn, min(ctx.timeout, 1.0))
    fail_fast = conn.close_code is not None
    if not fail_fast:
        with contextlib.suppress(ConnectionClosed):
            conn.send_frame(_CONT, b" end", fin=True)
    observed, verdict, details = _expect_close(conn, ctx, 1007)
    if conn.close_code == 1007:
        observed += (
            ", before the final fragment was sent (fail-fast)"
            if fail_fast
            else ", only after the final fragment (not fail-fast; RFC 6455 allows it)"
        )
    details["fail_fast"] = fail_fast
    return observed, verdict, details


def _empty_close(conn: RawConnection, ctx: Context) -> Observation:
    conn.send_frame(_CLOSE, b"")
    _wait_close(conn, ctx.timeout)
    if conn.close_code == 1005:
        return "answered with an empty close frame", PASS, {}
    if conn.close_code == 1000:
        return "answered with 1000 (normal closure)", PASS, {}
    return _close_text(conn), FAIL, {}


def _normal_close(conn: RawConnection, ctx: Context) -> Observation:
    conn.close(1000, "bye", wait=False)
    with contextlib.suppress(TimeoutError):
        conn.wait_closed(ctx.timeout)
    observed = _close_text(conn)
    if conn.close_code == 1000 and conn.state is State.CLOSED:
        return observed + ", then closed TCP", PASS, {}
    return observed, FAIL, {}


def _ping_125(conn: RawConnection, ctx: Context) -> Observation:
    payload = bytes(range(125))
    conn.ping(payload)
    try:
        pong = conn.wait_for(_PONG, ctx.timeout)
    except (TimeoutError, ConnectionClosed):
        return "no pong; " + _close_text(conn), FAIL, {}
    same = pong.payload == payload
    observed = f"pong with {'the same' if same else 'a different'} {len(pong.payload)}-byte payload"
    return observed, PASS if same else FAIL, {}


def _empty_messages(conn: RawConnection, ctx: Context) -> Observation:
    conn.text("")
    conn.binary(b"")
    echoes = _receive_all(conn, 2, ctx.timeout)
    ok = echoes == ["", b""]
    observed = _describe(conn.received) or "nothing"
    return observed, PASS if ok else FAIL, {"echoes": echoes}


def _zero_length_fragments(conn: RawConnection, ctx: Context) -> Observation:
    conn.fragments(["", "ab", "", ""])
    echoes = _receive_all(conn, 1, ctx.timeout)
    ok = echoes == ["ab"]
    return _describe(conn.received) or "nothing", PASS if ok else FAIL, {"echoes": echoes}


def _message_too_big(conn: RawConnection, ctx: Context) -> Observation:
    limit = ctx.max_message_size
    chunk = b"x" * min(64 * 1024, limit + 1)
    sent = 0
    try:
        conn.send_frame(_BINARY, chunk, fin=False)
        sent = len(chunk)
        while sent <= limit and conn.close_code is None:
            conn.send_frame(_CONT, chunk, fin=False)
            sent += len(chunk)
    except (ConnectionClosed, WriteTimeout):
        pass
    _wait_close(conn, ctx.timeout)
    details = {"limit": limit, "sent": sent}
    if conn.close_code == 1009:
        return f"closed with 1009 after {sent} bytes (limit {limit})", PASS, details
    if conn.close_code is None:
        with contextlib.suppress(ConnectionClosed):
            conn.send_frame(_CONT, b"", fin=True)
        echo = _receive_all(conn, 1, ctx.timeout)
        size = len(echo[0]) if echo else 0
        observed = f"accepted {sent} bytes (over the {limit}-byte limit given); echoed {size}"
        return observed, INFO, details
    return _close_text(conn), FAIL, details


def _ping_near_size_limit(conn: RawConnection, ctx: Context) -> Observation:
    limit = ctx.max_message_size
    conn.send_frame(_TEXT, b"a" * (limit - 10), fin=False)
    conn.ping(b"p" * 100)
    try:
        pong = conn.wait_for(_PONG, ctx.timeout)
    except (TimeoutError, ConnectionClosed):
        _wait_close(conn, ctx.timeout)
        return "no pong; " + _close_text(conn), FAIL, {"limit": limit}
    conn.send_frame(_CONT, b"b" * 10, fin=True)
    echo = _receive_all(conn, 1, ctx.timeout)
    ok = pong.payload == b"p" * 100 and len(echo) == 1 and len(echo[0]) == limit
    observed = "pong, then the message echoed" if ok else _describe(conn.received)
    return observed, PASS if ok else FAIL, {"limit": limit}


def _close_inside_fragmented(conn: RawConnection, ctx: Context) -> Observation:
    conn.send_frame(_TEXT, "half a message", fin=False)
    conn.close(1000, "bye", wait=False)
    _wait_close(conn, ctx.timeout)
    observed = _close_text(conn)
    if conn.close_code == 1000:
        return observed, PASS, {}
    if conn.close_code == 1002:
        return observed + " (treats it as an error; a close reply is all RFC 6455 asks)", INFO, {}
    return observed, FAIL, {}


def _non_minimal_length(conn: RawConnection, ctx: Context) -> Observation:
    conn.send_frame(_TEXT, "hello", length_form=64)
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        conn.wait_for(lambda frame: frame.opcode in (_TEXT, _CLOSE), ctx.timeout)
    if conn.close_code is not None:
        return _close_text(conn), INFO, {}
    echo = _receive_all(conn, 1, ctx.timeout)
    return (f"accepted it and echoed {echo[0]!r}" if echo else "no answer"), INFO, {}


def _slow_reader(conn: RawConnection, ctx: Context) -> Observation:
    chunk = b"s" * (64 * 1024)
    stall = min(ctx.timeout, 1.0)
    conn.pause_reading()
    sent = messages = 0
    stalled = False
    try:
        while sent < ctx.slow_reader_budget:
            try:
                conn.send_frame(_BINARY, chunk, timeout=stall)
            except WriteTimeout as exc:
                stalled = True
                sent += exc.written
                break
            sent += len(chunk)
            messages += 1
    except ConnectionClosed:
        conn.resume_reading()
        _wait_close(conn, ctx.timeout)
        text = f"{_close_text(conn)} after the client had sent {sent / MiB:.1f} MiB without reading"
        return text, PASS, {"sent": sent}
    conn.resume_reading()
    details: dict[str, Any] = {"sent_before_pushback": sent, "stalled": stalled}
    if stalled:
        conn.resume_write(timeout=ctx.timeout * 10)
        messages += 1
    echoes = _receive_all(conn, messages, ctx.timeout * 10)
    echoed = sum(len(e) for e in echoes)
    details.update(messages=messages, echoed_messages=len(echoes))
    if not stalled:
        observed = (
            f"read all {sent / MiB:.0f} MiB while the client read nothing: it buffers at least "
            "that much per slow client"
        )
        return observed, INFO, details
    observed = (
        f"stopped reading after {sent / MiB:.1f} MiB (socket buffers included) while the client "
        f"read nothing; then echoed {len(echoes)}/{messages} messages ({echoed / MiB:.1f} MiB)"
    )
    return observed, PASS if len(echoes) == messages else FAIL, details


def _build_scenarios() -> dict[str, Scenario]:
    items = [
        Scenario(
            "fragmented_text_with_ping",
            "fragmented text with a ping between the fragments",
            "pong with the same payload; 'Hello, world' echoed (control frames may come "
            "between fragments, §5.4; §5.5.2)",
            _fragmented_with_ping,
        ),
        Scenario(
            "invalid_utf8_across_fragments",
            "invalid UTF-8 split across a fragment boundary",
            "close 1007 (§8.1), ideally as soon as the bad byte arrives (fail-fast)",
            _invalid_utf8_across_fragments,
        ),
        Scenario(
            "invalid_utf8_text",
            "a text frame that is not UTF-8 (an encoded surrogate)",
            "close 1007 (§8.1)",
            _closes_with(1007, (_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80edited")),
        ),
        Scenario(
            "close_1005_on_wire",
            "a close frame carrying 1005",
            "close 1002: 1005 must never be sent in a close frame (§7.4.1)",
            _closes_with(1002, (_CLOSE, close_payload(1005))),
        ),
        Scenario(
            "empty_close",
            "a close frame with no body",
            "a close frame in reply, empty or 1000 (§5.5.1)",
            _empty_close,
        ),
        Scenario(
            "normal_close",
            "close 1000 'bye'",
            "a close frame in reply (typically 1000), then the server closes TCP (§5.5.1, §7.1.1)",
            _normal_close,
        ),
        Scenario(
            "bad_close_code",
            "a close frame with the reserved code 1004",
            "close 1002 (§7.4.1: 1004 is reserved)",
            _closes_with(1002, (_CLOSE, close_payload(1004))),
        ),
        Scenario(
            "close_one_byte",
            "a close frame with a 1-byte body",
            "close 1002 (§5.5.1: a body starts with a 2-byte code)",
            _closes_with(1002, (_CLOSE, b"\x03")),
        ),
        Scenario(
            "close_reason_not_utf8",
            "close 1000 with a reason that is not UTF-8",
            "close 1007 (§5.5.1, §8.1)",
            _closes_with(1007, (_CLOSE, close_payload(1000, b"\xff\xfe"))),
        ),
        Scenario(
            "oversize_ping",
            "a ping with a 126-byte payload",
            "close 1002 (§5.5: control frames carry at most 125 bytes)",
            _closes_with(1002, (_PING, b"p" * 126)),
        ),
        Scenario(
            "fragmented_ping",
            "a ping with FIN=0",
            "close 1002 (§5.5: control frames must not be fragmented)",
            _closes_with(1002, (_PING, b"p", {"fin": False})),
        ),
        Scenario(
            "ping_125",
            "a ping with a 125-byte payload",
            "a pong with the identical payload (§5.5.2, §5.5.3)",
            _ping_125,
        ),
        Scenario(
            "empty_messages",
            "an empty text and an empty binary message",
            "both echoed, same opcodes, 0 bytes",
            _empty_messages,
        ),
        Scenario(
            "zero_length_fragments",
            "a text message in fragments '', 'ab', '', ''",
            "'ab' echoed (0-length fragments are valid, §5.4)",
            _zero_length_fragments,
        ),
        Scenario(
            "message_too_big",
            "a fragmented message over the server's size limit",
            "close 1009 once the total is over the limit (§7.4.1)",
            _message_too_big,
        ),
        Scenario(
            "ping_near_size_limit",
            "a 100-byte ping inside a message 10 bytes under the size limit",
            "a pong, then the echo: control frames are not part of the message (§5.4, §5.5)",
            _ping_near_size_limit,
        ),
        Scenario(
            "unmasked_frame",
            "a text frame without the MASK bit",
            "close 1002 (§5.1: a server must close on an unmasked frame)",
            _closes_with(1002, (_TEXT, "hello", {"mask": False})),
        ),
        Scenario(
            "reserved_opcode",
            "a frame with the reserved data opcode 0x3",
            "close 1002 (§5.2: unknown opcode)",
            _closes_with(1002, (0x3, "x")),
        ),
        Scenario(
            "reserved_control_opcode",
            "a frame with the reserved control opcode 0xB",
            "close 1002 (§5.2: unknown opcode)",
            _closes_with(1002, (0xB, "")),
        ),
        Scenario(
            "rsv_bit",
            "a text frame with RSV1 set, no extension negotiated",
            "close 1002 (§5.2: RSV bits only with an extension)",
            _closes_with(1002, (_TEXT, "hello", {"rsv": (1, 0, 0)})),
        ),
        Scenario(
            "continuation_without_start",
            "a continuation frame with no message started",
            "close 1002 (§5.4)",
            _closes_with(1002, (_CONT, "orphan")),
        ),
        Scenario(
            "data_inside_fragmented",
            "a new text frame inside a fragmented message",
            "close 1002 (§5.4: fragments of one message are not interleaved)",
            _closes_with(1002, (_TEXT, "one", {"fin": False}), (_TEXT, "two")),
        ),
        Scenario(
            "close_inside_fragmented",
            "close 1000 between the fragments of a message",
            "a close frame in reply (§5.5.1; control frames may come between fragments, §5.4)",
            _close_inside_fragmented,
        ),
        Scenario(
            "non_minimal_length",
            "'hello' with its length in the 64-bit form",
            "senders must use the shortest length form (§5.2); what a receiver does is not "
            "specified",
            _non_minimal_length,
        ),
        Scenario(
            "slow_reader",
            "send 64 KiB messages to be echoed while never reading the echoes",
            "nothing in RFC 6455; a robust server stops reading (TCP backpressure) instead of "
            "buffering without bound",
            _slow_reader,
            {"receive_buffer": 32 * 1024},
        ),
    ]
    return {scenario.name: scenario for scenario in items}


SCENARIOS: dict[str, Scenario] = _build_scenarios()


def run(
    name: str,
    url: str = DEFAULT_URL,
    *,
    timeout: float = 3.0,
    max_message_size: int = 16 * MiB,
    headers: Headers | None = None,
) -> Outcome:
    """Run one scenario by name against ``url``."""
    context = Context(timeout=timeout, max_message_size=max_message_size)
    return SCENARIOS[name].run(url, context=context, headers=headers)


def run_all(
    url: str = DEFAULT_URL,
    *,
    names: Sequence[str] | None = None,
    timeout: float = 3.0,
    max_message_size: int = 16 * MiB,
    slow_reader_budget: int = 64 * MiB,
    headers: Headers | None = None,
) -> ScenarioTable:
    """Run every scenario (or ``names``) against ``url``, one connection each.

    Args:
        url: an echo endpoint (nbws's ``/nbws/echo`` or any server that echoes messages).
        names: scenarios to run, in order (default: all of :data:`SCENARIOS`).
        timeout: seconds to wait for each answer.
        max_message_size: the server's message limit, for the size scenarios.
        slow_reader_budget: bytes the slow-reader scenario sends at most.
        headers: extra handshake headers (e.g. ``{"Authorization": "token ..."}``).

    Raises:
        HandshakeError, OSError: the server could not be reached or refused the upgrade.
    """
    context = Context(timeout, max_message_size, slow_reader_budget)
    chosen = list(names) if names is not None else list(SCENARIOS)
    return ScenarioTable([SCENARIOS[n].run(url, context=context, headers=headers) for n in chosen])
