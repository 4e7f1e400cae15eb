"""Totals without an expensive pass: ``count_lines`` and ``count_csv_records``, cached in the
job table.

Counting reads the object in large binary chunks. ``count_lines`` counts ``b"\\n"`` bytes; a
last line without a trailing newline counts too. ``count_csv_records`` counts the records
``csv.reader`` yields: a line end ends a record only outside a double-quoted field (RFC 4180
lets a quoted field span lines), and a quote opens one only at the start of a field. With
numpy installed (the ``s3`` extra brings it) both run vectorized, ``count_lines`` close to
``wc -l``; without it, ``bytes`` methods do the same job several times slower. Compressed
objects (``.gz``, ``.bz2``, ``.xz``; for ``s3://`` whatever smart-open infers from the
extension) are counted after decompression; a local ``.zst``, ``.lz4``, ``.br`` or
``.snappy`` file raises UnreadableInputError rather than be counted as raw bytes.

Each result is cached in the job table (see :mod:`metricskit.job_table`), under
``linecount#<uri>`` or ``csvrecords#<uri>``, with the object's version: its ETag on S3,
``size:mtime_ns`` locally. A replaced object has another version, so it is counted again. The
cache is best effort: when the table cannot be read or written, or no DynamoDB client can be
built (no AWS region), the count is still returned (and a warning logged).
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias
from urllib.parse import urlsplit
from urllib.request import url2pathname

from metricskit import config, job_table
from metricskit.aws_clients import dynamodb_client, s3_client
from metricskit.errors import ConfigurationError, UnreadableInputError
from metricskit.validation import check_table_name

if TYPE_CHECKING:
    import boto3
    import numpy as np
    import numpy.typing as npt
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger("metricskit")

DEFAULT_CHUNK_SIZE: Final = 4 * 1024 * 1024
"""Bytes per read: large enough that per-call overhead vanishes, small enough for the CPU
cache (4 MiB measured fastest with numpy; 8-16 MiB reads were a few percent slower)."""

_DECOMPRESSORS: Final[dict[str, ModuleType]] = {".gz": gzip, ".bz2": bz2, ".xz": lzma}
_UNREADABLE_COMPRESSION: Final = frozenset((".zst", ".zstd", ".lz4", ".br", ".snappy", ".sz"))
"""Compressed local files the counter cannot decompress (smart-open, which a worker may read
them with, does with the codec installed): counted as raw bytes they would give a wrong total,
so they are refused."""
_NEWLINE: Final = 0x0A
_QUOTE: Final = 0x22
_NON_NEGATIVE_INTEGER: Final = re.compile(r"[0-9]+")
"""A cached count as it must read (DynamoDB keeps numbers as decimal text)."""

Chunk: TypeAlias = bytes | bytearray
"""What the counters read: ``bytes`` and ``bytearray`` both have ``find``/``count``/``split``
and the buffer protocol numpy reads without a copy."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class _CacheKind:
    """Which count a cache item holds: its ``item_type`` and its key for a URI."""

    item_type: str
    key: Callable[[str], str]
    what: str


_LINE_COUNT: Final = _CacheKind(job_table.TYPE_LINECOUNT, job_table.linecount_key, "line count")
_CSV_RECORD_COUNT: Final = _CacheKind(
    job_table.TYPE_CSVRECORDS, job_table.csvrecords_key, "CSV record count"
)


