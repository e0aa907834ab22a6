"""Split syslog byte streams into messages: RFC 6587 framing for TCP, line splitting for UDP.

Both octet-counting and non-transparent (LF/NUL-terminated) framing are detected per message.
"""

from __future__ import annotations

_LF = ord("\n")
# Octet counts are capped at 9 digits: anything longer cannot be a sane frame length, so such a
# prefix is read as the start of a non-transparent message instead.
_MAX_COUNT_DIGITS = 9


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
        self._buf = bytearray()
        # Bytes of an oversized octet-counted frame that are still to arrive and be dropped.
        self._skip = 0
        # True while dropping the tail of an oversized non-transparent message up to its terminator.
        self._discard_line = False
        # Bytes at the start of the buffer already known to hold no terminator, so a message that
        # arrives in many small pieces is not rescanned from its start each time.
        self._scanned = 0

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if not data:
            return out
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if self._discard_line:
                term = _find_term(buf, pos, end)
                if term < 0:
                    pos = end
                    break
                self._discard_line = False
                pos = term + 1
                continue
            first = buf[pos]
            if 0x31 <= first <= 0x39:
                nxt = self._octet_frame(buf, pos, end, out)
                if nxt is None:
                    break
                if nxt >= 0:
                    pos = nxt
                    continue
            term = _find_term(buf, pos + self._scanned, end)
            if term < 0:
                if end - pos > self.max_message + 1:
                    # +1 leaves room for a CR that may turn out to precede the LF.
                    out.append(bytes(buf[pos : pos + self.max_message]))
                    self.truncated += 1
                    self._discard_line = True
                    self._scanned = 0
                    pos = end
                else:
                    self._scanned = end - pos
                break
            self._scanned = 0
            stop = term - 1 if term > pos and buf[term - 1] == 0x0D else term
            if stop > pos:
                if stop - pos > self.max_message:
                    stop = pos + self.max_message
                    self.truncated += 1
                out.append(bytes(buf[pos:stop]))
            pos = term + 1
        del buf[:pos]
        return out

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
        self._skip = 0
        self._discard_line = False
        self._scanned = 0
        return out

    def _octet_frame(self, buf: bytearray, pos: int, end: int, out: list[bytes]) -> int | None:
        """Consume an octet-counted frame at `pos`.

        Returns the position after it, None when more bytes are needed, -1 when the bytes at
        `pos` are not an octet-count header.
        """
        sp = buf.find(b" ", pos, min(end, pos + _MAX_COUNT_DIGITS + 1))
        if sp < 0:
            if end - pos <= _MAX_COUNT_DIGITS and buf[pos:end].isdigit():
                return None
            return -1
        if not buf[pos:sp].isdigit():
            return -1
        count = int(buf[pos:sp])
        start = sp + 1
        avail = end - start
        if count <= self.max_message:
            if avail < count:
                return None
            out.append(bytes(buf[start : start + count]))
            return start + count
        if avail < self.max_message:
            return None
        out.append(bytes(buf[start : start + self.max_message]))
        self.truncated += 1
        self._skip = count - self.max_message
        return start + self.max_message


def _find_term(buf: bytearray, start: int, end: int) -> int:
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
