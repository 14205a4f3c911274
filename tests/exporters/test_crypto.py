"""The OBX1 streaming format: round trips, exact range reads, and every kind of damage refused."""

from __future__ import annotations

import io
import os
import random
import struct
from collections.abc import Callable

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from exporters import crypto
from exporters.crypto import SEGMENT_SIZE, TAG_SIZE, DecryptingReader, DecryptionError, EncryptingWriter

KEY = bytes(range(32))
INFO = b'{"key_version": 3, "sha256": "00"}'
HEADER = 4 + 4 + len(INFO) + 32 + 7
CT_SEGMENT = SEGMENT_SIZE + TAG_SIZE


def encrypt(plaintext: bytes, key: bytes = KEY, info: bytes = INFO) -> bytes:
    out = io.BytesIO()
    written = crypto.encrypt_stream(io.BytesIO(plaintext), out, key, info)
    assert written == len(out.getvalue()) == crypto.ciphertext_size(len(plaintext), len(info))
    return out.getvalue()


def reader(blob: bytes, calls: list[tuple[int, int]] | None = None) -> Callable[[int, int], bytes]:
    def read_at(offset: int, length: int) -> bytes:
        if calls is not None:
            calls.append((offset, length))
        return blob[offset:offset + length]
    return read_at


def decrypt_all(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(crypto.decrypt_range(reader(blob), len(blob), key, 0, len(blob)))


def segment(blob: bytes, index: int) -> slice:
    return slice(HEADER + index * CT_SEGMENT, HEADER + (index + 1) * CT_SEGMENT)


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1,
                                  3 * SEGMENT_SIZE, 5 * 1024 * 1024 + 17])
def test_round_trip(size: int) -> None:
    plaintext = os.urandom(size)
    blob = encrypt(plaintext)
    assert blob[:4] == b"OBX1"
    assert crypto.read_info(reader(blob)) == INFO
    assert crypto.plaintext_size(reader(blob), len(blob)) == size
    assert decrypt_all(blob) == plaintext
    assert DecryptingReader(reader(blob), len(blob), KEY).read() == plaintext


def test_same_plaintext_encrypts_differently_each_time() -> None:
    assert encrypt(b"same") != encrypt(b"same")


def test_writer_accepts_writes_of_any_shape() -> None:
    plaintext = os.urandom(4 * SEGMENT_SIZE + 123)
    out = io.BytesIO()
    sizes = random.Random(7).choices([0, 1, 100, SEGMENT_SIZE - 1, SEGMENT_SIZE, 2 * SEGMENT_SIZE + 5], k=40)
    with EncryptingWriter(out, KEY, INFO) as writer:
        pos = 0
        for size in sizes:
            writer.write(memoryview(plaintext)[pos:pos + size])
            pos = min(pos + size, len(plaintext))
        writer.write(plaintext[pos:])
        assert writer.tell() == len(plaintext)
    assert writer.bytes_written == len(out.getvalue())
    assert decrypt_all(out.getvalue()) == plaintext


def test_writer_left_by_an_exception_is_never_sealed() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), EncryptingWriter(out, KEY, INFO) as writer:
        writer.write(b"partial")
        raise RuntimeError("source failed")
    with pytest.raises(DecryptionError):
        decrypt_all(out.getvalue())