def count_lines(
    uri: str | os.PathLike[str],
    *,
    table: str | None = None,
    dynamodb: DynamoDBClient | None = None,
    s3: S3Client | None = None,
    session: boto3.session.Session | None = None,
    use_cache: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Lines in a local file or an ``s3://bucket/key`` object (decompressed), cached by version.

    >>> total = metricskit.count_lines("s3://my-bucket/input/rows.csv.gz")   # doctest: +SKIP
    >>> metricskit.Job("load-1", total=total)                                 # doctest: +SKIP

    ``table`` (default: ``METRICSKIT_JOB_TABLE``; unset means no cache) is the job table; a
    ``table`` that is not a DynamoDB table name raises ConfigurationError (the variable only
    warns and is not used). ``dynamodb``/``s3`` clients (or a boto3 ``session``) are built
    when not given; when no DynamoDB client can be built (no AWS region) the count goes
    without the cache, with a warning. An ``s3://`` URI needs an S3 client, so there it
    raises ConfigurationError instead.
    """
    source = _source(uri, "count_lines", s3=s3, session=session, chunk_size=chunk_size)
    return _count_cached(
        source,
        _count_newlines,
        _LINE_COUNT,
        table=table,
        dynamodb=dynamodb,
        session=session,
        use_cache=use_cache,
    )


def count_csv_records(
    uri: str | os.PathLike[str],
    *,
    header: bool = True,
    table: str | None = None,
    dynamodb: DynamoDBClient | None = None,
    s3: S3Client | None = None,
    session: boto3.session.Session | None = None,
    use_cache: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """CSV records in a local file or an ``s3://bucket/key`` object, minus the header row.

    >>> total = metricskit.count_csv_records("s3://my-bucket/input/rows.csv.gz")  # doctest: +SKIP
    >>> metricskit.Job("load-1", total=total)                                     # doctest: +SKIP

    The count is what ``csv.reader`` (default dialect, the file opened with ``newline=""``,
    a UTF-8 byte order mark dropped as ``utf-8-sig`` does; no field size limit) yields: a
    line end (``\\n``, ``\\r\\n`` or a bare ``\\r``) ends a record unless it is inside a
    quoted field; a ``"`` opens a quoted field only at the start of a field (after a comma, a
    line end or the start of the file), elsewhere it is text (``12" pipe``, ``1, "a``);
    inside one ``""`` is an escaped quote. A last record without a line end counts, blank
    lines count (``csv.reader`` yields ``[]`` for them), and so does a quoted field still open
    at the end. Bytes are counted, so the encoding must keep ``,``, ``"``, ``\\r`` and ``\\n``
    single bytes that no other character contains (UTF-8, Latin-1, cp1252...; not UTF-16).

    ``header=True`` (the default) leaves out the first record; the result is never negative.
    The cache item (``csvrecords#<uri>``) holds every record, header included, so either
    ``header`` reads it. Other arguments are those of :func:`count_lines`.
    """
    if not isinstance(header, bool):
        raise ConfigurationError(f"header must be True or False, got {header!r}")
    source = _source(uri, "count_csv_records", s3=s3, session=session, chunk_size=chunk_size)
    records = _count_cached(
        source,
        _count_csv_records,
        _CSV_RECORD_COUNT,
        table=table,
        dynamodb=dynamodb,
        session=session,
        use_cache=use_cache,
    )
    return max(0, records - 1) if header else records


# -- sources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """An object to count: its cache URI, its version, and its decompressed chunks."""

    uri: str
    version: str
    chunks: Callable[[], Iterator[Chunk]]


def _source(
    uri: str | os.PathLike[str],
    caller: str,
    *,
    s3: S3Client | None,
    session: boto3.session.Session | None,
    chunk_size: int,
) -> _Source:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(
            f"chunk_size must be a positive int number of bytes, got {chunk_size!r}"
        )
    text = os.fspath(uri) if isinstance(uri, str | os.PathLike) else None
    if not isinstance(text, str):
        raise ConfigurationError(
            f"uri must be a local path (str or os.PathLike), a file:// or an s3:// URI string, "
            f"got {uri!r}"
        )
    if text.startswith("s3://"):
        bucket, key = _split_s3(text)
        client = s3 or s3_client(session)
        etag = _s3_version(client, bucket, key)
        return _Source(text, etag, lambda: _s3_chunks(text, client, chunk_size, etag))
    if "://" in text and not text.startswith("file://"):
        raise ConfigurationError(
            f"{caller} reads local paths, file:// and s3:// URIs; got {text!r}"
        )
    path = os.path.abspath(_local_path(text))
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _UNREADABLE_COMPRESSION:
        raise UnreadableInputError(
            f"{caller}: cannot decompress {suffix} files ({path}); local files are counted "
            f"uncompressed or as {', '.join(_DECOMPRESSORS)}"
        )
    stat = os.stat(path)
    return _Source(
        path, f"{stat.st_size}:{stat.st_mtime_ns}", lambda: _file_chunks(path, chunk_size)
    )


# What gzip, bz2 and lzma raise for a truncated or corrupt stream: a truncated gzip or xz
# EOFError, gzip's BadGzipFile, zlib and lzma their own errors, bz2 a plain OSError (so only
# a local file, whose reads are all the decompressor's, counts any OSError as one).
_DECOMPRESSION_ERRORS: Final = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)
_LOCAL_DECOMPRESSION_ERRORS: Final = (*_DECOMPRESSION_ERRORS, OSError)


@contextmanager
def _decompressing(
    name: str, errors: tuple[type[BaseException], ...] = _DECOMPRESSION_ERRORS
) -> Iterator[None]:
    """Turn a decompressor's failure into :class:`UnreadableInputError` naming the input."""
    try:
        yield
    except UnreadableInputError:
        raise
    except errors as exc:
        raise UnreadableInputError(
            f"{name}: cannot decompress it to its end ({type(exc).__name__}: {exc}); "
            "is it truncated or corrupt?"
        ) from exc


def _read_chunks(stream: Readable, chunk_size: int) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


def _file_chunks(path: str, chunk_size: int) -> Iterator[Chunk]:
    decompressor = _DECOMPRESSORS.get(os.path.splitext(path)[1].lower())
    if decompressor is not None:
        with (
            _decompressing(path, _LOCAL_DECOMPRESSION_ERRORS),
            decompressor.open(path, "rb") as stream,
        ):
            yield from _read_chunks(stream, chunk_size)
        return
    buffer = bytearray(chunk_size)
    # Unbuffered readinto one reused buffer: no copy through a BufferedReader, no allocation.
    # The full buffer itself is handed on (callers must not keep it: the next read overwrites
    # it), so bytes methods run on it without a copy; only a short last read is copied.
    with open(path, "rb", buffering=0) as raw:
        while got := raw.readinto(buffer):
            yield buffer if got == chunk_size else bytes(memoryview(buffer)[:got])


def _local_path(text: str) -> str:
    """A local path, or the path of a ``file://`` URI (percent-escapes decoded, as
    ``Path.as_uri()`` writes them: ``file:///data/my%20rows.csv``)."""
    if not text.startswith("file://"):
        return text
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ConfigurationError(f"file:// URIs must name a local file, got {text!r}")
    return url2pathname(parts.path)


def _s3_chunks(uri: str, s3: S3Client, chunk_size: int, etag: str) -> Iterator[bytes]:
    try:
        from smart_open import open as smart_open
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "s3:// URIs need smart-open: install metricskit's s3 extra "
            "(pip install '.[s3]' in a checkout)"
        ) from exc
    # Every GET asks for the version whose ETag names the cached count: an object replaced
    # mid-read fails the count (412) instead of caching the new object's count under the old
    # ETag.
    transport = {"client": s3, "client_kwargs": {"S3.Client.get_object": {"IfMatch": f'"{etag}"'}}}
    with _decompressing(uri), smart_open(uri, "rb", transport_params=transport) as stream:
        yield from _read_chunks(stream, chunk_size)


