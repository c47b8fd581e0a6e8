"""Where a large delivered CSV file can be cut, so that its parse runs as parts side by side.

A newline ends a record unless it lies inside a quoted value, and with a quote inside a value
written twice (RFC 4180, what the parsers read) that is exactly when an odd number of quote
characters come before it. A part that starts just after a record's newline and ends just after
another holds whole records, and the newlines before it say the physical line it starts on. The
copy already reads every byte for the sha256; ``LineCuts`` watches those bytes go by, so finding
the cuts costs no read of its own. A file that quotes otherwise (a stray quote) fails the fast
parse of the part that holds it, and is then parsed whole (``deliveries.stage_files``). A file that
is compressed, in a wide encoding (UTF-16/32: a newline is two or four bytes), or smaller than a
part is never cut: it parses whole, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.dumping.sniff import COMPRESSIONS


@dataclass(frozen=True)
class Part:
    """Bytes ``start`` to ``end`` of a delivered file (whole lines); its first line is ``first_line``
    (from 1), and part 0 holds the header."""

    index: int
    start: int
    end: int
    first_line: int


class LineCuts:
    """Collects a file's cuts from its bytes in order: the first record start after every ``every``
    bytes, with how many lines (newlines) come before it."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.cuttable = True
        self.cuts: list[tuple[int, int]] = []  # (byte offset of a line's start, lines before it)
        self._offset = self._lines = self._quotes = 0
        self._next = every  # look for the first newline at or after this offset

    def update(self, chunk: bytes) -> None:
        if not self.cuttable:
            return
        if self._offset == 0 and any(chunk.startswith(magic) for magic, _ in COMPRESSIONS.values()):
            self.cuttable = False
            return
        end = self._offset + len(chunk)
        newline, quotes, counted = -1, self._quotes, 0  # quotes before chunk[counted]
        while self._next < end:
            newline = chunk.find(b"\n", max(newline + 1, self._next - self._offset))
            if newline < 0:
                break  # the record goes on into the next chunk
            quotes, counted = quotes + chunk.count(b'"', counted, newline), newline
            if quotes % 2:
                continue  # inside a quoted value
            cut = self._offset + newline + 1
            self.cuts.append((cut, self._lines + chunk.count(b"\n", 0, newline + 1)))
            self._next = cut + self.every
        self._lines += chunk.count(b"\n")
        self._quotes += chunk.count(b'"')
        self._offset = end

    def parts(self, size: int) -> list[Part]:
        """The file's parts (none: it parses whole)."""
        cuts = [(at, lines) for at, lines in self.cuts if at < size]
        if not self.cuttable or not cuts:
            return []
        starts = [(0, 0), *cuts]
        ends = [at for at, _ in cuts] + [size]
        return [
            Part(i, at, end, lines + 1) for i, ((at, lines), end) in enumerate(zip(starts, ends, strict=True))
        ]
