"""Where finished bundles live: a local directory or an S3 bucket; objects appear whole or not at all.

Both backends share one contract (``Storage``) so jobs and downloads never care which is configured:

* ``publish`` takes ownership of ``source``: on success the file is gone (renamed or uploaded, then
  removed) and the object is visible whole; on failure nothing is visible and ``source`` is left.
* ``read_at`` clamps like ``pread``: fewer bytes near the end, ``b""`` at or past the end.
* A missing object raises ``FileNotFoundError`` (``open``, ``read_at``, ``size``); ``delete`` of a
  missing object is a no-op.
* ``delete_prefix("exports/12")`` removes ``exports/12`` and everything under ``exports/12/``, never
  ``exports/120``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

S3Client = Any  # a boto3 S3 client (boto3 builds its classes at run time)
MIB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MIB
MIN_PART_SIZE = 5 * MIB  # S3 rejects smaller parts (all but the last) when the upload completes
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@runtime_checkable
class Storage(Protocol):
    """What the export jobs and the download endpoint need from a place that keeps bundles."""

    def publish(self, name: str, source: Path) -> None: ...
    def open(self, name: str) -> BinaryIO: ...
    def read_at(self, name: str, offset: int, length: int) -> bytes: ...
    def size(self, name: str) -> int: ...
    def fingerprint(self, name: str) -> str: ...  # changes whenever the object is replaced
    def exists(self, name: str) -> bool: ...
    def delete(self, name: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...


def check_name(name: str) -> str:
    """Refuse names that could escape the root or alias another object (same rule for both backends)."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or name.startswith("/") or "\\" in name or "\x00" in name or any(
            part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid storage name {name!r}: use relative names like 'exports/12/bundle.zip' "
                         "(no leading '/', no '.' or '..', no empty segments)")
    return name


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"offset and length must not be negative (got {offset}, {length})")


class LocalStorage:
    """Objects as files under ``root``; a rename inside one filesystem publishes atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def publish(self, name: str, source: Path) -> None:
        """Move a finished file into storage under ``name``: a unique temp name, fsync, then rename."""
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.incoming")
        moved = False
        try:
            try:
                os.rename(source, temporary)
                moved = True
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                shutil.copyfile(source, temporary)  # another filesystem: the source goes only at the end
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())  # the rename must never point at data not yet on disk
            os.replace(temporary, target)
        except BaseException:
            if moved:  # give the caller its file back, as the contract promises
                with contextlib.suppress(OSError):
                    os.rename(temporary, source)
            temporary.unlink(missing_ok=True)
            raise
        if not moved:
            source.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end) without moving a shared file position."""
        _check_range(offset, length)
        fd = os.open(self._path(name), os.O_RDONLY)
        try:
            chunks: list[bytes] = []
            while length > 0:
                chunk = os.pread(fd, length, offset)
                if not chunk:
                    break
                chunks.append(chunk)
                offset, length = offset + len(chunk), length - len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def fingerprint(self, name: str) -> str:
        stat = self._path(name).stat()
        return f"{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}"

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        """Remove the object ``prefix`` or the whole tree under it; return how many objects went."""
        path = self._path(_prefix_name(prefix))
        if path.is_file():
            path.unlink(missing_ok=True)
            return 1
        if not path.is_dir():
            return 0
        count = sum(1 for item in path.rglob("*") if item.is_file() and not item.name.endswith(".incoming"))
        shutil.rmtree(path)
        return count

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)