# -- counting -----------------------------------------------------------------------------


def count_newlines_in(stream: Readable, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Lines in a binary stream: newlines, plus one for a last line without a newline."""
    return _count_newlines(_read_chunks(stream, chunk_size))


def count_csv_records_in(stream: Readable, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """CSV records in a binary stream, the header included (see :func:`count_csv_records`)."""
    return _count_csv_records(_read_chunks(stream, chunk_size))


def _count_newlines(chunks: Iterable[Chunk]) -> int:
    count_newlines = _counters().newlines
    lines = 0
    last = _NEWLINE
    for chunk in chunks:
        lines += count_newlines(chunk)
        last = chunk[-1]
    return lines + (last != _NEWLINE)


def _count_csv_records(chunks: Iterable[Chunk]) -> int:
    """CSV records as ``csv.reader`` (default dialect, ``newline=""``) yields them.

    The reader's rule: a line ends at ``\\n``, ``\\r\\n`` or a bare ``\\r``, and ends the
    record unless it is inside a quoted field. A quote opens a quoted field only at the start
    of a field (after a comma, a line end or the start of the file); anywhere else outside
    one it is an ordinary character (``12" pipe``, ``1, "a``). Inside a quoted field ``""``
    is an escaped quote and a single ``"`` closes it; what follows a closing quote up to the
    next comma or line end is unquoted (further quotes there are ordinary too). So only quote
    *runs* change the state: a run of ``k`` quotes at the start of a field flips it ``k``
    times; a run anywhere else leaves a quoted field when ``k`` is odd and changes nothing
    otherwise (an ordinary character outside, escaped quotes inside). A run cut by the end of
    a chunk is carried over whole to the next one (its length parity, 1 or 2 quotes).
    """
    counters = _counters()
    records = 0
    in_quotes = False  # inside a quoted field after everything read so far
    before = _NEWLINE  # the byte before what comes next: the start of a file starts a field
    carry = b""  # a quote run that ended the previous chunk, not applied yet
    for chunk in _without_bom(chunks):
        if not carry and chunk.find(b'"') < 0:
            # Most chunks of most files: no quote, so every line end ends a record (none does
            # inside a quoted field), counted as fast as count_lines counts newlines.
            if not in_quotes:
                records += _line_ends(chunk, before, counters.newlines)
            before = chunk[-1]
            continue
        body, carry = _split_trailing_run(carry + chunk if carry else chunk)
        if body:
            ends, in_quotes = counters.record_ends(body, in_quotes, before)
            records += ends
            before = body[-1]
    last = before
    if carry:  # the file ends with a quote run
        in_quotes = _after_run(in_quotes, before, len(carry))
        last = _QUOTE
    # A last record without a line end counts, and so does an unclosed quoted field at the
    # end: csv.reader yields both.
    return records + (last not in _LINE_END_BYTES or in_quotes)


_CR: Final = 0x0D
_COMMA: Final = 0x2C
_LINE_END_BYTES: Final = (_NEWLINE, _CR)
_FIELD_START_BYTES: Final = (_COMMA, _NEWLINE, _CR)
"""A quote right after one of these (or at the start of the file) opens a quoted field."""
_UTF8_BOM: Final = b"\xef\xbb\xbf"


def _without_bom(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """The chunks without a leading UTF-8 byte order mark: the worker reads UTF-8 as
    ``utf-8-sig``, so a quote right after the mark starts a quoted field there too."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        if len(head) + len(chunk) < len(_UTF8_BOM) and _UTF8_BOM.startswith(head + chunk):
            head += chunk  # tiny chunks: the mark may span several
            continue
        first = head + chunk if head else chunk
        if first[: len(_UTF8_BOM)] == _UTF8_BOM:
            first = first[len(_UTF8_BOM) :]
        if first:
            yield first
        break
    else:
        return  # the whole input was (a prefix of) the mark: no record
    yield from iterator


def _line_ends(chunk: Chunk, before: int, count_newlines: Callable[[Chunk], int]) -> int:
    """Line ends in a chunk with no quote: ``\\n``, ``\\r\\n`` and a bare ``\\r``, given the
    byte before it (a ``\\r\\n`` split between two chunks is one)."""
    ends = count_newlines(chunk)
    if chunk.find(b"\r") >= 0:  # rare: a byte search finds out at memchr speed
        ends += chunk.count(b"\r") - chunk.count(b"\r\n")
    if before == _CR and chunk[0] == _NEWLINE:
        ends -= 1
    return ends


def _after_run(in_quotes: bool, before: int, length: int) -> bool:
    """Whether a run of ``length`` quotes after the byte ``before`` leaves a quoted field."""
    if before in _FIELD_START_BYTES:
        return in_quotes != bool(length & 1)
    return in_quotes and not length & 1


def _split_trailing_run(data: Chunk) -> tuple[Chunk, bytes]:
    """``data`` without the quote run that ends it, and that run as 1 or 2 quotes (only its
    length's parity matters), to prepend to the next chunk."""
    if data[-1] != _QUOTE:
        return data, b""
    kept = len(data.rstrip(b'"'))
    run = len(data) - kept
    if not run:
        return data, b""
    return data[:kept], b'"' if run & 1 else b'""'


@dataclass(frozen=True)
class _Counters:
    """Per-chunk counters. ``record_ends(data, in_quotes, before)``: the records ended in
    ``data`` (which does not end with a quote: see :func:`_split_trailing_run`), given
    whether it starts inside a quoted field and the byte before it; and whether it ends
    inside one."""

    newlines: Callable[[Chunk], int]
    record_ends: Callable[[Chunk, bool, int], tuple[int, bool]]


def _counters() -> _Counters:
    """The fastest available counters: vectorized with numpy when it is installed.

    Looked up on every count rather than once, so that a test can hide numpy.
    """
    try:
        import numpy  # noqa: F401 - only whether it imports
    except ImportError:
        return _Counters(_newlines_python, _record_ends_python)
    return _numpy_counters()


def _numpy_counters() -> _Counters:
    import numpy as np

    shifts = [np.uint64(bits) for bits in (1, 2, 4, 8, 16, 32)]
    top_bit = np.uint64(63)
    one = np.uint64(1)
    all_ones = np.uint64(0xFFFF_FFFF_FFFF_FFFF)

    def newlines(chunk: Chunk) -> int:
        return int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE))

    def bit_words(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint64]:
        """The mask 64 bytes to a word: byte i of the chunk is bit i % 64 of word i // 64."""
        packed = np.packbits(mask, bitorder="little")
        padding = -len(packed) % 8  # zero bits: neither quotes nor line ends
        if padding:
            packed = np.concatenate((packed, np.zeros(padding, dtype=np.uint8)))
        return packed.view("<u8")

    if hasattr(np, "bitwise_count"):  # numpy >= 2.0

        def bits_set(words: npt.NDArray[np.uint64]) -> int:
            return int(np.bitwise_count(words).sum())

    else:  # numpy 1.26 has no bitwise_count: unpack the bits and count them

        def bits_set(words: npt.NDArray[np.uint64]) -> int:
            return int(np.count_nonzero(np.unpackbits(words.view(np.uint8))))

    def line_end_mask(data: npt.NDArray[np.uint8], has_cr: bool, before: int) -> Any:
        """Where lines end: every \\r, and every \\n not right after a \\r."""
        ends = data == _NEWLINE
        if has_cr:
            cr = data == _CR
            ends[1:] &= ~cr[:-1]
            ends |= cr
        if before == _CR and data[0] == _NEWLINE:
            ends[0] = False
        return ends

    def record_ends(chunk: Chunk, in_quotes: bool, before: int) -> tuple[int, bool]:
        # Fast and usually exact: the parity of the quotes so far says whether each byte is
        # inside a quoted field, 64 bytes per word operation (simdjson's approach). It is
        # exact unless a quote it takes as opening a field is not at a field start (a stray
        # quote in an unquoted field: ``12" pipe``, ``1, "a``), which is checked in the same
        # word operations; such a chunk is counted again with the exact rule (``exact``).
        data = np.frombuffer(chunk, dtype=np.uint8)
        has_cr = chunk.find(b"\r") >= 0  # rare: found at memchr speed
        ends = line_end_mask(data, has_cr, before)
        quote_bits = bit_words(data == _QUOTE)
        end_bits = bit_words(ends)
        inside = quote_bits.copy()
        # A prefix XOR within each word: bit i becomes the parity of the quotes at bits 0..i.
        for shift in shifts:
            inside ^= inside << shift
        # Bit 63 is then each word's own parity; a running XOR of those is the parity through
        # the end of each word, and the value before a word says whether it starts inside.
        parity_after = np.bitwise_xor.accumulate(inside >> top_bit)
        parity_after ^= np.uint64(in_quotes)
        starts_inside = np.concatenate(([np.uint64(in_quotes)], parity_after[:-1]))
        inside ^= starts_inside * all_ones
        # The quotes after which the parity is inside open a field: each must follow a
        # comma, a line end or a quote (an escaped one), or be the first byte of the file.
        field_starts = bit_words(data == _COMMA) | end_bits | quote_bits
        if has_cr:  # a \r\n's \n is no line end, but a quote after it starts a field
            field_starts |= bit_words(data == _NEWLINE)
        follows_field_start = field_starts << one
        follows_field_start[1:] |= field_starts[:-1] >> top_bit
        follows_field_start[0] |= np.uint64(before in _FIELD_START_BYTES)
        if np.any(quote_bits & inside & ~follows_field_start):
            return _exact_record_ends(data, ends, in_quotes, before)
        return bits_set(end_bits & ~inside), bool(parity_after[-1])

    return _Counters(newlines, record_ends)


