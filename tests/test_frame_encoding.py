"""nbws's direct frame encoder produces exactly what websockets' serialiser does."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from nbws.protocol import encode_frame, encode_message


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("text", [True, False])
@pytest.mark.parametrize("fin", [True, False])
@pytest.mark.parametrize("continuation", [True, False])
def test_encode_frame_matches_websockets(size, text, fin, continuation):
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    opcode = Opcode.CONT if continuation else Opcode.TEXT if text else Opcode.BINARY
    expected = Frame(opcode, payload, fin).serialize(mask=False, extensions=[])
    assert encode_frame(payload, text=text, fin=fin, continuation=continuation) == expected
    assert (
        encode_frame(memoryview(payload), text=text, fin=fin, continuation=continuation) == expected
    )


def test_encode_message_fragments_large_payloads_contiguously():
    payload = b"y" * (2 * 1024 * 1024 + 10)
    data = encode_message(payload, text=False, fragment_size=1024 * 1024)
    expected = b"".join(
        Frame(op, payload[i : i + 1024 * 1024], fin).serialize(mask=False, extensions=[])
        for op, i, fin in [
            (Opcode.BINARY, 0, False),
            (Opcode.CONT, 1024 * 1024, False),
            (Opcode.CONT, 2 * 1024 * 1024, True),
        ]
    )
    assert data == expected
