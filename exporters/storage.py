"""Where finished bundles live. Local directory by default; objects appear whole or not at all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO


class LocalStorage:
    """Objects as files under ``root``; a rename inside one filesystem publishes atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def publish(self, name: str, source: Path) -> None:
        """Move a finished file into storage under ``name``."""
        target = self._path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.incoming")
        shutil.move(str(source), temporary)  # a copy only when source is on another filesystem
        os.replace(temporary, target)

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in Path(name).parts:
            raise ValueError(f"invalid storage name {name!r}")
        return self.root / name
