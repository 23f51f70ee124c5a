"""Content addressing over any `ByteStore`: sha256 keys, dedupe, and verification on every read.

Objects are stored under ``cas/<first two hex digits>/<sha256>``. An object
already present is trusted on write and checked on read, so corruption is
reported where it would do harm: when the bytes are used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import mimetypes
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, final

from conveyor.core.paths import normalize_artifact_path
from conveyor.errors import ArtifactCorruptedError, NotFoundError, UnsafePathError, ValidationError
from conveyor.stores.artifacts.base import ByteStore

__all__ = ["ContentAddressedStore", "Digest", "collect_upload", "guess_media_type"]

_CHUNK_SIZE = 1024 * 1024
_PREFIX = "cas/"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# mimetypes reports "x.csv.gz" as text/csv with an encoding; the bytes are gzip.
_ENCODING_MEDIA_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
_DEFAULT_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Digest:
    """What identifies stored content: its sha256 (64 lowercase hex digits) and size in bytes."""

    sha256: str
    size: int


def _check_sha256(sha256: str) -> None:
    if not _SHA256.fullmatch(sha256):
        raise ValidationError("sha256", "must be 64 lowercase hexadecimal characters")


def _key(sha256: str) -> str:
    _check_sha256(sha256)
    return f"{_PREFIX}{sha256[:2]}/{sha256}"


def _hash_stream(stream: BinaryIO) -> Digest:
    hasher = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK_SIZE):
        hasher.update(chunk)
        size += len(chunk)
    return Digest(hasher.hexdigest(), size)


def _corrupted(sha256: str, actual: str) -> ArtifactCorruptedError:
    return ArtifactCorruptedError(
        f"artifact sha256:{sha256} is corrupted: its stored bytes hash to {actual}"
    )


def _file_signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@final
class ContentAddressedStore:
    """Immutable content under its sha256, over a `ByteStore`; not meant to be subclassed.

    Args:
        byte_store: the backend that moves the bytes.
    """

    def __init__(self, byte_store: ByteStore) -> None:
        self.byte_store = byte_store

    def __repr__(self) -> str:
        return f"ContentAddressedStore({self.byte_store!r})"

    @property
    def uri(self) -> str:
        """Where the underlying byte store lives."""
        return self.byte_store.uri

    def put_bytes(self, data: bytes) -> Digest:
        """Store ``data`` once, however often it is put, and return its digest."""
        digest = Digest(hashlib.sha256(data).hexdigest(), len(data))
        key = _key(digest.sha256)
        if not self.byte_store.exists(key):
            self.byte_store.put_bytes(key, data)
        return digest

    def put_file(self, path: Path) -> Digest:
        """Store a local file once, streaming it, and return its digest.

        Raises:
            NotFoundError: ``path`` is not a file.
            ValidationError: the file changed while it was being stored (the
                stored copy is removed again).
        """
        if not path.is_file():
            raise NotFoundError(f"no local file {str(path)!r} to store")
        before = _file_signature(path)
        with path.open("rb") as stream:
            digest = _hash_stream(stream)
        key = _key(digest.sha256)
        if self.byte_store.exists(key):
            return digest
        self.byte_store.put_file(key, path)
        if _file_signature(path) != before:
            # The upload read other bytes than were hashed; the object would lie about itself.
            self.byte_store.delete(key)
            raise ValidationError("path", "the file changed while it was being stored")
        return digest

    def get_bytes(self, sha256: str) -> bytes:
        """The content stored under ``sha256``, verified.

        Raises:
            NotFoundError: nothing is stored under ``sha256``.
            ArtifactCorruptedError: the stored bytes do not hash to ``sha256``.
        """
        with self._naming_digest(sha256):
            data = self.byte_store.get_bytes(_key(sha256))
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise _corrupted(sha256, actual)
        return data

    def download(self, sha256: str, dest: Path) -> None:
        """Write the content under ``sha256`` to ``dest``, verified, all at once.

        The bytes go to a temporary file beside ``dest`` and are renamed onto it
        only once their hash matches, so ``dest`` is never left partial.
        Missing parent folders are created.

        Raises:
            NotFoundError: nothing is stored under ``sha256``.
            ArtifactCorruptedError: the stored bytes do not hash to ``sha256``.
        """
        key = _key(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        temporary = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with self._naming_digest(sha256):
                self.byte_store.get_file(key, temporary)
            self._verify_file(sha256, temporary)
            os.replace(temporary, dest)
        finally:
            temporary.unlink(missing_ok=True)

    @staticmethod
    def _verify_file(sha256: str, path: Path) -> None:
        with path.open("rb") as stream:
            actual = _hash_stream(stream).sha256
            os.fsync(stream.fileno())
        if actual != sha256:
            raise _corrupted(sha256, actual)

    @staticmethod
    @contextlib.contextmanager
    def _naming_digest(sha256: str) -> Iterator[None]:
        try:
            yield
        except NotFoundError as exc:
            raise NotFoundError(f"no artifact with sha256:{sha256}") from exc

    def exists(self, sha256: str) -> bool:
        """Whether content with this sha256 is stored."""
        return self.byte_store.exists(_key(sha256))

    def delete(self, sha256: str) -> None:
        """Remove the content under ``sha256``; removing missing content is not an error."""
        self.byte_store.delete(_key(sha256))

    def iter_digests(self) -> Iterator[str]:
        """The sha256 of every stored object, sorted; stray keys under ``cas/`` are skipped."""
        for key in self.byte_store.list_keys(_PREFIX):
            shard, _, sha256 = key[len(_PREFIX) :].partition("/")
            if _SHA256.fullmatch(sha256) and shard == sha256[:2]:
                yield sha256

    def unreferenced(self, keep: set[str], min_age_seconds: float) -> list[Digest]:
        """Stored content that no record keeps and that is older than ``min_age_seconds``.

        The age guard spares uploads in flight: their bytes are committed before the
        record that points at them.
        """
        cutoff = time.time() - min_age_seconds
        found = []
        for sha256 in self.iter_digests():
            if sha256 in keep:
                continue
            size, mtime = self.byte_store.stat(_key(sha256))
            if mtime is None or mtime <= cutoff:
                found.append(Digest(sha256, size))
        return found


def collect_upload(local: Path) -> list[tuple[Path, str]]:
    """The files to upload for a local file or folder, each with its artifact path.

    A file gives ``[(file, its name)]``. A folder gives every regular file under
    it with its folder-relative posix path, sorted by that path. Symbolic links
    that stay inside the folder are followed as their content; everything is
    checked before anything is returned, so a bad link means nothing is uploaded.

    Args:
        local: the file or folder a user asked to log.

    Returns:
        ``(local file, artifact path)`` pairs; the artifact paths are normalized.

    Raises:
        NotFoundError: ``local`` does not exist, or a link under it is broken.
        UnsafePathError: a link under the folder points outside it or back into
            a folder containing it, or a name breaks an artifact path rule.
    """
    if not local.exists():
        raise NotFoundError(f"no such file or folder: {str(local)!r}")
    if not local.is_dir():
        return [(local, normalize_artifact_path(local.name))]
    root = local.resolve()
    found: list[tuple[Path, str]] = []
    _collect_folder(local, "", root, (root,), found)
    return sorted(found, key=lambda pair: pair[1])


def _collect_folder(
    folder: Path,
    prefix: str,
    root: Path,
    ancestors: tuple[Path, ...],
    found: list[tuple[Path, str]],
) -> None:
    for entry in folder.iterdir():
        rel = f"{prefix}{entry.name}"
        real = _check_entry(entry, rel, root)
        if entry.is_dir():
            if real in ancestors:
                raise UnsafePathError(rel, "a symbolic link loops back into a folder containing it")
            _collect_folder(entry, f"{rel}/", root, (*ancestors, real), found)
        elif entry.is_file():
            found.append((entry, normalize_artifact_path(rel)))
        # Sockets, FIFOs and devices have no content to upload.


def _check_entry(entry: Path, rel: str, root: Path) -> Path:
    """The resolved path of ``entry``, once it is known to stay inside ``root``."""
    real = entry.resolve()
    if entry.is_symlink():
        if not real.is_relative_to(root):
            raise UnsafePathError(rel, "a symbolic link points outside the folder being uploaded")
        if not real.exists():
            raise NotFoundError(f"broken symbolic link in the upload: {str(entry)!r}")
    return real


@functools.cache
def _media_types() -> mimetypes.MimeTypes:
    # A fresh table knows only Python's built-in types, not /etc/mime.types,
    # so the answer is the same on every machine.
    return mimetypes.MimeTypes()


def guess_media_type(path: str) -> str:
    """The media type for a file name, from its suffix; ``application/octet-stream`` if unknown."""
    media_type, encoding = _media_types().guess_type(path, strict=False)
    if encoding is not None:
        return _ENCODING_MEDIA_TYPES.get(encoding, _DEFAULT_MEDIA_TYPE)
    return media_type or _DEFAULT_MEDIA_TYPE
