"""Tests for syslog stream and datagram framing.

Covers RFC 6587 octet counting, LF/CRLF/NUL framing, mixed streams, splits and truncation.
"""

from __future__ import annotations

import random
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


# Messages whose octet counts have 1 to 5 digits, so headers of every width meet at chunk edges.
WIDTHS = [b"x", b"<1>" + b"a" * 20, b"<2>" + b"b" * 150, b"<3>" + b"c" * 1200, b"<4>" + b"d" * 12000]


def test_octet_frames_of_every_count_width_split_at_every_position() -> None:
    """Frames with 1- to 5-digit counts come out whole wherever the stream is cut: inside the
    digits, at the space, inside or at the end of the payload."""
    frames = [octet(m) for m in WIDTHS[:4]]
    stream = b"".join(frames)
    cuts: set[int] = set()
    base = 0
    for f in frames:
        cuts.update(range(base, base + f.index(b" ") + 3))  # in the digits, at the space, just after
        cuts.update((base + len(f) - 1, base + len(f)))
        base += len(f)
    for cut in sorted(cuts):
        for tail_cut in (cut, min(cut + 3, len(stream)), len(stream)):
            chunks = [stream[:cut], stream[cut:tail_cut], stream[tail_cut:]]
            out, framer = frame_all(chunks)
            assert out == WIDTHS[:4], (cut, tail_cut)
            assert framer.truncated == 0


def test_large_chunks_of_varied_frames_yield_every_frame() -> None:
    """Thousands of octet-counted frames of mixed sizes in 256 KiB reads arrive whole and in order,
    counts above 9999 included."""
    msgs = [WIDTHS[i % 5][: 1 + (i * 37) % len(WIDTHS[i % 5])] for i in range(5000)]
    stream = b"".join(octet(m) for m in msgs)
    size = 256 * 1024
    out, framer = frame_all([stream[i : i + size] for i in range(0, len(stream), size)])
    assert out == msgs
    assert framer.truncated == 0


def test_payload_that_looks_like_frames_is_not_reframed() -> None:
    """A payload holding LFs, digits and nested `<count> ` text is one message."""
    inner = octet(b"fake") + b"\n12 not a frame\n"
    out, _ = frame_all([octet(inner) + octet(M2)])
    assert out == [inner[:-1], M2]  # less the final LF, which is framing


def test_oversize_octet_frame_split_at_every_position() -> None:
    """An oversized frame is cut to max_message and counted once, and the next frame is intact,
    whatever the chunking."""
    big = b"<1>" + b"q" * 300
    stream = octet(big) + octet(M2) + M1 + b"\n"
    for cut in range(len(stream) + 1):
        out, framer = frame_all([stream[:cut], stream[cut:]], max_message=100)
        assert out == [big[:100], M2, M1], cut
        assert framer.truncated == 1


def test_oversize_octet_frames_back_to_back() -> None:
    """Several oversized frames in one read are each cut and counted, with normal ones between."""
    big = b"z" * 250
    stream = octet(big) + octet(b"ok") + octet(big) + octet(big) + octet(b"end")
    out, framer = frame_all([stream], max_message=64)
    assert out == [big[:64], b"ok", big[:64], big[:64], b"end"]
    assert framer.truncated == 3


@pytest.mark.parametrize(
    "line",
    [
        b"0 leading zero is not a count",
        b"012 leading zero again",
        b"12x not all digits",
        b"1234567890 ten digits is too long",
        b"+5 signed",
        b"1_0 underscore",
        b"7\tab tab before space",
        b"2024-05-01 12:00:00 a date",
    ],
)
def test_garbage_length_is_read_as_a_line(line: bytes) -> None:
    """A line whose leading digits are not a valid octet count is LF-framed, whole, wherever cut."""
    stream = octet(M1) + line + b"\n" + octet(M2)
    for cut in range(len(stream) + 1):
        out, framer = frame_all([stream[:cut], stream[cut:]])
        assert out == [M1, line, M2], cut
        assert framer.truncated == 0


def test_count_longer_than_the_stream_keeps_what_arrived_at_close() -> None:
    """A count that promises more than the peer sends yields the bytes that came, at close."""
    out, _ = frame_all([b"999 " + M1 + b"\n" + M2 + b"\n"])
    assert out == [M1 + b"\n" + M2 + b"\n"]


def test_lines_between_frames_in_one_read() -> None:
    """LF-framed lines around octet-counted frames (whose payloads hold LFs) split correctly."""
    stream = b"<13>a\n<13>b\r\n" + octet(b"x\ny\n") + b"<13>c\n\n<13>d\x00" + octet(b"7 z") + b"<13>e\n"
    assert frame_all([stream])[0] == [b"<13>a", b"<13>b", b"x\ny", b"<13>c", b"<13>d", b"7 z", b"<13>e"]


def test_crlf_lf_and_bare_cr_mixed_in_one_read() -> None:
    """Only a CR right before an LF is stripped, whether every line or only some end in CRLF."""
    all_crlf = b"".join(b"<1>line %d\r\n" % i for i in range(100))
    assert frame_all([all_crlf])[0] == [b"<1>line %d" % i for i in range(100)]
    mixed = b"<1>a\r\n<1>b\n<1>c\rd\r\n<1>e\r\r\n\r\n<1>f\n"
    assert frame_all([mixed])[0] == [b"<1>a", b"<1>b", b"<1>c\rd", b"<1>e\r", b"<1>f"]


