"""Where a large delivered CSV file can be cut, so that its parse runs as parts side by side.

A cut is a newline with an even number of quote characters before it. When every quote in the file
opens or closes a quoted value, that is a newline outside any quoted value: a record's end. A part
from one cut to the next then holds whole records, and the newlines before it say the physical
line it starts on. The copy already reads every byte for the sha256; ``LineCuts`` watches those
bytes go by, so finding the cuts costs no read of its own.

Whether every quote opens or closes a value is known only by parsing, so each part's parse checks
it (``staging._check_part``): no parsed value, nor the header, may hold a quote character. A part that starts
where the whole file's parse would be outside any quoted value (part 0 does) and passes that check
holds only quotes that open and close values, an even number of them, so it ends outside one too,
and the next part starts right. A file that fails the check anywhere (a literal quote, as in
``27"``, or a quote written twice inside a value) is parsed whole after all
(``deliveries.stage_files``), as is one with any anomaly. A file that is compressed, in a wide
encoding (UTF-16/32: a newline is two or four bytes), that ends a line with a lone carriage return
(a record end the parser sees and the newline count does not), or that is smaller than a part is
never cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.dumping.sniff import compression_of


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
        self._ends_in_cr = False  # the last chunk ended with a carriage return
        self._next = every  # look for the first newline at or after this offset

    def update(self, chunk: bytes) -> None:
        if not self.cuttable:
            return
        compressed = self._offset == 0 and compression_of(chunk) is not None
        lone_crs = chunk.count(b"\r") - chunk.count(b"\r\n") - chunk.endswith(b"\r")
        if compressed or lone_crs or (self._ends_in_cr and not chunk.startswith(b"\n")):
            self.cuttable = False
            return
        self._ends_in_cr = chunk.endswith(b"\r")
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
        if not self.cuttable or self._ends_in_cr or not cuts:
            return []
        starts = [(0, 0), *cuts]
        ends = [at for at, _ in cuts] + [size]
        return [
            Part(i, at, end, lines + 1) for i, ((at, lines), end) in enumerate(zip(starts, ends, strict=True))
        ]
