"""The byte-level seam every artifact backend implements.

A backend only moves bytes under string keys. Hashing, dedupe and
verification live once, above it, in `ContentAddressedStore`. Every put is
atomic: a reader sees the whole object or nothing.
"""

from __future__ import annotations

import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from conveyor.errors import StoreError

__all__ = ["ByteStore"]


class ByteStore(ABC):
    """Bytes under keys such as ``"cas/ab/abcdef…"``; keys never come from users."""

    uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (temporary name, then commit)."""

    def put_stream(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        """Store under ``key``, atomically, what ``write`` writes to the binary file it gets.

        This default gathers the bytes in memory; a backend with a local file system
        lets ``write`` fill the temporary file itself (no copy of the whole object).
        """
        sink = io.BytesIO()
        write(sink)
        self.put_bytes(key, sink.getvalue())

    def put_path(self, key: str, write: Callable[[str], object]) -> None:
        """Store under ``key``, atomically, the local file ``write`` writes at the path it gets.

        For writers that open the file natively (Arrow, Parquet): they write without
        a Python call per chunk. This default writes a temporary file, then `put_file`;
        a backend with a local file system lets ``write`` fill its own temporary.
        """
        with tempfile.TemporaryDirectory(prefix="conveyor-put-") as folder:
            path = os.path.join(folder, "object")
            write(path)
            self._check_written(key, path)
            self.put_file(key, Path(path))

    def _check_written(self, key: str, path: str) -> None:
        """`StoreError` if a `put_path` writer left no file at ``path``."""
        if not os.path.isfile(path):
            raise StoreError(f"writing {key!r} to {self.uri} failed: the writer made no file")

    @abstractmethod
    def put_file(self, key: str, local_path: Path) -> None:
        """Store a local file under ``key`` atomically, streaming it."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The bytes under ``key``; `NotFoundError` if there are none."""

    @abstractmethod
    def get_file(self, key: str, local_path: Path) -> None:
        """Stream the bytes under ``key`` to a local file."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abstractmethod
    def stat(self, key: str) -> tuple[int, float | None]:
        """The size in bytes and the modification time (epoch seconds, if known) of ``key``."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every committed key under ``prefix`` (never a temporary one)."""