class S3Storage:
    """Objects under ``s3://bucket/prefix``; one PutObject, or a multipart upload completed at the end."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "", *,
                 part_size: int = DEFAULT_PART_SIZE) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        self.client, self.bucket, self.part_size = client, bucket, part_size
        self.prefix = f"{check_name(prefix.strip('/'))}/" if prefix.strip("/") else ""

    def __repr__(self) -> str:  # bucket and prefix only: never the client's endpoint or credentials
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def publish(self, name: str, source: Path) -> None:
        """Upload ``source``: parts of ``part_size`` bytes keep memory flat; a failure aborts the upload."""
        key = self._key(name)
        size = source.stat().st_size
        with open(source, "rb") as handle:
            if size <= self.part_size:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=handle.read())
            else:
                self._multipart(key, handle, size)
        source.unlink(missing_ok=True)

    def _multipart(self, key: str, handle: BinaryIO, size: int) -> None:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            sent = 0
            while chunk := handle.read(self.part_size):
                number = len(parts) + 1
                answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                 PartNumber=number, Body=chunk)
                part: dict[str, Any] = {"PartNumber": number, "ETag": answer["ETag"]}
                part.update({k: v for k, v in answer.items() if k.startswith("Checksum")})
                parts.append(part)
                sent += len(chunk)
            if sent != size:  # the file changed under us: publishing it would publish a torn object
                raise OSError(f"source changed during upload: {sent} bytes read, {size} expected")
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):  # the original error is the one worth raising
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def open(self, name: str) -> BinaryIO:
        """A streaming body: reads go to the network as the caller asks, nothing is buffered whole."""
        return cast(BinaryIO, self._get(name)["Body"])

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        """One ranged GET for exactly the bytes asked for; S3 itself clamps a range running past the end."""
        _check_range(offset, length)
        if length == 0:
            self._head(name)  # still a FileNotFoundError for a missing object, as locally
            return b""
        try:
            body = self._get(name, Range=f"bytes={offset}-{offset + length - 1}")["Body"]
        except ClientError as error:
            if _code(error) == "InvalidRange":  # offset at or past the end
                return b""
            raise
        with contextlib.closing(body):
            return body.read()

    def exists(self, name: str) -> bool:
        try:
            self._head(name)
        except FileNotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        return int(self._head(name)["ContentLength"])

    def fingerprint(self, name: str) -> str:
        head = self._head(name)
        return f"{head['ETag'].strip(chr(34))}-{head['ContentLength']}"

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def delete_prefix(self, prefix: str) -> int:
        """Delete the object ``prefix`` and every key under ``prefix/``, 1000 keys a request."""
        exact = self._key(_prefix_name(prefix))
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=exact)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])
                if item["Key"] == exact or item["Key"].startswith(f"{exact}/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(f"S3 refused to delete {len(answer['Errors'])} objects, e.g. "
                              f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}")
        return len(keys)

    def _key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def _head(self, name: str) -> dict[str, Any]:
        return self._call(name, self.client.head_object)

    def _get(self, name: str, **extra: Any) -> dict[str, Any]:
        return self._call(name, self.client.get_object, **extra)

    def _call(self, name: str, method: Any, **extra: Any) -> dict[str, Any]:
        """Run a read of one key, turning S3's "no such key" into the FileNotFoundError callers expect."""
        try:
            return method(Bucket=self.bucket, Key=self._key(name), **extra)
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"no object {name!r} in {self!r}") from None
            raise


def open_storage(setting: str, *, local_root_default: Path | None = None,
                 part_size: int = DEFAULT_PART_SIZE) -> Storage:
    """The backend named by the OFFBOARD_STORAGE setting: a directory path, or ``s3://bucket[/prefix]``.

    An empty setting means ``local_root_default``. The S3 client follows boto3's standard credential
    chain; ``OFFBOARD_S3_ENDPOINT_URL`` points it at MinIO or another S3-compatible service.
    """
    setting = setting.strip()
    if not setting:
        if local_root_default is None:
            raise ValueError("storage setting is empty: give a directory or s3://bucket/prefix")
        return LocalStorage(local_root_default)
    if "://" not in setting and not setting.lower().startswith("s3:"):
        return LocalStorage(Path(setting))
    parts = urlsplit(setting)
    shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # never echo user:password@
    if parts.scheme != "s3" or "://" not in setting:
        raise ValueError(f"unsupported storage URL {shown!r}: use a directory path or s3://bucket/prefix")
    bucket = parts.netloc
    if "@" in bucket or ":" in bucket or parts.query or parts.fragment:
        raise ValueError(f"storage URL {shown!r} must be just s3://bucket/prefix: credentials come from "
                         "the AWS environment, the endpoint from OFFBOARD_S3_ENDPOINT_URL")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"storage URL {shown!r} has no valid bucket name "
                         "(3-63 characters of a-z, 0-9, '.' and '-')")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_name(prefix)
        except ValueError:
            raise ValueError(f"storage URL {shown!r} has an invalid prefix (no '.', '..' or empty "
                             "segments)") from None
    return S3Storage(_s3_client(), bucket, prefix, part_size=part_size)


def _s3_client() -> S3Client:
    """A client from the environment; path-style addressing for custom endpoints (MinIO needs it)."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("OFFBOARD_S3_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    config = Config(retries={"mode": "standard", "max_attempts": 5},
                    s3={"addressing_style": "path" if endpoint else "auto"})
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _prefix_name(prefix: str) -> str:
    """A purge prefix is a name, optionally with one trailing '/'; never empty (that would be everything)."""
    return check_name(prefix[:-1] if prefix.endswith("/") else prefix)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; some filesystems refuse to open directories, which is fine to ignore."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
