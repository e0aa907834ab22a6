"""Split syslog byte streams into messages: RFC 6587 framing for TCP, line splitting for UDP.

Both octet-counting and non-transparent (LF/NUL-terminated) framing are detected per message.
An LF (or CRLF) ending an octet-counted frame is framing, not message: rsyslog's and syslog-ng's
RFC 5424 templates end every message with one and count it in the frame's length.
"""

from __future__ import annotations

import re

_LF = ord("\n")
# Octet counts are capped at 9 digits: anything longer cannot be a sane frame length, so such a
# prefix is read as the start of a non-transparent message instead.
_MAX_COUNT_DIGITS = 9
# A line starting with a non-zero digit may be an octet-count header, so bulk line splitting stops
# in front of it and lets the header check decide.
_DIGIT_LINE = re.compile(rb"\n[1-9]")
# Parsed octet-count headers (digits and the space) up to this count, shared by all connections: a
# dict lookup replaces validating and converting the digits, and at most ~1 MB is ever held.
_COUNTS_MAX = 9999
_COUNTS: dict[bytes, int] = {}

# How `_octet_run` stopped: at a byte the main loop must look at again, at a message that is not an
# octet-counted frame (so it is non-transparent), or at a frame that needs more bytes.
_NEXT, _NOT_OCTET, _WAIT = 0, 1, 2


