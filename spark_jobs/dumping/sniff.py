"""What a delivered file is, from its first bytes rather than its name: its compression (gzip, bzip2,
zstd), then what the decompressed bytes look like (Parquet, text with a UTF-16/32 byte-order mark,
binary, or text). A suffix is only a hint: one that disagrees with the bytes is named."""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO

import pyarrow as pa

# name -> (magic bytes, suffix)
COMPRESSIONS = {
    "gzip": (b"\x1f\x8b", ".gz"),
    "bzip2": (b"BZh", ".bz2"),  # and a block size digit, 1-9
    "zstd": (b"\x28\xb5\x2f\xfd", ".zst"),
}
# UTF-32's marks first: UTF-32LE's starts with UTF-16LE's.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
HEAD_BYTES = 4096  # of the decompressed content, enough to tell text from binary
RAW_HEAD_BYTES = 64 << 10  # of the file as stored, read once: its compression and, mostly, HEAD_BYTES


@dataclass(frozen=True)
class Sniffed:
    compression: str | None  # by the magic bytes
    encoding: str | None  # from a UTF-16/32 byte-order mark; None: the configured one applies
    not_text: str | None  # what the content looks like when it is not delimited text
    warnings: list[str] = field(default_factory=list)  # what a person should know about the file


def compression_by_suffix(name: str) -> str | None:
    return next((c for c, (_, suffix) in COMPRESSIONS.items() if name.endswith(suffix)), None)


def decompressed(raw: IO[bytes], compression: str | None) -> IO[bytes]:
    """The file's content; a corrupt stream raises OSError or EOFError when it is read."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        return io.BufferedReader(pa.CompressedInputStream(raw, "zstd"))  # type: ignore[arg-type,return-value]
    return raw


def compression_of(first: bytes) -> str | None:
    """The compression a file's first bytes name by their magic, if any."""
    magic = first[:4]
    compression = next((c for c, (m, _) in COMPRESSIONS.items() if magic.startswith(m)), None)
    if compression == "bzip2" and not magic[3:4].isdigit():
        return None  # text that happens to start with "BZh"
    return compression


def is_wide(encoding: str) -> bool:
    """UTF-16 and UTF-32 text holds NUL bytes; the encodings CSV is usually in do not."""
    return encoding.lower().replace("-", "").replace("_", "").startswith(("utf16", "utf32"))


def sniff(
    open_source: Callable[[], AbstractContextManager[IO[bytes]]],
    name: str,
    configured_encoding: str,
    declared: str = "csv",
) -> Sniffed:
    """Read the first bytes of the file (and of its content, decompressed) to say what it is: one
    read of its first ``RAW_HEAD_BYTES`` (one GET on S3) unless its compressed head is too short to
    decompress ``HEAD_BYTES`` from, as a bzip2 block can be."""
    with open_source() as raw:
        first = raw.read(RAW_HEAD_BYTES)
    compression = compression_of(first)
    warnings = []
    by_suffix = compression_by_suffix(name)
    if by_suffix != compression:
        says = f"its suffix says {by_suffix}" if by_suffix else "its suffix names no compression"
        warnings.append(f"{says}, but its bytes are {compression or 'not compressed'}: read as such")
    unreadable = (OSError, EOFError, zlib.error, pa.ArrowInvalid)
    try:
        head = decompressed(io.BytesIO(first), compression).read(HEAD_BYTES)
    except unreadable:
        head = None
    try:
        if len(first) == RAW_HEAD_BYTES and (head is None or len(head) < HEAD_BYTES):
            with open_source() as raw:  # the stored head was too short to decompress enough from
                head = decompressed(raw, compression).read(HEAD_BYTES)
    except unreadable:
        head = None
    if head is None:
        return Sniffed(compression, None, None, warnings)  # the parser names the corrupt stream
    encoding = next((e for bom, e in BYTE_ORDER_MARKS if head.startswith(bom)), None)
    if encoding and not is_wide(configured_encoding):
        warnings.append(
            f"{encoding.upper()} text (byte-order mark), while csv.encoding is {configured_encoding!r}: "
            f'decoded as {encoding.upper()}; set csv.encoding = "{encoding}" to declare it'
        )
    not_text = None
    if head.startswith(b"PAR1"):
        not_text = "a Parquet file"
    elif encoding is None and not is_wide(configured_encoding) and head.count(0) * 10 > len(head):
        halves = max(head[0::2].count(0), head[1::2].count(0))
        not_text = (
            'UTF-16 text without a byte-order mark (set csv.encoding = "utf-16-le" or "utf-16-be")'
            if halves * 10 > len(head) * 4
            else "binary data (NUL bytes)"
        )
    if declared == "parquet":
        if not_text != "a Parquet file":
            warnings.append(f"looks like {not_text or 'text'}, not a Parquet file: one rejected record")
    elif not_text:
        what = {"csv": "CSV", "jsonl": "JSON Lines"}.get(declared, declared)
        warnings.append(f"looks like {not_text}, not {what} text: not staged, its bytes stay in the raw zone")
    return Sniffed(compression, encoding, not_text, warnings)
