"""Tests for syslog stream and datagram framing.

Covers RFC 6587 octet counting, LF/CRLF/NUL framing, mixed streams, splits and truncation.
"""

from __future__ import annotations

import tracemalloc

import pytest

from ferry.receivers.syslog.framing import StreamFramer, split_datagram

M1 = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed"
M2 = b"<13>Oct 11 22:14:15 host app[12]: hello world"
M3 = b'<165>1 - - - - - [ex@1 a="x\\"y"] line with\nan embedded newline'


def octet(msg: bytes) -> bytes:
    return str(len(msg)).encode() + b" " + msg


def frame_all(chunks: list[bytes], max_message: int = 64 * 1024) -> tuple[list[bytes], StreamFramer]:
    framer = StreamFramer(max_message=max_message)
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    out.extend(framer.flush())
    return out, framer


def test_octet_counted_frames() -> None:
    """Octet-counted frames are split by their length prefix, embedded LFs included."""
    out, framer = frame_all([octet(M1) + octet(M3) + octet(M2)])
    assert out == [M1, M3, M2]
    assert framer.truncated == 0


def test_lf_framing() -> None:
    """LF-terminated messages come out one per line without the LF."""
    out, _ = frame_all([M1 + b"\n" + M2 + b"\n"])
    assert out == [M1, M2]


def test_crlf_framing() -> None:
    """A CR before the LF is stripped; a CR inside a message is kept."""
    out, _ = frame_all([M1 + b"\r\n" + b"a\rb\r\n"])
    assert out == [M1, b"a\rb"]


def test_nul_terminates_a_message() -> None:
    """A NUL ends a non-transparent message just like an LF."""
    out, _ = frame_all([M1 + b"\x00" + M2 + b"\n"])
    assert out == [M1, M2]


def test_blank_lines_are_skipped() -> None:
    """Empty non-transparent messages (blank lines, CRLF then NUL) yield nothing."""
    out, _ = frame_all([b"\n\r\n" + M2 + b"\r\n\x00\n"])
    assert out == [M2]


def test_mixed_framing_in_one_stream() -> None:
    """Octet-counted and LF-framed messages can alternate on one connection."""
    stream = octet(M1) + M2 + b"\n" + octet(M3) + M1 + b"\r\n" + octet(M2)
    out, _ = frame_all([stream])
    assert out == [M1, M2, M3, M1, M2]


def test_leading_digits_without_count_are_lf_framed() -> None:
    """A line that starts with digits but no `<count> ` header is read as LF-framed."""
    out, _ = frame_all([b"2024-05-01 12:00:00 plain text\n", b"12\n"])
    assert out == [b"2024-05-01 12:00:00 plain text", b"12"]


def test_split_at_every_byte_position() -> None:
    """Splitting the stream into two feeds at any byte yields the same messages."""
    stream = octet(M1) + M2 + b"\r\n" + octet(M3) + M1 + b"\x00" + octet(M2) + M2 + b"\n"
    expected = [M1, M2, M3, M1, M2, M2]
    for cut in range(len(stream) + 1):
        out, _ = frame_all([stream[:cut], stream[cut:]])
        assert out == expected, cut


def test_byte_by_byte_feed() -> None:
    """Feeding one byte at a time yields the same messages as one big feed."""
    stream = octet(M3) + M2 + b"\n" + octet(M1) + b"tail without terminator"
    out, _ = frame_all([stream[i : i + 1] for i in range(len(stream))])
    assert out == [M3, M2, M1, b"tail without terminator"]


def test_flush_returns_unterminated_message() -> None:
    """At close, flush returns the last message that had no terminator, without a trailing CR."""
    framer = StreamFramer()
    assert framer.feed(M1 + b"\n" + M2 + b"\r") == [M1]
    assert framer.flush() == [M2]
    assert framer.flush() == []


def test_flush_returns_partial_octet_frame_payload() -> None:
    """A connection closed mid-frame returns the payload that arrived, without the count."""
    framer = StreamFramer()
    assert framer.feed(octet(M1)[:-5]) == []
    assert framer.flush() == [M1[:-5]]


def test_oversize_octet_frame_is_truncated_and_counted() -> None:
    """An octet-counted frame over max_message is cut to max_message and the next frame is intact."""
    big = b"x" * 1000
    out, framer = frame_all([octet(big) + octet(M2)], max_message=100)
    assert out == [b"x" * 100, M2]
    assert framer.truncated == 1


def test_oversize_octet_frame_in_pieces() -> None:
    """Truncation of an octet-counted frame works when it arrives in small chunks."""
    stream = octet(b"y" * 5000) + M2 + b"\n"
    out, framer = frame_all([stream[i : i + 7] for i in range(0, len(stream), 7)], max_message=64)
    assert out == [b"y" * 64, M2]
    assert framer.truncated == 1


def test_oversize_lf_message_is_truncated_and_counted() -> None:
    """An LF-framed message over max_message is cut, its tail dropped, the next line intact."""
    stream = b"z" * 5000 + b"\n" + M2 + b"\n" + b"w" * 300 + b"\r\n"
    for chunks in ([stream], [stream[i : i + 50] for i in range(0, len(stream), 50)]):
        out, framer = frame_all(chunks, max_message=200)
        assert out == [b"z" * 200, M2, b"w" * 200]
        assert framer.truncated == 2


def test_message_of_exactly_max_size_is_not_truncated() -> None:
    """A message exactly max_message long, CRLF-terminated, passes whole."""
    msg = b"m" * 100
    out, framer = frame_all([msg + b"\r", b"\n", octet(msg)], max_message=100)
    assert out == [msg, msg]
    assert framer.truncated == 0


def test_unterminated_flood_does_not_grow_memory() -> None:
    """Megabytes without a terminator are dropped past max_message instead of buffered."""
    framer = StreamFramer(max_message=64 * 1024)
    chunk = b"a" * (64 * 1024)
    tracemalloc.start()
    try:
        out: list[bytes] = []
        for _ in range(128):  # 8 MiB
            out.extend(framer.feed(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    assert out == [b"a" * (64 * 1024)]
    assert framer.truncated == 1
    assert framer.feed(b"rest\nnext\n") == [b"next"]


def test_feed_many_lines_per_chunk() -> None:
    """A 64 KiB chunk of hundreds of lines yields every line in order."""
    lines = [b"<13>Oct 11 22:14:15 host app: line %d" % i for i in range(2000)]
    stream = b"\n".join(lines) + b"\n"
    out, _ = frame_all([stream[i : i + 65536] for i in range(0, len(stream), 65536)])
    assert out == lines


def test_max_message_must_be_positive() -> None:
    """A non-positive max_message is rejected."""
    with pytest.raises(ValueError):
        StreamFramer(max_message=0)


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (M1, [M1]),
        (M1 + b"\n", [M1]),
        (M1 + b"\r\n\x00", [M1]),
        (M1 + b"\n" + M2 + b"\r\n" + M2, [M1, M2, M2]),
        (M1 + b"\n\n" + M2 + b"\n", [M1, M2]),
        (b"\n\x00", []),
        (b"", []),
    ],
)
def test_split_datagram(datagram: bytes, expected: list[bytes]) -> None:
    """A datagram is one message minus trailing LF/CR/NUL, or one per non-empty line if it holds several."""
    assert split_datagram(datagram) == expected