def test_many_short_lines_with_a_few_oversized() -> None:
    """In a read of many lines, exactly the ones over max_message are cut and counted."""
    lines = [b"<1>" + b"s" * (i % 40) for i in range(300)]
    for i in (7, 150, 299):
        lines[i] = b"<2>" + b"L" * (100 + i % 3)
    expected = [line[:100] for line in lines]
    for sep in (b"\n", b"\r\n"):
        out, framer = frame_all([sep.join(lines) + sep], max_message=100)
        assert out == expected
        assert framer.truncated == 3


def test_line_of_exactly_max_size_among_short_lines_is_not_truncated() -> None:
    """A line exactly max_message long in a read of many lines passes whole."""
    lines = [b"<1>short"] * 50 + [b"m" * 100] + [b"<1>short"] * 50
    out, framer = frame_all([b"\r\n".join(lines) + b"\r\n"], max_message=100)
    assert out == lines
    assert framer.truncated == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    """Messages come back as bytes whatever bytes-like object the reads are."""
    framer = StreamFramer()
    out = framer.feed(bytearray(octet(M1))) + framer.feed(memoryview(M2 + b"\n"))
    assert out == [M1, M2]
    assert all(type(m) is bytes for m in out)


def test_any_chunking_yields_the_same_messages() -> None:
    """Random mixes of frames, lines, garbage and oversize messages frame the same however the
    stream is cut into reads."""
    rng = random.Random(6587)
    pieces = [
        lambda: octet(bytes(rng.choice(b"ab<> 12\n\r\x00") for _ in range(rng.randrange(0, 130)))),
        lambda: b"<1>" + bytes(rng.choice(b"ab 12\r") for _ in range(rng.randrange(0, 130))) + b"\n",
        lambda: rng.choice([b"\r\n", b"\x00", b"\n\n"]),
        lambda: rng.choice([b"0 x\n", b"12x y\n", b"1234567890 z\n", b"99 short\n", b"5 "]),
    ]
    for _ in range(200):
        stream = b"".join(rng.choice(pieces)() for _ in range(rng.randrange(1, 30)))
        whole, framer = frame_all([stream], max_message=100)
        for size in (1, rng.randrange(2, 40), rng.randrange(40, 400)):
            out, chunked = frame_all(
                [stream[i : i + size] for i in range(0, len(stream), size)], max_message=100
            )
            assert out == whole, (stream, size)
            assert chunked.truncated == framer.truncated


# What rsyslog (RSYSLOG_SyslogProtocol23Format, TCP_Framing="octet-counted") and syslog-ng's syslog()
# driver write, captured from both: the count includes the LF that ends the message.
RSYSLOG_FRAME = b"66 <29>1 2026-12-04T16:23:08+00:00 vm relayed - - -  via rsyslog tok\n"
SYSLOG_NG_FRAME = b"73 <163>1 2026-12-04T16:25:19+00:00 vm payments 11626 - - card declined tok\n"


@pytest.mark.parametrize("frame", [RSYSLOG_FRAME, SYSLOG_NG_FRAME], ids=["rsyslog", "syslog-ng"])
def test_octet_frame_ending_in_lf_loses_the_lf(frame: bytes) -> None:
    """The LF a relay counts into an octet-counted frame is framing: no stored body ends with it,
    however the stream is cut into reads, and the space after the count never leads the message."""
    msg = frame.split(b" ", 1)[1][:-1]
    stream = frame * 3
    for cut in range(len(stream) + 1):
        out, framer = frame_all([stream[:cut], stream[cut:]])
        assert out == [msg] * 3, cut
        assert framer.truncated == 0


def test_octet_frame_ending_in_crlf_or_only_lf() -> None:
    """A CRLF inside the count goes too, an LF inside the message stays, a frame of just an LF is
    skipped like a blank line, and a frame not ending in LF is untouched."""
    stream = octet(M2 + b"\n") + octet(M1 + b"\r\n") + octet(M3 + b"\n") + octet(b"\n") + octet(b"\r\n") + octet(M2)
    stream += octet(b"a\rb\r") + octet(M1 + b"\n")
    # Every cut, since the framer changes pace once it has seen a sender end frames with an LF.
    for cut in range(len(stream) + 1):
        out, _ = frame_all([stream[:cut], stream[cut:]])
        assert out == [M2, M1, M3, M2, b"a\rb\r", M1], cut


def test_buffered_bytes_stay_bounded_by_max_message() -> None:
    """`buffered` (what the receiver sums over connections) never exceeds max_message plus a
    header, for long unterminated lines and for long octet-counted frames alike."""
    framer = StreamFramer(max_message=1000)
    for chunk in [b"x" * 300] * 20 + [b"\n", b"5000 ", b"y" * 700, b"y" * 700, b"y" * 3600]:
        framer.feed(chunk)
        assert framer.buffered <= 1000 + 12
    assert framer.buffered == 0