def _exact_record_ends(
    data: npt.NDArray[np.uint8], ends: Any, in_quotes: bool, before: int
) -> tuple[int, bool]:
    """The reader's rule run by run (see :func:`_count_csv_records`) with numpy, for ``data``
    (with a quote; not ending with one) and its line ends ``ends`` (a bool mask)."""
    import numpy as np

    end_at = np.flatnonzero(ends)
    quote_at = np.flatnonzero(data == _QUOTE)
    # Runs of quotes: where each starts, whether its length is odd, the byte before it.
    previous = data[quote_at - 1]
    if quote_at[0] == 0:
        previous[0] = before
    first = np.flatnonzero(previous != _QUOTE)
    starts = quote_at[first]
    odd = (np.diff(first, append=quote_at.size) & 1).astype(bool)
    before_run = previous[first]
    field_start = (before_run == _COMMA) | (before_run == _NEWLINE) | (before_run == _CR)
    # Each run maps the state x (inside a quoted field) to (x AND keep) XOR flip: at a
    # field start keep=1, flip=odd; elsewhere an odd run resets (keep=0, flip=0) and an
    # even one is the identity. After run j: x0 XOR flips(1..j) if no reset came before,
    # else flips(r+1..j) since the last reset r.
    flips = np.bitwise_xor.accumulate((field_start & odd).astype(np.uint8))
    reset = ~field_start & odd
    last_reset = np.maximum.accumulate(np.where(reset, np.arange(reset.size), -1))
    since = np.where(last_reset >= 0, flips[np.maximum(last_reset, 0)], np.uint8(in_quotes))
    inside = flips ^ since
    # A line end is inside a quoted field as the last run before it left the state.
    runs_before = np.searchsorted(starts, end_at)
    inside_at = np.where(runs_before > 0, inside[runs_before - 1], np.uint8(in_quotes))
    return int(end_at.size - np.count_nonzero(inside_at)), bool(inside[-1])


