"""A ``files`` source: each tenant's directory tree (attachments, uploads) under one root.

The ``files`` dataset is the *listing* (relative POSIX path, size, sha256, mtime); the
bundle copies the bytes themselves through ``iter_files`` / ``open_file``, verbatim.

Safety, because ``erase`` deletes what these paths name:

- the tenant (and subject) id fills one path component only: empty, ``.``, ``..``,
  ``/``, ``\\`` and NUL are refused, the resulting path is resolved and must stay under
  ``root`` (and not be ``root``), and two tenants can never nest inside each other;
- nothing below ``root`` is followed through a symbolic link: every directory is opened
  with ``O_NOFOLLOW`` relative to its parent's descriptor, so a link swapped in during a
  walk is refused, not followed. Links and special files (FIFOs, sockets, devices) are
  skipped by the listing; ``erase`` unlinks them (never their targets) without counting;
- a missing or unreadable ``root`` is a ``SourceError`` everywhere, never "no files":
  an unmounted volume must not look like a tenant whose data is gone.

POSIX only (``dir_fd`` and ``O_NOFOLLOW``). Listing order is depth-first with names
sorted by code point, i.e. paths sorted component by component.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from string import Formatter
from typing import BinaryIO

import pyarrow as pa
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from exporters.sources.base import CATEGORIES, Dataset, Scope, Source, SourceError

DATASET = "files"
CHUNK = 1 << 20
SCHEMA = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("size_bytes", pa.int64(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("modified_at", pa.timestamp("us", tz="UTC"), nullable=False),
])
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _template(placeholder: str) -> validate.Validator:
    """A relative path template using ``{placeholder}`` (nothing else) in its components."""

    def check(value: str) -> None:
        try:
            names = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(value)
                     if name is not None]
        except ValueError as error:
            raise ValidationError(f"not a valid template: {error}") from error
        if not names or any(n != placeholder or s or c for n, s, c in names):
            raise ValidationError(f"must contain {{{placeholder}}} and no other field, "
                                  "format spec or conversion")
        if _climbs(value.format(**{placeholder: "x"})):
            raise ValidationError("must be a relative path without '.', '..', '//' or NUL")

    return check


def _climbs(path: str) -> bool:
    """Whether a relative POSIX path could leave, or fail to go below, where it starts."""
    return "\x00" in path or any(part in ("", ".", "..") for part in path.split("/"))


def _components(path: str) -> list[str]:
    if _climbs(path):
        raise SourceError(f"{path!r} must be a relative path without '.', '..', '//' or NUL")
    return path.split("/")


class FilesConfig(Schema):
    class Meta:
        unknown = RAISE

    root = fields.String(required=True, validate=validate.Length(min=1, max=4096),
                         metadata={"description": "directory holding every tenant's tree"})
    tenant_dir = fields.String(load_default="{tenant}",
                               validate=[validate.Length(max=1000), _template("tenant")],
                               metadata={"description": "the tenant's directory under root"})
    category = fields.String(load_default="content", validate=validate.OneOf(CATEGORIES))
    subject_dir = fields.String(validate=[validate.Length(max=1000), _template("subject")],
                                metadata={"description": "one person's directory under the "
                                                         "tenant's, for single-person requests"})


class FilesSource(Source):
    kind = "files"
    config_schema = FilesConfig

    # -- the contract --------------------------------------------------------------------

    def check(self) -> None:
        with self._open(()):
            pass

    def datasets(self, scope: Scope) -> list[Dataset]:
        return [Dataset(DATASET, self.config["category"], SCHEMA)]

    def read(self, dataset: Dataset, scope: Scope, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if dataset.name != DATASET:
            raise SourceError(f"the files source has no dataset {dataset.name!r}")
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        rows: list[tuple[str, int, str, int]] = []
        for path, dir_fd, name in self._walk(scope):
            rows.append((path, *_hash(dir_fd, name, path)))
            if len(rows) == batch_rows:
                yield _batch(rows)
                rows = []
        if rows:
            yield _batch(rows)

    def erase(self, scope: Scope) -> dict[str, int]:
        parts, first_own = self._scope_parts(scope)
        if parts is None:
            return {DATASET: 0}
        removed = 0
        with self._open(parts[:first_own], missing_ok=True) as fds:
            if fds is not None:
                removed = _remove_tree(fds[-1], parts[first_own:])
        return {DATASET: removed}

    def count(self, scope: Scope) -> dict[str, int]:
        return {DATASET: sum(1 for _ in self._walk(scope))}

    # -- file contents, for the bundle ---------------------------------------------------

    def iter_files(self, scope: Scope) -> Iterator[tuple[str, int]]:
        """(relative path, size) of every regular file, in listing order, without hashing."""
        for path, dir_fd, name in self._walk(scope):
            yield path, os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size

    def open_file(self, scope: Scope, relative_path: str) -> BinaryIO:
        """The file at a listed path, opened for reading without following any link."""
        parts, _ = self._scope_parts(scope)
        full = _fill(self.config["tenant_dir"], "tenant", scope.tenant) + _components(relative_path)
        if parts is None or full[:len(parts)] != parts or len(full) == len(parts):
            raise SourceError(f"{relative_path!r} is not one of this scope's files")
        with self._open(full[:-1], missing_ok=True) as fds:
            if fds is None:
                raise SourceError(f"{relative_path!r} no longer exists")
            try:
                fd = os.open(full[-1], _FILE_FLAGS, dir_fd=fds[-1])
            except OSError as error:
                raise SourceError(f"cannot open {relative_path!r}: {error.strerror}") from error
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SourceError(f"{relative_path!r} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    # -- paths ---------------------------------------------------------------------------

    def _scope_parts(self, scope: Scope) -> tuple[list[str] | None, int]:
        """The scope's directory as components under root (None: the scope holds no files),
        and the index of the first component that belongs to the scope alone."""
        tenant_template = self.config["tenant_dir"]
        parts = _fill(tenant_template, "tenant", scope.tenant)
        first_own = _first_own(tenant_template, "tenant")
        if scope.subject is not None:
            subject_template = self.config.get("subject_dir")
            if subject_template is None:
                return None, 0  # files are the tenant's, not attributable to one person
            first_own = len(parts) + _first_own(subject_template, "subject")
            parts = parts + _fill(subject_template, "subject", scope.subject)
        root = Path(self.config["root"]).resolve()
        target = root.joinpath(*parts).resolve()
        if target == root or not target.is_relative_to(root):
            raise SourceError(f"the directory of {scope} would leave the root (a link?)")
        return parts, first_own

    @contextmanager
    def _open(self, parts: Sequence[str], missing_ok: bool = False) -> Iterator[list[int] | None]:
        """Descriptors of root and each directory down ``parts``, none followed through a
        link; None when one is missing (with ``missing_ok``)."""
        root = self.config["root"]
        fds: list[int] = []
        try:
            try:
                fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
                os.scandir(fds[0]).close()
            except OSError as error:
                raise SourceError(f"files root {root!r} is not a readable directory: "
                                  f"{error.strerror}") from error
            for part in parts:
                try:
                    fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
                except FileNotFoundError:
                    if not missing_ok:
                        raise SourceError(f"{part!r} under {root!r} does not exist") from None
                    yield None
                    return
                except OSError as error:
                    raise SourceError(f"cannot open directory {part!r} under {root!r} "
                                      f"(a symbolic link is never followed): "
                                      f"{error.strerror}") from error
            yield fds
        finally:
            for fd in reversed(fds):
                os.close(fd)

    def _walk(self, scope: Scope) -> Iterator[tuple[str, int, str]]:
        """(relative path, parent dir fd, name) of each regular file, lazily, in order."""
        parts, _ = self._scope_parts(scope)
        if parts is None:
            return
        tenant_len = len(_fill(self.config["tenant_dir"], "tenant", scope.tenant))
        with self._open(parts, missing_ok=True) as fds:
            if fds is not None:
                yield from _walk_fd(fds[-1], "/".join(parts[tenant_len:]))


def _fill(template: str, placeholder: str, value: str) -> list[str]:
    """The template's components with one id in; the id may never add or climb a level."""
    if value in ("", ".", "..") or any(c in value for c in "/\\\x00"):
        raise SourceError(f"{placeholder} id {value!r} cannot name a directory "
                          "(empty, '.', '..', '/', '\\' and NUL are refused)")
    return _components(template.format(**{placeholder: value}))


