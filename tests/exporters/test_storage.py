"""Storage backends against real things: a temp directory, and moto's S3 server in a subprocess.

No in-process S3 mocks: every S3 call crosses HTTP to ``python -m moto.server``. What was sent is
observed with botocore's own event hooks (Range headers, which parts were uploaded).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from exporters import storage as storage_module
from exporters.storage import MIN_PART_SIZE, LocalStorage, S3Storage, Storage, open_storage

NAME = "exports/12/bundle.zip"


@pytest.fixture
def s3(bucket: str) -> S3Storage:
    storage = open_storage(f"s3://{bucket}/tenant-a/", part_size=MIN_PART_SIZE)
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    return request.getfixturevalue("s3")


def make_file(directory: Path, data: bytes, name: str = "source.bin") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def open_multipart_uploads(storage: S3Storage) -> list[dict[str, Any]]:
    return storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])


# --- both backends -------------------------------------------------------------------------------


def test_both_backends_implement_the_protocol(storage: Storage) -> None:
    assert isinstance(storage, Storage)


def test_publish_then_read_back(storage: Storage, tmp_path: Path) -> None:
    data = payload(100_000)
    source = make_file(tmp_path / "work", data)
    assert not storage.exists(NAME)
    storage.publish(NAME, source)
    assert storage.exists(NAME)
    assert storage.size(NAME) == len(data)
    with storage.open(NAME) as handle:
        assert handle.read(10) == data[:10]  # sequential, in pieces
        assert handle.read() == data[10:]
    assert not source.exists(), "publish takes ownership of the source file"
    assert not storage.exists("exports/12/other.zip")


def test_publish_replaces_an_existing_object_whole(storage: Storage, tmp_path: Path) -> None:
    storage.publish(NAME, make_file(tmp_path / "one", b"first version, longer than the second"))
    storage.publish(NAME, make_file(tmp_path / "two", b"second"))
    with storage.open(NAME) as handle:
        assert handle.read() == b"second"


def test_empty_object(storage: Storage, tmp_path: Path) -> None:
    storage.publish(NAME, make_file(tmp_path / "work", b""))
    assert storage.exists(NAME)
    assert storage.size(NAME) == 0
    assert storage.read_at(NAME, 0, 10) == b""


@pytest.mark.parametrize(("offset", "length", "expected"), [
    pytest.param(0, 10, slice(0, 10), id="start"),
    pytest.param(4_000, 1_234, slice(4_000, 5_234), id="middle"),
    pytest.param(9_990, 10, slice(9_990, 10_000), id="end"),
    pytest.param(9_995, 100, slice(9_995, 10_000), id="running-past-end-is-clamped"),
    pytest.param(10_000, 10, slice(0, 0), id="at-end-is-empty"),
    pytest.param(50_000, 10, slice(0, 0), id="past-end-is-empty"),
    pytest.param(123, 0, slice(0, 0), id="zero-length"),
])
def test_read_at(storage: Storage, tmp_path: Path, offset: int, length: int, expected: slice) -> None:
    data = payload(10_000)
    storage.publish(NAME, make_file(tmp_path / "work", data))
    assert storage.read_at(NAME, offset, length) == data[expected]


def test_read_at_refuses_negative_numbers(storage: Storage, tmp_path: Path) -> None:
    storage.publish(NAME, make_file(tmp_path / "work", b"abc"))
    with pytest.raises(ValueError, match="negative"):
        storage.read_at(NAME, -1, 2)
    with pytest.raises(ValueError, match="negative"):
        storage.read_at(NAME, 0, -2)


def test_missing_object(storage: Storage) -> None:
    assert not storage.exists(NAME)
    with pytest.raises(FileNotFoundError):
        storage.size(NAME)
    with pytest.raises(FileNotFoundError):
        storage.open(NAME)
    with pytest.raises(FileNotFoundError):
        storage.read_at(NAME, 0, 10)
    with pytest.raises(FileNotFoundError):
        storage.read_at(NAME, 0, 0)


def test_delete_is_idempotent(storage: Storage, tmp_path: Path) -> None:
    storage.publish(NAME, make_file(tmp_path / "work", b"bundle"))
    storage.delete(NAME)
    assert not storage.exists(NAME)
    storage.delete(NAME)
    storage.delete("exports/never/was.zip")


def test_delete_prefix_removes_one_tree_only(storage: Storage, tmp_path: Path) -> None:
    names = ["exports/12/bundle.zip", "exports/12/parts/a.arrows", "exports/12/parts/b.arrows",
             "exports/120/bundle.zip", "exports/1/bundle.zip", "exports/12.zip"]
    for index, name in enumerate(names):
        storage.publish(name, make_file(tmp_path / str(index), name.encode()))
    assert storage.delete_prefix("exports/12") == 3
    assert [name for name in names if storage.exists(name)] == [
        "exports/120/bundle.zip", "exports/1/bundle.zip", "exports/12.zip"]
    assert storage.delete_prefix("exports/12/") == 0  # already gone; trailing slash allowed
    assert storage.delete_prefix("exports/12.zip") == 1  # a single object is its own prefix
    assert storage.delete_prefix("nothing/here") == 0
    assert storage.exists("exports/120/bundle.zip")


BAD_NAMES = ["", "/", "/etc/passwd", "../outside", "exports/../../etc", "exports//12", "exports/12/",
             "./exports", "exports/./12", "exports\\12", "exports/\x0012"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_rejected_everywhere(storage: Storage, tmp_path: Path, name: str) -> None:
    source = make_file(tmp_path / "work", b"data")
    with pytest.raises(ValueError, match="invalid storage name"):
        storage.publish(name, source)
    assert source.read_bytes() == b"data"
    for call in (storage.open, storage.exists, storage.size, storage.delete):
        with pytest.raises(ValueError, match="invalid storage name"):
            call(name)
    with pytest.raises(ValueError, match="invalid storage name"):
        storage.read_at(name, 0, 1)
    if name != "exports/12/":  # a trailing slash is fine for a prefix
        with pytest.raises(ValueError, match="invalid storage name"):
            storage.delete_prefix(name)


# --- local only ----------------------------------------------------------------------------------


def test_local_failed_publish_leaves_no_temp_file_and_keeps_old_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.publish(NAME, make_file(tmp_path / "one", b"version one"))
    source = make_file(tmp_path / "two", b"version two")

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_module.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        storage.publish(NAME, source)
    monkeypatch.undo()
    assert sorted(path.name for path in (tmp_path / "root" / "exports" / "12").iterdir()) == ["bundle.zip"]
    assert storage.read_at(NAME, 0, 100) == b"version one"
    assert source.read_bytes() == b"version two", "the caller gets its file back"


def test_local_publish_across_filesystems_copies_then_removes_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "root")
    source = make_file(tmp_path / "work", payload(70_000))
    real_rename = os.rename

    def cross_device(src: object, dst: object) -> None:
        if Path(str(src)) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(storage_module.os, "rename", cross_device)
    storage.publish(NAME, source)
    assert storage.read_at(NAME, 0, 70_000) == payload(70_000)
    assert not source.exists()
    assert [path.name for path in (tmp_path / "root" / "exports" / "12").iterdir()] == ["bundle.zip"]


def test_local_delete_prefix_of_a_missing_tree(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path / "nowhere").delete_prefix("exports/1") == 0


# --- S3 only -------------------------------------------------------------------------------------


def test_s3_keys_live_under_the_prefix(s3: S3Storage, tmp_path: Path) -> None:
    s3.publish(NAME, make_file(tmp_path / "work", b"x"))
    keys = [item["Key"] for item in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert keys == [f"tenant-a/{NAME}"]


def test_s3_read_at_asks_only_for_the_requested_range(s3: S3Storage, tmp_path: Path) -> None:
    data = payload(200_000)
    s3.publish(NAME, make_file(tmp_path / "work", data))
    ranges: list[str | None] = []
    received: list[tuple[int, int]] = []

    def record_range(request: Any, **_: Any) -> None:
        header = request.headers.get("Range")
        ranges.append(header.decode() if isinstance(header, bytes) else header)

    def record_length(http_response: Any, **_: Any) -> None:
        received.append((http_response.status_code, int(http_response.headers.get("Content-Length", -1))))

    s3.client.meta.events.register("before-send.s3.GetObject", record_range)
    s3.client.meta.events.register("after-call.s3.GetObject", record_length)
    assert s3.read_at(NAME, 1_000, 100) == data[1_000:1_100]
    assert s3.read_at(NAME, 199_990, 100) == data[199_990:]
    assert s3.read_at(NAME, 500_000, 100) == b""
    assert ranges == ["bytes=1000-1099", "bytes=199990-200089", "bytes=500000-500099"]
    assert received[:2] == [(206, 100), (206, 10)], "the server sent only the bytes asked for"
    assert received[2][0] == 416  # past the end: S3 answers Range Not Satisfiable, read_at gives b""


def test_s3_big_publish_uses_bounded_parts_and_is_invisible_until_complete(
        s3: S3Storage, tmp_path: Path) -> None:
    data = payload(40 * 1024 * 1024 + 123)
    digest = hashlib.sha256(data).hexdigest()
    source = make_file(tmp_path / "work", data)
    del data
    parts: list[int] = []
    puts: list[str] = []
    visible_during_upload: list[bool] = []

    def before_part(params: dict[str, Any], **_: Any) -> None:
        parts.append(len(params["Body"]))
        visible_during_upload.append(s3.exists(NAME))

    s3.client.meta.events.register("before-parameter-build.s3.UploadPart", before_part)
    s3.client.meta.events.register("before-parameter-build.s3.PutObject", lambda **_: puts.append("put"))
    tracemalloc.start()
    try:
        s3.publish(NAME, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parts == [MIN_PART_SIZE] * 8 + [123]
    assert puts == []
    assert visible_during_upload == [False] * 9
    assert peak < 3 * MIN_PART_SIZE, f"memory grew with the file: peak {peak} bytes"
    assert s3.size(NAME) == 40 * 1024 * 1024 + 123
    streamed = hashlib.sha256()
    with s3.open(NAME) as handle:
        while chunk := handle.read(1024 * 1024):
            streamed.update(chunk)
    assert streamed.hexdigest() == digest
    assert open_multipart_uploads(s3) == []
    assert not source.exists()


def test_s3_failure_mid_upload_aborts_and_leaves_nothing(s3: S3Storage, tmp_path: Path) -> None:
    data = payload(4 * MIN_PART_SIZE + 1)
    source = make_file(tmp_path / "work", data)

    def fail_third_part(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 3:
            raise ConnectionResetError("network dropped during part 3")

    calls: list[str] = []
    s3.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_third_part)
    s3.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    with pytest.raises(ConnectionResetError):
        s3.publish(NAME, source)
    assert calls == ["CreateMultipartUpload", "UploadPart", "UploadPart", "AbortMultipartUpload"]
    assert not s3.exists(NAME)
    assert open_multipart_uploads(s3) == []
    assert source.read_bytes() == data, "the source stays for a retry"


def test_s3_source_shrinking_mid_upload_is_not_published(s3: S3Storage, tmp_path: Path) -> None:
    source = make_file(tmp_path / "work", payload(3 * MIN_PART_SIZE + 10))

    def truncate_after_first_part(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 1:
            os.truncate(source, MIN_PART_SIZE + 5)

    s3.client.meta.events.register("before-parameter-build.s3.UploadPart", truncate_after_first_part)
    with pytest.raises(OSError, match="source changed during upload"):
        s3.publish(NAME, source)
    assert not s3.exists(NAME)
    assert open_multipart_uploads(s3) == []


def test_s3_small_publish_is_one_put(s3: S3Storage, tmp_path: Path) -> None:
    calls: list[str] = []
    s3.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    s3.publish(NAME, make_file(tmp_path / "work", payload(MIN_PART_SIZE)))
    assert calls == ["PutObject"]


# --- open_storage --------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Enough environment to build a client without contacting anything."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("OFFBOARD_S3_ENDPOINT_URL", raising=False)


def test_open_storage_plain_path_is_local(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "bundles"))
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path / "bundles"
    assert isinstance(open_storage("relative/dir"), LocalStorage)


def test_open_storage_empty_setting_uses_the_default(tmp_path: Path) -> None:
    storage = open_storage("  ", local_root_default=tmp_path)
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path
    with pytest.raises(ValueError, match="storage setting is empty"):
        open_storage("")


@pytest.mark.parametrize(("setting", "prefix"), [
    ("s3://bundles", ""), ("s3://bundles/", ""), ("s3://bundles/a/b", "a/b/"), ("s3://bundles/a/b/", "a/b/"),
    ("S3://bundles/x", "x/"), ("s3://my.bundles-2/x", "x/"),
])
def test_open_storage_s3_urls(aws_env: None, setting: str, prefix: str) -> None:
    storage = open_storage(setting)
    assert isinstance(storage, S3Storage)
    assert storage.bucket == setting.split("/")[2]
    assert storage.prefix == prefix
    assert storage.client.meta.region_name == "eu-west-1"
    assert "secret" not in repr(storage) and "AKID" not in repr(storage)


def test_open_storage_endpoint_and_region_from_environment(
        aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFBOARD_S3_ENDPOINT_URL", "http://minio.internal:9000")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    storage = open_storage("s3://bundles/offboard")
    assert isinstance(storage, S3Storage)
    assert storage.client.meta.endpoint_url == "http://minio.internal:9000"
    assert storage.client.meta.region_name == "eu-central-1"


@pytest.mark.parametrize(("setting", "message"), [
    ("s3://", "no valid bucket name"),
    ("s3:///prefix", "no valid bucket name"),
    ("s3://Bad_Bucket/x", "no valid bucket name"),
    ("s3://ab", "no valid bucket name"),
    ("s3://bucket/a//b", "invalid prefix"),
    ("s3://bucket/a/../b", "invalid prefix"),
    ("s3:bucket/x", "unsupported storage URL"),
    ("s3:/bucket/x", "unsupported storage URL"),
    ("gs://bucket/x", "unsupported storage URL"),
    ("https://bucket.s3.amazonaws.com/x", "unsupported storage URL"),
    ("file:///srv/bundles", "unsupported storage URL"),
    ("s3://AKIDEXAMPLE:super-secret-value@bucket/x", "credentials come from the AWS environment"),
    ("s3://bucket:super-secret-value/x", "must be just s3://bucket/prefix"),
    ("s3://bucket/x?region=eu-west-1", "must be just s3://bucket/prefix"),
])
def test_open_storage_rejects_bad_urls_clearly(aws_env: None, setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        open_storage(setting)
    assert "super-secret-value" not in str(raised.value)


def test_part_size_below_the_s3_minimum_is_refused(aws_env: None) -> None:
    with pytest.raises(ValueError, match="part_size"):
        open_storage("s3://bundles", part_size=1024 * 1024)