def _newlines_python(chunk: Chunk) -> int:
    return chunk.count(b"\n")


_QUOTE_RUN: Final = re.compile(rb'"+')
_CLASSES: Final = bytes(
    {_QUOTE: _QUOTE, _COMMA: ord("c"), _NEWLINE: ord("n"), _CR: ord("r")}.get(b, ord("o"))
    for b in range(256)
)
"""A byte's class for the pure-Python counter: quote, comma, newline, \\r or other (o)."""


def _record_ends_python(chunk: Chunk, in_quotes: bool, before: int) -> tuple[int, bool]:
    # As the numpy counter: the parity of the quotes first, with bytes methods at C speed,
    # and the exact rule run by run only for a chunk where a quote the parity takes as
    # opening a field is not at a field start. Classes first, then a quote right after an
    # ordinary byte becomes ' (it cannot open a field), a \r\n one line end, and only
    # quotes and line ends are kept.
    marks = chunk.translate(_CLASSES)
    if marks.find(b"r") >= 0:
        marks = marks.replace(b"rn", b"n")
    # (A same-length replacement: measured twice as fast as o" -> ' here.)
    marks = marks.replace(b'o"', b"o'").translate(None, b"oc")
    quotes = marks.translate(None, b"nr")
    openers = quotes[1::2] if in_quotes else quotes[::2]
    if b"'" in openers or (
        not in_quotes and chunk[:1] == b'"' and before not in _FIELD_START_BYTES
    ):
        return _exact_record_ends_python(chunk, in_quotes, before)
    # Two adjacent quotes leave the parity as it was: dropping them leaves few quotes in most
    # files; the pieces between the others are alternately outside and inside a field.
    pieces = marks.replace(b"'", b'"').replace(b'""', b"").split(b'"')
    outside = b"".join(pieces[1::2] if in_quotes else pieces[::2])
    ends = len(outside)  # only line ends are left: n and r
    if before == _CR and not in_quotes and chunk[:1] == b"\n":
        ends -= 1
    return ends, in_quotes != bool(len(quotes) & 1)


