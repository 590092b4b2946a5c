"""The RFC 6455 reference model that judges fuzzed streams (checked on hand-made streams)."""

from __future__ import annotations

import pytest

from nbws.explore.frames import build_frame, close_payload
from nbws.explore.rfc import expect_echo_server, is_valid_close_code


def stream(*frames: bytes) -> bytes:
    return b"".join(frames)


def test_valid_stream_with_fragments_and_pings():
    result = expect_echo_server(
        stream(
            build_frame(0x1, "Hel", fin=False),
            build_frame(0x9, "p1"),
            build_frame(0x0, "lo", fin=True),
            build_frame(0x2, b"\x00\xff"),
            build_frame(0xA, "unsolicited"),
        )
    )
    assert result.close_codes is None
    assert result.echoes == [(True, b"Hello"), (False, b"\x00\xff")]
    assert result.pongs == [b"p1"]
    assert not result.message_in_progress


@pytest.mark.parametrize(
    ("frames", "codes"),
    [
        ([build_frame(0x1, "x", mask=False)], {1002}),
        ([build_frame(0x3, "x")], {1002}),
        ([build_frame(0x1, "x", rsv=(0, 0, 1))], {1002}),
        ([build_frame(0x9, "p", fin=False)], {1002}),
        ([build_frame(0x9, b"p" * 126)], {1002}),
        ([build_frame(0x0, "x")], {1002}),
        ([build_frame(0x1, "a", fin=False), build_frame(0x2, "b")], {1002}),
        ([build_frame(0x8, close_payload(1005))], {1002}),
        ([build_frame(0x8, b"\x03")], {1002}),
        ([build_frame(0x8, close_payload(1000, b"\xff"))], {1007}),
        ([build_frame(0x1, b"\xff")], {1007}),
        ([build_frame(0x1, b"\xe2\x82", fin=False), build_frame(0x0, b"", fin=True)], {1007}),
        ([build_frame(0x2, b"x" * 201)], {1009}),
        ([build_frame(0x1, b"x", rsv=(1, 0, 0), mask=False)], {1002}),
        ([build_frame(0x1, b"\xff", rsv=(1, 0, 0))], {1002, 1007}),
    ],
)
def test_each_violation_gets_its_codes(frames, codes):
    result = expect_echo_server(stream(*frames), max_message_size=200)
    assert result.close_codes == frozenset(codes)
    assert result.frame_index == len(frames) - 1


def test_utf8_is_judged_across_fragments_at_the_first_bad_byte():
    result = expect_echo_server(
        stream(build_frame(0x1, b"ok \xf4", fin=False), build_frame(0x0, b"\x90", fin=False))
    )
    assert result.close_codes == frozenset({1007})
    assert result.frame_index == 1


def test_control_frame_near_the_size_limit_may_get_1009_but_pong_is_owed_otherwise():
    near = stream(build_frame(0x1, b"a" * 95, fin=False), build_frame(0x9, b"p" * 10))
    assert expect_echo_server(near, max_message_size=100).close_codes == frozenset({1009})
    far = stream(build_frame(0x1, b"a" * 5, fin=False), build_frame(0x9, b"p" * 10))
    result = expect_echo_server(far, max_message_size=100)
    assert result.close_codes is None and result.pongs == [b"p" * 10]
    assert result.message_in_progress


def test_client_close_stops_the_stream_and_is_echoed():
    result = expect_echo_server(
        stream(
            build_frame(0x1, "a"), build_frame(0x8, close_payload(4000, "x")), build_frame(0x3, "")
        )
    )
    assert result.echoes == [(True, b"a")]
    assert result.client_closed and result.close_codes == frozenset({4000})
    empty = expect_echo_server(build_frame(0x8, b""))
    assert empty.close_codes == frozenset({1000, 1005})
    mid = expect_echo_server(
        stream(build_frame(0x1, "a", fin=False), build_frame(0x8, close_payload(1000)))
    )
    assert mid.close_codes == frozenset({1000, 1002})


def test_truncated_streams():
    header_cut = expect_echo_server(build_frame(0x2, b"x" * 300)[:3])
    assert expect_echo_server(build_frame(0x3, b"")[:1]).close_codes == frozenset({1002, 1006})
    assert expect_echo_server(
        build_frame(0x1, b"x" * 300, mask=False)[:3]
    ).close_codes == frozenset({1002, 1006})
    assert header_cut.incomplete and header_cut.close_codes == frozenset({1006})
    payload_cut = expect_echo_server(build_frame(0x2, b"x" * 300)[:50])
    assert payload_cut.incomplete and payload_cut.close_codes == frozenset({1006})
    bad_header_cut = expect_echo_server(build_frame(0x2, b"x" * 300, mask=False)[:50])
    assert bad_header_cut.close_codes == frozenset({1002, 1006})


def test_close_code_validity():
    valid = [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999]
    invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]
    assert all(is_valid_close_code(c) for c in valid)
    assert not any(is_valid_close_code(c) for c in invalid)