PLAINTEXT = random.Random(42).randbytes(5 * SEGMENT_SIZE + 1234)
BLOB = encrypt(PLAINTEXT)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_range_decrypts_to_the_plaintext_slice(data: st.DataObject) -> None:
    near_boundary = st.integers(0, 6).flatmap(
        lambda k: st.integers(max(0, k * SEGMENT_SIZE - 2), k * SEGMENT_SIZE + 2))
    bound = st.one_of(st.integers(0, len(PLAINTEXT) + 10), near_boundary)
    start, stop = sorted((data.draw(bound), data.draw(bound)))
    calls: list[tuple[int, int]] = []
    got = b"".join(crypto.decrypt_range(reader(BLOB, calls), len(BLOB), KEY, start, stop))
    assert got == PLAINTEXT[start:stop]

    # Only the covering segments are read, each exactly once.
    body = [(offset, length) for offset, length in calls if offset >= HEADER]
    read = set()
    for offset, length in body:
        assert (offset - HEADER) % CT_SEGMENT == 0
        first = (offset - HEADER) // CT_SEGMENT
        count = -(-length // CT_SEGMENT)
        assert not read & set(range(first, first + count))
        read |= set(range(first, first + count))
    stop = min(stop, len(PLAINTEXT))
    expected = set(range(start // SEGMENT_SIZE, (stop - 1) // SEGMENT_SIZE + 1)) if start < stop else set()
    assert read == expected


def test_a_range_in_one_segment_reads_only_that_segment() -> None:
    calls: list[tuple[int, int]] = []
    start = 3 * SEGMENT_SIZE + 10
    got = b"".join(crypto.decrypt_range(reader(BLOB, calls), len(BLOB), KEY, start, start + 100))
    assert got == PLAINTEXT[start:start + 100]
    assert calls[-1] == (HEADER + 3 * CT_SEGMENT, CT_SEGMENT)
    assert sum(length for offset, length in calls if offset >= HEADER) == CT_SEGMENT


def test_reader_seeks_and_reads_like_a_file() -> None:
    stream = DecryptingReader(reader(BLOB), len(BLOB), KEY)
    assert stream.seekable() and stream.readable()
    stream.seek(2 * SEGMENT_SIZE - 5)
    assert stream.read(10) == PLAINTEXT[2 * SEGMENT_SIZE - 5:2 * SEGMENT_SIZE + 5]
    assert stream.seek(-7, io.SEEK_END) == len(PLAINTEXT) - 7
    assert stream.read() == PLAINTEXT[-7:]
    assert stream.read(5) == b""
    stream.seek(0)
    assert io.BufferedReader(stream).read() == PLAINTEXT


def test_pyarrow_ipc_stream_through_writer_and_reader() -> None:
    table = pa.table({"id": pa.array(range(150_000), pa.int64()),
                      "name": [f"row {i}" for i in range(150_000)]})
    out = io.BytesIO()
    sink = pa.PythonFile(EncryptingWriter(out, KEY, INFO), mode="w")
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=20_000):
            writer.write_batch(batch)
    sink.close()
    blob = out.getvalue()
    assert len(blob) > 3 * CT_SEGMENT
    result = pa.ipc.open_stream(DecryptingReader(reader(blob), len(blob), KEY)).read_all()
    assert result.equals(table)


# --- damage: every case raises, and nothing from the damaged segment's batch on is yielded -------


def flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:]


def assert_refused(blob: bytes, good_segments: int, key: bytes = KEY) -> None:
    yielded: list[bytes] = []
    with pytest.raises(DecryptionError):
        for chunk in crypto.decrypt_range(reader(blob), len(blob), key, 0, len(blob)):
            yielded.append(chunk)
    whole_batches = good_segments // crypto.READ_SEGMENTS * crypto.READ_SEGMENTS
    assert b"".join(yielded) == PLAINTEXT[:whole_batches * SEGMENT_SIZE]
    with pytest.raises(DecryptionError):
        io.BufferedReader(DecryptingReader(reader(blob), len(blob), key)).read()


SEGMENTS = 6  # PLAINTEXT is 5 full segments and a short final one


@pytest.mark.parametrize("at", [7, 9, HEADER - 39, HEADER - 1], ids=["info-length", "info", "salt", "prefix"])
def test_flipped_header_byte(at: int) -> None:
    assert_refused(flip(BLOB, at), 0)


def test_flipped_magic() -> None:
    damaged = flip(BLOB, 0)
    with pytest.raises(DecryptionError, match="magic"):
        crypto.read_info(reader(damaged))
    assert_refused(damaged, 0)


@pytest.mark.parametrize("within", [0, 1000, CT_SEGMENT - 1], ids=["first-byte", "middle", "tag"])
def test_flipped_byte_in_a_middle_segment(within: int) -> None:
    assert_refused(flip(BLOB, segment(BLOB, 2).start + within), 2)


def test_flipped_byte_in_the_last_tag() -> None:
    assert_refused(flip(BLOB, len(BLOB) - 1), SEGMENTS - 1)


@pytest.mark.parametrize("segments", [1, 3, 5])
def test_truncated_at_a_segment_boundary(segments: int) -> None:
    assert_refused(BLOB[:HEADER + segments * CT_SEGMENT], segments - 1)


@pytest.mark.parametrize(("cut", "good"), [(1, 0), (TAG_SIZE, 0), (100, 3), (CT_SEGMENT - 1, 3)])
def test_truncated_inside_a_segment(cut: int, good: int) -> None:
    # A cut leaving less than a tag fails on size alone, before any segment is read.
    assert_refused(BLOB[:HEADER + 3 * CT_SEGMENT + cut], good)


def test_truncated_to_the_header() -> None:
    assert_refused(BLOB[:HEADER], 0)
    assert_refused(BLOB[:HEADER - 3], 0)


def test_damage_past_the_first_batch_yields_that_batch_whole_then_nothing() -> None:
    plaintext = random.Random(7).randbytes((crypto.READ_SEGMENTS + 4) * SEGMENT_SIZE)
    blob = encrypt(plaintext)
    pieces = list(crypto.decrypt_range(reader(blob), len(blob), KEY, 0, len(blob)))
    assert [len(piece) for piece in pieces] == [crypto.READ_SEGMENTS * SEGMENT_SIZE, 4 * SEGMENT_SIZE]
    damaged = flip(blob, segment(blob, crypto.READ_SEGMENTS + 2).start + 5)
    yielded: list[bytes] = []
    with pytest.raises(DecryptionError, match=f"segment {crypto.READ_SEGMENTS + 2} "):
        for piece in crypto.decrypt_range(reader(damaged), len(damaged), KEY, 0, len(damaged)):
            yielded.append(piece)
    assert yielded == [plaintext[:crypto.READ_SEGMENTS * SEGMENT_SIZE]]


def test_swapped_segments() -> None:
    one, two = BLOB[segment(BLOB, 1)], BLOB[segment(BLOB, 2)]
    swapped = BLOB[:segment(BLOB, 1).start] + two + one + BLOB[segment(BLOB, 2).stop:]
    assert_refused(swapped, 1)


def test_extra_segment_after_the_final_one() -> None:
    assert_refused(BLOB + BLOB[segment(BLOB, 0)], SEGMENTS - 1)
    assert_refused(BLOB + BLOB[-(TAG_SIZE + 1):], SEGMENTS - 1)


def test_a_full_final_segment_cannot_be_extended_by_an_empty_one() -> None:
    plaintext = PLAINTEXT[:2 * SEGMENT_SIZE]
    blob = encrypt(plaintext)
    extended = blob + encrypt(b"")[-TAG_SIZE:]
    with pytest.raises(DecryptionError):
        decrypt_all(extended)


def test_wrong_key() -> None:
    assert_refused(BLOB, 0, key=bytes(32))


def test_empty_file_is_authenticated_too() -> None:
    blob = encrypt(b"")
    with pytest.raises(DecryptionError):
        decrypt_all(blob, key=bytes(32))
    with pytest.raises(DecryptionError):
        DecryptingReader(reader(blob), len(blob), bytes(32)).read()
    with pytest.raises(DecryptionError):
        decrypt_all(flip(blob, len(blob) - 1))


def test_changed_info_breaks_every_segment() -> None:
    other = INFO.replace(b"3", b"4")
    assert len(other) == len(INFO)
    damaged = BLOB[:8] + other + BLOB[8 + len(INFO):]
    assert crypto.read_info(reader(damaged)) == other
    for index in (0, 3, SEGMENTS - 1):
        with pytest.raises(DecryptionError):
            list(crypto.decrypt_range(reader(damaged), len(damaged), KEY,
                                      index * SEGMENT_SIZE, index * SEGMENT_SIZE + 1))


def test_short_read_is_refused() -> None:
    def lying(offset: int, length: int) -> bytes:
        return BLOB[offset:offset + length][:-1] if offset >= HEADER else BLOB[offset:offset + length]
    with pytest.raises(DecryptionError, match="shorter"):
        list(crypto.decrypt_range(lying, len(BLOB), KEY, 0, 10))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt(b"x", key=b"short")
    with pytest.raises(ValueError, match="start"):
        list(crypto.decrypt_range(reader(BLOB), len(BLOB), KEY, 5, 2))
    assert struct.unpack(">I", BLOB[4:8])[0] == len(INFO)