def _exact_record_ends_python(chunk: Chunk, in_quotes: bool, before: int) -> tuple[int, bool]:
    # The reader's rule run by run: the regular expression finds the quote runs at C speed,
    # and the line ends between two runs are counted with bytes.count.
    ends = 0
    start = 0
    for run in _QUOTE_RUN.finditer(chunk):
        if not in_quotes:
            ends += _segment_line_ends(chunk, start, run.start(), before)
        if run.start():
            before = chunk[run.start() - 1]
        in_quotes = _after_run(in_quotes, before, run.end() - run.start())
        start = run.end()
        before = _QUOTE
    if not in_quotes:
        ends += _segment_line_ends(chunk, start, len(chunk), before)
    return ends, in_quotes


def _segment_line_ends(chunk: Chunk, start: int, end: int, before: int) -> int:
    """Line ends in ``chunk[start:end]`` (no quote in it), ``before`` the byte before it."""
    if start >= end:
        return 0
    ends = chunk.count(b"\n", start, end)
    if chunk.find(b"\r", start, end) >= 0:
        ends += chunk.count(b"\r", start, end) - chunk.count(b"\r\n", start, end)
    if before == _CR and chunk[start] == _NEWLINE:
        ends -= 1
    return ends


# -- versions and the cache -----------------------------------------------------------------


