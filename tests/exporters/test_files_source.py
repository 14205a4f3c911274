"""The ``files`` source on real directory trees (tmp_path)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from marshmallow import ValidationError

from exporters.sources.base import Scope, SourceError
from exporters.sources.files import SCHEMA, FilesSource

ACME, GLOBEX = Scope("acme"), Scope("globex")


def make(root: Path, **config: Any) -> FilesSource:
    return FilesSource(FilesSource.validate({"root": str(root), **config}))


def write(root: Path, relative: str, data: bytes = b"") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def listing(source: FilesSource, scope: Scope, batch_rows: int = 1000) -> list[dict[str, Any]]:
    dataset = source.datasets(scope)[0]
    batches = list(source.read(dataset, scope, batch_rows))
    assert all(batch.schema == SCHEMA and batch.num_rows <= batch_rows for batch in batches)
    return pa.Table.from_batches(batches, SCHEMA).to_pylist()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root, "acme/b.txt", b"bee")
    write(root, "acme/a/deep/er/x.bin", b"\x00\x01" * 10)
    write(root, "acme/a-c.txt", b"dash")
    write(root, "acme/empty", b"")
    write(root, "acme/Zoë/héllo wörld 📎.pdf", "ünïcode".encode())
    write(root, "globex/keep.txt", b"globex's")
    return root


def test_datasets_describe_the_listing(tree: Path) -> None:
    [dataset] = make(tree, category="reports").datasets(ACME)
    assert (dataset.name, dataset.category, dataset.schema) == ("files", "reports", SCHEMA)
    assert SCHEMA.field("modified_at").type == pa.timestamp("us", tz="UTC")


def test_listing_is_sorted_hashed_and_batched(tree: Path) -> None:
    source = make(tree)
    rows = listing(source, ACME, batch_rows=2)
    paths = [row["path"] for row in rows]
    expected = ["a/deep/er/x.bin", "a-c.txt", "b.txt", "empty", "Zoë/héllo wörld 📎.pdf"]
    assert sorted(paths, key=lambda p: p.split("/")) == paths  # component-wise order
    assert sorted(paths) == sorted(expected)
    for row in rows:
        data = (tree / "acme" / row["path"]).read_bytes()
        assert row["size_bytes"] == len(data)
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        stamp = os.stat(tree / "acme" / row["path"]).st_mtime_ns // 1000
        assert row["modified_at"] == datetime.fromtimestamp(stamp / 1e6, UTC)
    empty = next(row for row in rows if row["path"] == "empty")
    assert empty["size_bytes"] == 0 and empty["sha256"] == hashlib.sha256(b"").hexdigest()
    sizes = [batch.num_rows for batch in source.read(source.datasets(ACME)[0], ACME, 2)]
    assert sizes == [2, 2, 1]
    assert listing(source, ACME) == rows  # deterministic


def test_big_file_is_hashed_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    write(tmp_path, "acme/big.bin", data)
    [row] = listing(make(tmp_path), ACME)
    assert row["size_bytes"] == len(data)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()


def test_iter_files_and_open_file_give_the_bytes(tree: Path) -> None:
    source = make(tree)
    files = list(source.iter_files(ACME))
    assert [path for path, _ in files] == [row["path"] for row in listing(source, ACME)]
    for path, size in files:
        with source.open_file(ACME, path) as handle:
            data = handle.read()
        assert len(data) == size and data == (tree / "acme" / path).read_bytes()


@pytest.mark.parametrize("path", ["../globex/keep.txt", "/etc/passwd", "a/../../globex/keep.txt",
                                  "", "a//x", "./b.txt", "b.txt\x00", "a/deep"])
def test_open_file_refuses_paths_outside_or_not_files(tree: Path, path: str) -> None:
    with pytest.raises(SourceError):
        make(tree).open_file(ACME, path)


def test_open_file_missing(tree: Path) -> None:
    with pytest.raises(SourceError, match=r"no longer exists|cannot open"):
        make(tree).open_file(ACME, "nope/x.txt")
    with pytest.raises(SourceError, match="cannot open"):
        make(tree).open_file(ACME, "nope.txt")


@pytest.mark.parametrize("tenant", ["..", ".", "", "../globex", "/etc", "a/b", "a\\b", "ac\x00me"])
def test_traversal_in_tenant_ids_is_refused(tree: Path, tenant: str) -> None:
    source, scope = make(tree), Scope(tenant)
    for call in (lambda: list(source.read(source.datasets(scope)[0], scope, 10)),
                 lambda: source.erase(scope), lambda: source.count(scope),
                 lambda: list(source.iter_files(scope)), lambda: source.open_file(scope, "b.txt")):
        with pytest.raises(SourceError):
            call()
    assert (tree / "globex/keep.txt").exists() and (tree / "acme/b.txt").exists()


def test_template_cannot_turn_an_id_into_dot_dot(tree: Path) -> None:
    source = make(tree, tenant_dir="{tenant}.")
    with pytest.raises(SourceError):
        source.count(Scope("."))


def test_symlinks_are_skipped_never_followed(tree: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/secret.txt", b"not acme's")
    (tree / "acme/link.txt").symlink_to(outside)
    (tree / "acme/linkdir").symlink_to(outside.parent, target_is_directory=True)
    (tree / "acme/to-globex").symlink_to(tree / "globex", target_is_directory=True)
    source = make(tree)
    paths = [row["path"] for row in listing(source, ACME)]
    assert not any(path.startswith(("link", "to-globex")) for path in paths)
    for path in ("link.txt", "linkdir/secret.txt", "to-globex/keep.txt"):
        with pytest.raises(SourceError):
            source.open_file(ACME, path)
    assert source.erase(ACME) == {"files": 5}
    assert outside.read_bytes() == b"not acme's" and (tree / "globex/keep.txt").exists()
    assert not (tree / "acme").exists()


def test_tenant_dir_that_is_a_link_is_refused(tree: Path) -> None:
    (tree / "evil").symlink_to(tree / "globex", target_is_directory=True)
    source = make(tree)
    with pytest.raises(SourceError):
        source.count(Scope("evil"))
    with pytest.raises(SourceError):
        source.erase(Scope("evil"))
    assert (tree / "globex/keep.txt").exists()


def test_fifo_is_skipped(tree: Path) -> None:
    os.mkfifo(tree / "acme/pipe")
    assert "pipe" not in [row["path"] for row in listing(make(tree), ACME)]


def test_erase_then_count_leaves_other_tenants_and_root(tree: Path) -> None:
    source = make(tree)
    assert source.count(ACME) == {"files": 5}
    assert source.erase(ACME) == {"files": 5}
    assert source.count(ACME) == {"files": 0}
    assert not (tree / "acme").exists() and tree.is_dir()
    assert source.count(GLOBEX) == {"files": 1}
    assert (tree / "globex/keep.txt").read_bytes() == b"globex's"
    assert source.erase(ACME) == {"files": 0}  # idempotent
    assert listing(source, ACME) == []


def test_nested_template_removes_only_the_tenants_own_levels(tmp_path: Path) -> None:
    write(tmp_path, "tenants/acme/files/x.txt", b"x")
    write(tmp_path, "tenants/globex/files/y.txt", b"y")
    source = make(tmp_path, tenant_dir="tenants/{tenant}/files")
    assert [row["path"] for row in listing(source, ACME)] == ["x.txt"]
    assert source.erase(ACME) == {"files": 1}
    assert sorted(p.name for p in (tmp_path / "tenants").iterdir()) == ["globex"]
    assert source.count(ACME) == {"files": 0}


def test_subject_scope(tmp_path: Path) -> None:
    write(tmp_path, "acme/users/bob/cv.pdf", b"cv")
    write(tmp_path, "acme/users/ann/cv.pdf", b"ann")
    write(tmp_path, "acme/shared.txt", b"all")
    bob = Scope("acme", "bob")
    assert make(tmp_path).count(bob) == {"files": 0}  # no subject_dir: nothing is one person's
    assert make(tmp_path).erase(bob) == {"files": 0}
    source = make(tmp_path, subject_dir="users/{subject}")
    assert [row["path"] for row in listing(source, bob)] == ["users/bob/cv.pdf"]
    with source.open_file(bob, "users/bob/cv.pdf") as handle:
        assert handle.read() == b"cv"
    for path in ("users/ann/cv.pdf", "shared.txt", "users/bob"):
        with pytest.raises(SourceError):
            source.open_file(bob, path)
    with pytest.raises(SourceError):
        source.count(Scope("acme", "../ann"))
    assert source.erase(bob) == {"files": 1}
    assert source.count(ACME) == {"files": 2}
    assert (tmp_path / "acme/users").is_dir()


def test_missing_tenant_dir_is_empty(tree: Path) -> None:
    source = make(tree)
    assert source.count(Scope("nobody")) == {"files": 0}
    assert source.erase(Scope("nobody")) == {"files": 0}
    assert list(source.iter_files(Scope("nobody"))) == []


def test_missing_root_is_an_error_not_zero(tmp_path: Path) -> None:
    source = make(tmp_path / "unmounted")
    for call in (source.check, lambda: source.count(ACME), lambda: source.erase(ACME),
                 lambda: list(source.iter_files(ACME))):
        with pytest.raises(SourceError, match="not a readable directory"):
            call()
    write(tmp_path, "file", b"")
    with pytest.raises(SourceError):
        make(tmp_path / "file").check()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_root(tmp_path: Path) -> None:
    root = tmp_path / "locked"
    root.mkdir(mode=0)
    try:
        with pytest.raises(SourceError):
            make(root).check()
    finally:
        root.chmod(0o700)


def test_check_passes(tree: Path) -> None:
    make(tree).check()


def test_non_utf8_name_is_reported_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    try:
        (tmp_path / "acme").joinpath(os.fsdecode(b"bad\xff.txt")).write_bytes(b"x")
    except (OSError, UnicodeEncodeError):
        pytest.skip("file system refuses non-UTF-8 names")
    with pytest.raises(SourceError, match="UTF-8"):
        make(tmp_path).count(ACME)


@pytest.mark.parametrize("config", [
    {},
    {"root": ""},
    {"root": "/x", "extra": 1},
    {"root": "/x", "category": "nope"},
    {"root": "/x", "tenant_dir": "static"},
    {"root": "/x", "tenant_dir": "../{tenant}"},
    {"root": "/x", "tenant_dir": "/abs/{tenant}"},
    {"root": "/x", "tenant_dir": "a//{tenant}"},
    {"root": "/x", "tenant_dir": "{tenant}/./x"},
    {"root": "/x", "tenant_dir": "{tenant.__class__}"},
    {"root": "/x", "tenant_dir": "{tenant!r}"},
    {"root": "/x", "tenant_dir": "{tenant:>9}"},
    {"root": "/x", "tenant_dir": "{tenant}/{other}"},
    {"root": "/x", "tenant_dir": "{tenant"},
    {"root": "/x", "subject_dir": "users"},
    {"root": "/x", "subject_dir": "{tenant}"},
])
def test_config_validation(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FilesSource.validate(config)


def test_config_defaults() -> None:
    assert FilesSource.validate({"root": "/srv/files"}) == {
        "root": "/srv/files", "tenant_dir": "{tenant}", "category": "content"}
