"""JSON Lines (``stem.jsonl``) and one JSON document (``stem.json``), streamed chunk by chunk.

``stem.jsonl`` holds one compact JSON object per row, UTF-8, each line ended by ``\\n``, keys
in schema order. ``stem.json`` is ``{"dataset": "<stem>", "rows": [...]}`` with one row object
per line; it is written as it streams, never built in memory.

Conventions (RFC 8259):

* NULL is ``null``; booleans ``true``/``false``; integers are JSON numbers with all their 64
  bits (read them with a parser that keeps big integers, as Python's does);
* floats: shortest digits that read back to the same float, always with a point or an exponent
  (``1.0``, ``-0.0``, ``1e+20``); NaN and ±infinity have no JSON spelling and are ``null``;
* decimals are strings holding the exact value with its full scale (``"12.50"``): as a JSON
  number most parsers would round it through a binary float;
* strings are strings, unicode kept as it is (emoji, right-to-left text); escaped are only the
  quote, the backslash and control characters (RFC 8259), and U+0085, U+2028, U+2029, which
  some line splitters (Python's ``str.splitlines``) take for line ends;
* a string column whose field metadata carries ``offboard.json = true`` holds JSON text (a
  json/jsonb column) and is embedded as JSON, not quoted; its line breaks (whitespace, in valid
  JSON) become spaces so that a row stays one line. The text is trusted, not parsed: sources
  mark only columns their database keeps as JSON. A stored JSON ``null`` then reads like NULL
  (CSV and Parquet keep them apart);
* timestamps, dates, times, intervals and binary are strings rendered as ``encoding`` says
  (ISO 8601, ISO 8601 durations, base64); lists are arrays, structs objects.

Speed: each column of a chunk becomes JSON text in a few pyarrow.compute calls, one
``binary_join_element_wise`` assembles the lines, and their data buffer is written as it lies;
two threads render the next chunks meanwhile. ``write_jsonl_and_json`` writes both files from
one rendering (the bundle asks for both). About 1M rows/s (embedded JSON payload) and
0.8M rows/s (payload as an escaped string) for the 8-column benchmark shape on two cores.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from exporters.formats.encoding import (
    NULL_TEXT,
    PLAIN,
    FileSet,
    OutputFile,
    Storing,
    base64_text,
    chunks,
    concat,
    decimal_text,
    interval_text,
    is_binary_like,
    is_list_like,
    is_span,
    is_text,
    string_data,
    system_allocator,
    temporal_text,
)

LOOKAHEAD = 2  # chunks being rendered while one is written
LINE, ITEM = ("", "\n"), (",\n", "")  # JSON Lines; an item of the document's array (comma first)
DOCUMENT_TAIL = b"\n]}\n"
JSON_TEXT_KEY = b"offboard.json"  # field metadata: this string column holds JSON text
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_RARE_ESCAPES = {chr(code): _SHORT.get(chr(code), f"\\u{code:04x}")
                 for code in [*range(32), 0x85, 0x2028, 0x2029]}


def write_jsonl(reader: pa.RecordBatchReader, dest_dir: Path, stem: str, *,
                storing: Storing = PLAIN) -> list[OutputFile]:
    """``stem.jsonl``: one JSON object per row."""
    lines = RowEncoder(reader.schema, LINE)
    with system_allocator(), FileSet(dest_dir, storing) as files:
        sink = files.open(f"{stem}.jsonl", "jsonl")
        for (data,), rows in lines.encode_all(reader):
            sink.write(data)
            sink.rows += rows
    return files.outputs


def write_json(reader: pa.RecordBatchReader, dest_dir: Path, stem: str, *,
               storing: Storing = PLAIN) -> list[OutputFile]:
    """``stem.json``: one document, ``{"dataset": stem, "rows": [...]}``, a row per line."""
    rows = RowEncoder(reader.schema, ITEM)
    with system_allocator(), FileSet(dest_dir, storing) as files:
        sink = files.open(f"{stem}.json", "json")
        sink.write(_document_head(stem))
        for (data,), count in rows.encode_all(reader):
            sink.write(data if sink.rows else data.slice(1))  # no comma before the first row
            sink.rows += count
        sink.write(DOCUMENT_TAIL)
    return files.outputs


def write_jsonl_and_json(reader: pa.RecordBatchReader, dest_dir: Path, stem: str, *,
                         storing: Storing = PLAIN) -> list[OutputFile]:
    """``stem.jsonl`` and ``stem.json`` in one pass: each row is rendered once and framed twice,
    byte for byte what ``write_jsonl`` and ``write_json`` write (half the work of both)."""
    rows = RowEncoder(reader.schema, LINE, ITEM)
    with system_allocator(), FileSet(dest_dir, storing) as files:
        lines = files.open(f"{stem}.jsonl", "jsonl")
        document = files.open(f"{stem}.json", "json")
        document.write(_document_head(stem))
        for (line_data, item_data), count in rows.encode_all(reader):
            lines.write(line_data)
            document.write(item_data if document.rows else item_data.slice(1))
            lines.rows += count
            document.rows += count
        document.write(DOCUMENT_TAIL)
    return files.outputs


def _document_head(stem: str) -> bytes:
    return f'{{"dataset": {json.dumps(stem, ensure_ascii=False)}, "rows": ['.encode()


class RowEncoder:
    """A schema's rows as JSON objects, each framed by ``(before, after)``, back to back; with
    several frames, each row is rendered once and framed once per frame."""

    def __init__(self, schema: pa.Schema, *frames: tuple[str, str]) -> None:
        self.keys = [json.dumps(field.name, ensure_ascii=False) + ":" for field in schema]
        self.json_text = [is_json_text(field) for field in schema]
        self.frames = frames

    def encode_all(self, reader: pa.RecordBatchReader) -> Iterator[tuple[list[pa.Buffer], int]]:
        """(bytes per frame, rows) of each chunk, in order. Two threads render the next chunks
        while the caller writes and hashes this one: pyarrow.compute releases the GIL (about
        1.5x faster on two cores). The reader is only read from this thread; at most LOOKAHEAD
        chunks wait, each of at most ``encoding.CHUNK_BYTES`` of input, so memory stays a few
        tens of MB."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending: deque[tuple[Future[list[pa.Buffer]], int]] = deque()
            for chunk in chunks(reader):
                pending.append((pool.submit(self.encode, chunk), chunk.num_rows))
                if len(pending) > LOOKAHEAD:
                    future, rows = pending.popleft()
                    yield future.result(), rows
            while pending:
                future, rows = pending.popleft()
                yield future.result(), rows

    def encode(self, batch: pa.RecordBatch) -> list[pa.Buffer]:
        """The chunk's rows once per frame. One frame is put on in the same concatenation as the
        values; with several, the objects are built once and each frame is a cheap extra pass."""
        if batch.num_columns == 0:
            return [pa.py_buffer(f"{before}{{}}{after}".encode() * batch.num_rows)
                    for before, after in self.frames]
        before, after = self.frames[0] if len(self.frames) == 1 else ("", "")
        parts: list[pa.Array | str] = []
        for index, column in enumerate(batch.columns):
            parts += [(before + "{" if index == 0 else ",") + self.keys[index],
                      json_values(column, self.json_text[index]).fill_null("null")]
        objects = concat(*parts, "}" + after)
        if len(self.frames) == 1:
            return [string_data(objects)]
        del parts
        return [string_data(concat(*(text for text in (before, objects, after) if text != "")))
                for before, after in self.frames]