def _first_own(template: str, placeholder: str) -> int:
    """Components from this index down are the scope's own; those above are shared."""
    return next(i for i, part in enumerate(template.split("/")) if f"{{{placeholder}}}" in part)


def _walk_fd(dir_fd: int, prefix: str) -> Iterator[tuple[str, int, str]]:
    with os.scandir(dir_fd) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        path = f"{prefix}/{entry.name}" if prefix else entry.name
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise SourceError(f"file name {os.fsencode(path)!r} is not valid UTF-8; rename it "
                              "so it can be exported") from None
        if entry.is_dir(follow_symlinks=False):
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as error:
                raise SourceError(f"cannot open directory {path!r}: {error.strerror}") from error
            try:
                yield from _walk_fd(child, path)
            finally:
                os.close(child)
        elif entry.is_file(follow_symlinks=False):
            yield path, dir_fd, entry.name


def _hash(dir_fd: int, name: str, path: str) -> tuple[int, str, int]:
    """(size, sha256 hex, mtime in µs) of one open descriptor, read in 1 MiB chunks; the size
    is what was hashed, so the two agree even if the file grows meanwhile."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        raise SourceError(f"cannot open {path!r}: {error.strerror}") from error
    digest, size, buffer = hashlib.sha256(), 0, bytearray(CHUNK)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"{path!r} changed into something other than a file")
        os.set_blocking(fd, True)
        view = memoryview(buffer)
        while read := handle.readinto(buffer):
            digest.update(view[:read])
            size += read
    return size, digest.hexdigest(), info.st_mtime_ns // 1000


def _batch(rows: list[tuple[str, int, str, int]]) -> pa.RecordBatch:
    paths, sizes, digests, mtimes = zip(*rows, strict=True)
    return pa.RecordBatch.from_arrays(
        [pa.array(paths, pa.string()), pa.array(sizes, pa.int64()),
         pa.array(digests, pa.string()), pa.array(mtimes, pa.timestamp("us", tz="UTC"))],
        schema=SCHEMA)


def _remove_tree(parent_fd: int, own: list[str]) -> int:
    """Delete ``own`` (a chain of directories below ``parent_fd``) with everything in the last
    one; each directory of the chain is removed once empty. Returns regular files removed."""
    if not own:
        return 0
    try:
        fd = os.open(own[0], _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise SourceError(f"cannot open {own[0]!r} to erase it: {error.strerror}") from error
    try:
        removed = _remove_tree(fd, own[1:]) if len(own) > 1 else _empty(fd, own[0])
    finally:
        os.close(fd)
    try:
        os.rmdir(own[0], dir_fd=parent_fd)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise SourceError(f"cannot remove directory {own[0]!r}: {error.strerror}") from error
    return removed


def _empty(dir_fd: int, path: str) -> int:
    removed = 0
    with os.scandir(dir_fd) as scan:
        entries = list(scan)
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                removed += _remove_tree(dir_fd, [entry.name])
            else:
                removed += int(entry.is_file(follow_symlinks=False))
                os.unlink(entry.name, dir_fd=dir_fd)
        except OSError as error:
            raise SourceError(f"cannot erase {path}/{entry.name!r}: {error.strerror}") from error
    return removed