class StreamFramer:
    """Incremental RFC 6587 framer for one TCP connection.

    `feed()` returns every message completed by the new bytes; `flush()` returns what is left
    when the peer closes. Messages longer than `max_message` are cut to that length, the rest is
    dropped without being buffered, and `truncated` counts them. Empty non-transparent messages
    (blank lines, CRLF pairs split by a NUL) are skipped because they carry nothing.
    """

    def __init__(self, max_message: int = 64 * 1024) -> None:
        if max_message < 1:
            raise ValueError("max_message must be positive")
        self.max_message = max_message
        self.truncated = 0
        # The start of a message still arriving; empty while dropping (`_skip`, `_discard_line`).
        self._buf = bytearray()
        # When > 0, `_buf` holds an octet-counted frame that can be cut once the buffer is this long,
        # so a frame arriving in many small pieces is only appended to until then.
        self._need = 0
        # True when `_buf` holds a non-transparent message without a terminator, so small pieces of
        # a long line are checked for a terminator without rescanning its start.
        self._open_line = False
        # True once this sender ended an octet-counted frame with an LF (rsyslog, syslog-ng):
        # from then on frames are stripped as they are cut rather than in a pass after.
        self._lf_frames = False
        # Bytes of an oversized octet-counted frame that are still to arrive and be dropped.
        self._skip = 0
        # True while dropping the tail of an oversized non-transparent message up to its terminator.
        self._discard_line = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the messages completed by `data`, in order."""
        if not data:
            return []
        if type(data) is not bytes:
            # Slices of the buffer are the returned messages, and callers expect bytes.
            data = bytes(data)
        pos = 0
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            pos = self._skip
            self._skip = 0
        if self._discard_line:
            term = _find_term(data, pos, len(data))
            if term < 0:
                return []
            self._discard_line = False
            pos = term + 1
        pending = self._buf
        if pending:
            if self._need:
                if len(pending) + len(data) < self._need:
                    pending += data
                    return []
            elif self._open_line and data.find(b"\n") < 0 and data.find(b"\0") < 0:
                pending += data
                if len(pending) > self.max_message + 1:
                    # +1 leaves room for a CR that may turn out to precede the LF.
                    return [self._cut_pending_line()]
                return []
            # Pending bytes only exist after a feed that ended mid-message, so `pos` is still 0.
            data = b"".join((pending, data))
            self._buf = bytearray()
            self._need = 0
            self._open_line = False
        out: list[bytes] = []
        end = len(data)
        # NULs are rare; without them, LF-framed runs can be split in bulk up to the last LF.
        has_nul = data.find(b"\0", pos) >= 0
        last_lf = -1 if has_nul else data.rfind(b"\n", pos)
        while pos < end:
            kind = _NOT_OCTET
            if 0x31 <= data[pos] <= 0x39:
                pos, kind = self._octet_run(data, pos, out)
                if kind == _WAIT:
                    self._buf = bytearray(data[pos:])
                    return out
                if kind == _NEXT:
                    continue
            pos = self._lines(data, pos, last_lf, has_nul, out)
        return out

    def _octet_run(self, buf: bytes, pos: int, out: list[bytes]) -> tuple[int, int]:
        """Cut back-to-back octet-counted frames starting at `pos`, each without a final LF or CRLF.

        Returns where it stopped and why (`_NEXT`, `_NOT_OCTET`, `_WAIT`); on `_WAIT` the frame at
        the returned position is incomplete and `_need` says how long it must get.
        """
        first = len(out)
        if self._lf_frames:
            truncated = self.truncated
            stop, kind = self._frames(buf, pos, out, True)
            if buf.find(b"\r", pos, stop) >= 0:
                # `_frames` cut final LFs only; a CR before one is rare (one memchr rules it out),
                # and then the run is cut again the exact way (same input, same state after).
                del out[first:]
                self.truncated = truncated
                stop, kind = self._frames(buf, pos, out, False)
                _strip_final_lf(out, first)
            elif not all(out[first:]):  # a frame of only an LF carries nothing, like a blank line
                out[first:] = [m for m in out[first:] if m]
            return stop, kind
        stop, kind = self._frames(buf, pos, out, False)
        # Until a frame ending in LF is seen, one memchr over the whole run replaces a test per
        # frame, so senders that add none (most direct ones) pay nothing for the relays that do.
        if len(out) > first and buf.find(b"\n", pos, stop) >= 0 and _strip_final_lf(out, first):
            self._lf_frames = True
        return stop, kind

    def _frames(self, buf: bytes, pos: int, out: list[bytes], lf: bool) -> tuple[int, int]:
        """`_octet_run`, cutting a final LF off each frame itself if `lf` (this sender adds them)."""
        end = len(buf)
        get = _COUNTS.get
        append = out.append
        limit = self.max_message
        # Header width (digits and space) of the previous frame: neighbouring frames mostly have
        # counts with as many digits, so one slice and one dict lookup usually parse the header.
        width = 4
        while True:
            count = get(buf[pos : pos + width])
            if count is not None:
                start = pos + width
                stop = start + count
                if count <= limit and stop <= end:
                    append(buf[start : stop - 1] if lf and buf[stop - 1] == 0x0A else buf[start:stop])
                    pos = stop
                    continue
            # Everything else: another header width, a frame that is incomplete or oversized, the
            # end of the buffer, or a message that is not octet-counted.
            if pos >= end or not 0x31 <= buf[pos] <= 0x39:
                return pos, _NEXT
            sp = buf.find(b" ", pos, pos + _MAX_COUNT_DIGITS + 1)
            if sp < 0:
                if end - pos <= _MAX_COUNT_DIGITS and buf[pos:end].isdigit():
                    return pos, _WAIT  # a header cut short: more digits or the space may follow
                return pos, _NOT_OCTET
            head = buf[pos:sp]
            if not head.isdigit():
                return pos, _NOT_OCTET
            count = int(head)
            start = sp + 1
            width = start - pos
            if count <= _COUNTS_MAX:
                _COUNTS[buf[pos:start]] = count
            if count <= limit:
                stop = start + count
                if stop > end:
                    self._need = stop - pos
                    return pos, _WAIT
                append(buf[start : stop - 1] if lf and buf[stop - 1] == 0x0A else buf[start:stop])
                pos = stop
                continue
            if end - start < limit:
                self._need = start - pos + limit
                return pos, _WAIT
            pos = start + limit
            append(buf[start:pos])
            self.truncated += 1
            rest = count - limit
            if rest > end - pos:
                self._skip = rest - (end - pos)
                return end, _NEXT
            pos += rest

    def _lines(self, buf: bytes, pos: int, last_lf: int, has_nul: bool, out: list[bytes]) -> int:
        """Cut non-transparent messages from `pos` (known not to be octet-counted) until one that is,
        or may be; returns where it stopped.

        A message with no terminator yet becomes the pending buffer (or is cut if oversized).
        """
        end = len(buf)
        limit = self.max_message
        while True:
            term = _find_term(buf, pos, end) if has_nul else last_lf if last_lf >= pos else -1
            if term < 0:
                if end - pos > limit + 1:
                    # +1 leaves room for a CR that may turn out to precede the LF.
                    out.append(buf[pos : pos + limit])
                    self.truncated += 1
                    self._discard_line = True
                else:
                    self._buf = bytearray(buf[pos:])
                    self._open_line = True
                return end
            if not has_nul:
                term = buf.find(b"\n", pos)
                if term < last_lf and not 0x31 <= buf[term + 1] <= 0x39:
                    return self._line_block(buf, pos, term, last_lf, out)
            # One message: the last complete one, one followed by a message that starts with a
            # digit, or any message in a buffer holding NULs (bulk splitting only knows LF).
            stop = term - 1 if term > pos and buf[term - 1] == 0x0D else term
            if stop > pos:
                if stop - pos > limit:
                    stop = pos + limit
                    self.truncated += 1
                out.append(buf[pos:stop])
            pos = term + 1
            # Lines that merely start with digits (timestamps, counters) stay in this loop.
            if pos >= end or (0x31 <= buf[pos] <= 0x39 and _may_be_header(buf, pos)):
                return pos

    def _line_block(self, buf: bytes, pos: int, first_lf: int, last_lf: int, out: list[bytes]) -> int:
        """Split the LF-terminated messages from `pos` up to `last_lf` in bulk, stopping in front
        of the first one after `first_lf` that starts with a non-zero digit; returns where it stopped.
        """
        stop = last_lf + 1
        lines = _split_lines(buf if pos == 0 and stop == len(buf) else buf[pos:stop])
        # A message that starts with a non-zero digit may be an octet-counted frame, which can hold
        # LFs, so the block must end in front of it. Syslog lines start with `<` or a letter, both
        # above `9`, so one C-level min() over the lines usually proves there is none.
        if lines and min(lines)[0] <= 0x39:
            m = _DIGIT_LINE.search(buf, first_lf, stop)
            if m is not None:
                stop = m.start() + 1
                lines = _split_lines(buf[pos:stop])
        limit = self.max_message
        if stop - pos > limit and _maybe_longer(buf, pos, stop, limit, len(lines)):
            for i, line in enumerate(lines):
                if len(line) > limit:
                    lines[i] = line[:limit]
                    self.truncated += 1
        out += lines
        return stop

    def _cut_pending_line(self) -> bytes:
        """Cut the oversized pending non-transparent message and drop the rest of it."""
        head = bytes(self._buf[: self.max_message])
        self.truncated += 1
        self._discard_line = True
        self._buf = bytearray()
        self._open_line = False
        return head

    @property
    def buffered(self) -> int:
        """Bytes held for a message still arriving (at most about `max_message`)."""
        return len(self._buf)

    def flush(self) -> list[bytes]:
        """Return the unterminated message left at connection close and reset the framer."""
        buf = self._buf
        out: list[bytes] = []
        if buf and not self._skip and not self._discard_line:
            payload = buf
            sp = buf.find(b" ", 0, _MAX_COUNT_DIGITS + 1)
            if sp > 0 and 0x31 <= buf[0] <= 0x39 and buf[:sp].isdigit():
                # An octet-counted frame cut short by the close: keep what did arrive.
                payload = buf[sp + 1 :]
            elif payload.endswith(b"\r"):
                payload = payload[:-1]
            if len(payload) > self.max_message:
                payload = payload[: self.max_message]
                self.truncated += 1
            if payload:
                out.append(bytes(payload))
        self._buf = bytearray()
        self._need = 0
        self._skip = 0
        self._discard_line = False
        self._open_line = False
        return out


def _strip_final_lf(out: list[bytes], first: int) -> bool:
    """Remove a final LF or CRLF from the messages `out[first:]`, and messages left empty by it
    (a frame of just a line end carries nothing, like a blank line); whether any had one."""
    found = empty = False
    for i in range(first, len(out)):
        m = out[i]
        if m[-1] == _LF:
            m = m[:-2] if m[-2:] == b"\r\n" else m[:-1]
            out[i] = m
            found = True
            empty = empty or not m
    if empty:
        out[first:] = [m for m in out[first:] if m]
    return found


def _split_lines(block: bytes) -> list[bytes]:
    """The non-empty messages of `block`, which ends with an LF, without their terminating CR."""
    if b"\r" in block:
        lines = block.split(b"\r\n")
        if len(lines) - 1 != block.count(b"\n"):
            # Not every LF follows a CR: strip the CRs that do precede one, keep the others.
            lines = block.replace(b"\r\n", b"\n").split(b"\n")
    else:
        lines = block.split(b"\n")
    del lines[-1]  # the empty piece after the final LF
    if not all(lines):
        lines = [line for line in lines if line]
    return lines


def _maybe_longer(buf: bytes, start: int, stop: int, limit: int, n_lines: int) -> bool:
    """Whether a line of `buf[start:stop]` may be longer than `limit` (CRs included).

    Any such line covers one of the sample points `limit + 1` bytes apart, so a couple of finds per
    point replace a length check per line when lines are short next to the limit.
    """
    if (stop - start) // (limit + 1) > n_lines // 4:
        return True  # more points than lines: let the caller check each line
    for q in range(start + limit, stop, limit + 1):
        line_start = max(buf.rfind(b"\n", start, q) + 1, start)
        if buf.find(b"\n", q, stop) - line_start > limit:
            return True
    return False


def _may_be_header(buf: bytes, pos: int) -> bool:
    """Whether the message at `pos`, which starts with a non-zero digit, is or may still turn out to
    be an octet-counted frame."""
    sp = buf.find(b" ", pos, pos + _MAX_COUNT_DIGITS + 1)
    if sp < 0:
        return len(buf) - pos <= _MAX_COUNT_DIGITS and buf[pos:].isdigit()
    return buf[pos:sp].isdigit()


def _find_term(buf: bytes, start: int, end: int) -> int:
    """Index of the first LF or NUL at or after `start`, or -1."""
    lf = buf.find(b"\n", start, end)
    # Bounding the NUL search by the LF keeps the common no-NUL case to one pass per message.
    nul = buf.find(b"\0", start, lf if lf >= 0 else end)
    return nul if nul >= 0 else lf


def split_datagram(data: bytes) -> list[bytes]:
    """Split one UDP datagram into messages.

    A datagram normally holds one message; trailing LF/CR/NUL bytes are dropped, and a datagram
    holding several LF-separated lines (some relays batch them) yields one message per non-empty
    line, each without a trailing CR.
    """
    data = data.rstrip(b"\r\n\0")
    if not data:
        return []
    if _LF not in data:
        return [data]
    out: list[bytes] = []
    for line in data.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            out.append(line)
    return out