def is_json_text(field: pa.Field) -> bool:
    return (field.metadata or {}).get(JSON_TEXT_KEY) == b"true"


def json_values(array: pa.Array, json_text: bool = False) -> pa.Array:
    """Each value as JSON text, in a string array; null where the value is null (the caller
    says how a null reads). ``json_text``: the strings are JSON already, embed them as they are."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    for accepts, render in _RENDERERS:
        if accepts(array.type):
            return render(array, json_text)
    raise TypeError(f"no JSON rendering for Arrow type {array.type}")


def json_strings(array: pa.Array) -> pa.Array:
    """Strings as JSON string literals. Only values holding a character to escape are touched:
    quotes and backslashes by split and join (twice as fast as replace_substring), the rare
    control and separator characters by one replace pass each over the few values that hold them."""
    escape = pc.match_substring_regex(array, r'[\x00-\x1f"\\\x{85}\x{2028}\x{2029}]').fill_null(False)
    if pc.any(escape).as_py():
        subset = array.filter(escape)
        for char in ("\\", '"'):  # the backslash first: no escape is escaped again
            if pc.any(pc.match_substring(subset, char)).as_py():
                subset = pc.binary_join(pc.split_pattern(subset, char), "\\" + char)
        rare = pc.match_substring_regex(subset, r"[\x00-\x1f\x{85}\x{2028}\x{2029}]")
        if pc.any(rare).as_py():
            subset = pc.replace_with_mask(subset, rare, _escape_rare(subset.filter(rare)))
        array = pc.replace_with_mask(array, escape, subset)
    return concat('"', array, '"')


def _escape_rare(array: pa.Array) -> pa.Array:
    """Line breaks and tabs, common in text, first; the rest only if any is left."""
    for char in "\n\r\t":
        array = pc.replace_substring(array, char, _RARE_ESCAPES[char])
    if pc.any(pc.match_substring_regex(array, r"[\x00-\x1f\x{85}\x{2028}\x{2029}]")).as_py():
        for char, escaped in _RARE_ESCAPES.items():
            array = pc.replace_substring(array, char, escaped)
    return array


def _texts(array: pa.Array, json_text: bool) -> pa.Array:
    text = array.cast(pa.string())
    if not json_text:
        return json_strings(text)
    # line breaks in valid JSON are whitespace between tokens (raw ones are invalid in strings)
    if pc.any(pc.match_substring_regex(text, r"[\r\n]")).as_py():
        return pc.replace_substring_regex(text, r"[\r\n]", " ")
    return text


def _floats(array: pa.Array, _json_text: bool) -> pa.Array:
    """Shortest round-trip digits, ``1.0`` not ``1`` so it reads back as a float; non-finite null."""
    if pa.types.is_float16(array.type):
        array = array.cast(pa.float32())
    text = pc.replace_substring_regex(array.cast(pa.string()), r"^(-?\d+)$", r"\1.0")
    return pc.if_else(pc.is_finite(array), text, NULL_TEXT)


def _lists(array: pa.Array, json_text: bool) -> pa.Array:
    """All items of the chunk rendered at once, then joined per list (a chunk's items fit in
    32-bit offsets, so large and fixed-size lists and list views become plain lists)."""
    plain = pa.list_(array.type.value_field)
    if pa.types.is_list_view(array.type) or pa.types.is_large_list_view(array.type):
        array = pa.array(array.to_pylist(), plain)  # pyarrow 26 casts views with nulls wrongly
    elif not pa.types.is_list(array.type):
        array = array.cast(plain)
    offsets = array.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    items = json_values(array.values.slice(first, last - first), json_text).fill_null("null")
    lists = pa.ListArray.from_arrays(pc.subtract(offsets, first), items, mask=array.is_null())
    return concat("[", pc.binary_join(lists, ","), "]")


def _objects(array: pa.Array, _json_text: bool) -> pa.Array:
    if array.type.num_fields == 0:
        return pc.if_else(array.is_valid(), "{}", NULL_TEXT)
    parts: list[pa.Array | str] = []
    for index, field in enumerate(array.type):
        parts += [("{" if index == 0 else ",") + json.dumps(field.name, ensure_ascii=False) + ":",
                  json_values(array.field(index), is_json_text(field)).fill_null("null")]
    return pc.if_else(array.is_valid(), concat(*parts, "}"), NULL_TEXT)


def _quoted(render: Callable[[pa.Array], pa.Array]) -> Callable[[pa.Array, bool], pa.Array]:
    return lambda array, _json_text: concat('"', render(array), '"')


_RENDERERS: tuple[tuple[Callable[[pa.DataType], bool], Callable[[pa.Array, bool], pa.Array]], ...] = (
    (pa.types.is_null, lambda array, _: pa.nulls(len(array), pa.string())),
    (is_text, _texts),
    (lambda kind: pa.types.is_boolean(kind) or pa.types.is_integer(kind),
     lambda array, _: array.cast(pa.string())),
    (pa.types.is_floating, _floats),
    (pa.types.is_decimal, _quoted(decimal_text)),
    (is_span, _quoted(interval_text)),  # before is_temporal, which takes them in too
    (pa.types.is_temporal, _quoted(temporal_text)),
    (is_binary_like, _quoted(base64_text)),
    (is_list_like, _lists),
    (pa.types.is_struct, _objects),
)