def _count_cached(
    source: _Source,
    count: Callable[[Iterable[Chunk]], int],
    kind: _CacheKind,
    *,
    table: str | None,
    dynamodb: DynamoDBClient | None,
    session: boto3.session.Session | None,
    use_cache: bool,
) -> int:
    # The argument is the programmer's: a bad name raises (as Job(job_table=) does). The
    # variable is the deployment's: a bad one warns and means no cache (config.env_job_table).
    table_name = check_table_name(table) if table is not None else config.env_job_table()
    if not use_cache or table_name is None:
        return count(source.chunks())
    try:
        client = dynamodb or dynamodb_client(session)
    except ConfigurationError as exc:  # no AWS region, no boto3: the cache is best effort
        logger.warning("metricskit: no %s cache in %s (%s); counting", kind.what, table_name, exc)
        return count(source.chunks())
    cached = _cached_count(client, table_name, kind, source)
    if cached is not None:
        return cached
    counted = count(source.chunks())
    _store_count(client, table_name, kind, source, counted)
    return counted


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ConfigurationError(f"an S3 URI looks like s3://bucket/key, got {uri!r}")
    return bucket, key


def _s3_version(s3: S3Client, bucket: str, key: str) -> str:
    """The object's ETag: it changes whenever the object is replaced."""
    return s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')


def _cached_count(
    client: DynamoDBClient, table: str, kind: _CacheKind, source: _Source
) -> int | None:
    try:
        reply = client.get_item(
            TableName=table,
            Key={job_table.HASH_KEY: {"S": kind.key(source.uri)}},
            ConsistentRead=True,
        )
    except Exception as exc:
        logger.warning("metricskit: %s cache %s unreadable (%s); counting", kind.what, table, exc)
        return None
    item = reply.get("Item")
    if not item or item.get(job_table.VERSION, {}).get("S") != source.version:
        return None
    counted = item.get(job_table.LINES, {}).get("N")
    if counted is None:
        return None
    if not _NON_NEGATIVE_INTEGER.fullmatch(counted):
        # Anyone who can write the table can write this item: a count that cannot be one
        # (1.5, -7, 1e3) is not believed, the source is counted again and the item replaced.
        logger.warning(
            "metricskit: ignoring the cached %s of %s (%r is not a non-negative integer); counting",
            kind.what,
            source.uri,
            counted,
        )
        return None
    return int(counted)


def _store_count(
    client: DynamoDBClient, table: str, kind: _CacheKind, source: _Source, counted: int
) -> None:
    try:
        client.put_item(
            TableName=table,
            Item={
                job_table.HASH_KEY: {"S": kind.key(source.uri)},
                job_table.ITEM_TYPE: {"S": kind.item_type},
                job_table.LINES: {"N": str(counted)},
                job_table.VERSION: {"S": source.version},
                job_table.COUNTED_AT: {"N": f"{time.time():.3f}"},
            },
        )
    except Exception as exc:
        logger.warning("metricskit: could not cache the %s in %s (%s)", kind.what, table, exc)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "count_csv_records",
    "count_csv_records_in",
    "count_lines",
    "count_newlines_in",
]
