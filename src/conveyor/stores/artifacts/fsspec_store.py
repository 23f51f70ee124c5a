"""A `ByteStore` over fsspec for local folders, ``memory://`` and ``s3://``, with atomic puts.

Atomicity comes from each file system's own commit point: on a local disk a
file is written and fsynced under ``<root>/.tmp/`` and then renamed into place;
in memory a single assignment stores the whole object; in S3 an object (single
PUT or multipart upload) is invisible until it is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from conveyor.errors import ConfigError, NotFoundError, StoreError, ValidationError
from conveyor.stores.artifacts.base import ByteStore

__all__ = ["SUPPORTED_SCHEMES", "FsspecByteStore"]

SUPPORTED_SCHEMES = ("file", "memory", "s3")
_TMP_DIR = ".tmp"
# Checked in order; the first one set wins. botocore reads the AWS ones itself
# only in recent versions, so they are passed on explicitly.
_S3_ENDPOINT_VARIABLES = ("CONVEYOR_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")

_Opened = tuple[AbstractFileSystem, str]


def _split_uri(uri: str) -> tuple[str, str]:
    """The scheme (``"file"`` for a plain path) and the rest of ``uri``."""
    scheme, separator, rest = uri.partition("://")
    # A one-letter "scheme" is a Windows drive, as fsspec also assumes.
    if separator and len(scheme) > 1:
        return scheme.lower(), rest
    return "file", uri


def _open_local(path: str, options: Mapping[str, Any]) -> _Opened:
    fs = LocalFileSystem(**options)
    root = fs._strip_protocol(os.path.abspath(os.path.expanduser(path)))
    os.makedirs(root, exist_ok=True)
    return fs, root


def _open_memory(path: str, options: Mapping[str, Any]) -> _Opened:
    fs = MemoryFileSystem(**options)
    return fs, fs._strip_protocol(path)


def _s3_options(options: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(options)
    client_kwargs = merged.get("client_kwargs") or {}
    if "endpoint_url" not in merged and "endpoint_url" not in client_kwargs:
        endpoint = next((os.environ[v] for v in _S3_ENDPOINT_VARIABLES if os.environ.get(v)), None)
        if endpoint:
            merged["endpoint_url"] = endpoint
    # Other processes write to the same bucket; a cached listing would hide their objects.
    merged.setdefault("use_listings_cache", False)
    return merged


def _open_s3(path: str, options: Mapping[str, Any]) -> _Opened:
    try:
        from s3fs import S3FileSystem
    except ImportError as exc:
        raise ConfigError(
            "s3:// artifact stores need s3fs: pip install 'conveyor-mlops[s3]'"
        ) from exc
    root = path.strip("/")
    if not root:
        raise ConfigError("an s3:// artifact store URI must name a bucket: s3://bucket/prefix")
    fs: AbstractFileSystem = S3FileSystem(**_s3_options(options))
    return fs, root


_OPENERS: dict[str, Callable[[str, Mapping[str, Any]], _Opened]] = {
    "file": _open_local,
    "memory": _open_memory,
    "s3": _open_s3,
}


def _check_key(key: str, *, allow_empty: bool = False) -> None:
    segments = key.split("/")
    if (not key and not allow_empty) or key.startswith("/") or ".." in segments:
        raise ValidationError("key", "a key is a non-empty relative path with no '..' segment")
    if segments[0] == _TMP_DIR:
        raise ValidationError("key", f"keys under '{_TMP_DIR}/' are reserved for temporaries")


@contextlib.contextmanager
def _reading(key: str, uri: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFoundError(f"no object under key {key!r} in {uri}") from exc
    except OSError as exc:
        raise StoreError(f"reading {key!r} from {uri} failed: {exc}") from exc


@contextlib.contextmanager
def _writing(key: str, uri: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StoreError(f"writing {key!r} to {uri} failed: {exc}") from exc


class FsspecByteStore(ByteStore):
    """Bytes under keys in a folder of an fsspec file system.

    Args:
        uri: where the store lives: a plain path (relative or absolute),
            ``file://…``, ``memory://…`` or ``s3://bucket/prefix``.
        **storage_options: passed to the fsspec file system, e.g. ``endpoint_url``
            or ``key``/``secret`` for S3. Without an ``endpoint_url``, S3 stores
            use ``CONVEYOR_S3_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3`` or
            ``AWS_ENDPOINT_URL`` from the environment, if set.

    Raises:
        ConfigError: the scheme is not supported, an S3 URI names no bucket,
            or s3fs is not installed.
    """

    def __init__(self, uri: str, **storage_options: Any) -> None:
        scheme, path = _split_uri(uri)
        if scheme not in _OPENERS:
            supported = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
            raise ConfigError(f"unsupported artifact store URI {uri!r}; supported: {supported}")
        self._fs, self._root = _OPENERS[scheme](path, storage_options)
        self._local = scheme == "file"
        self.uri = f"{scheme}://{self._root}"

    def __repr__(self) -> str:
        return f"FsspecByteStore({self.uri!r})"

    def _path(self, key: str) -> str:
        _check_key(key)
        return f"{self._root}/{key}"

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; readers see the old object or the new one, whole."""
        target = self._path(key)
        with _writing(key, self.uri):
            if self._local:
                self._replace_locally(target, lambda handle: handle.write(data))
            else:
                self._fs.pipe_file(target, data)

    def put_stream(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        """Store what ``write`` writes under ``key``; locally, straight into the temporary."""
        if not self._local:
            super().put_stream(key, write)
            return
        target = self._path(key)
        with _writing(key, self.uri):
            self._replace_locally(target, write)

    def put_path(self, key: str, write: Callable[[str], object]) -> None:
        """Store what ``write`` writes at the path it gets; locally, that is the temporary."""
        if not self._local:
            super().put_path(key, write)
            return
        target = self._path(key)

        def fill(temporary: str) -> None:
            write(temporary)
            self._check_written(key, temporary)

        with _writing(key, self.uri):
            self._replace_at(target, fill)

    def put_file(self, key: str, local_path: Path) -> None:
        """Store a local file under ``key``, streaming it, atomically."""
        target = self._path(key)
        if not local_path.is_file():
            raise NotFoundError(f"no local file {str(local_path)!r} to store")
        with _writing(key, self.uri):
            if self._local:
                self._replace_locally(target, lambda handle: _copy_from(local_path, handle))
            elif isinstance(self._fs, MemoryFileSystem):
                # The bytes end up in memory anyway; one assignment keeps the put atomic.
                self._fs.pipe_file(target, local_path.read_bytes())
            else:
                self._fs.put_file(str(local_path), target)

    def _replace_locally(self, target: str, fill: Callable[[BinaryIO], object]) -> None:
        def at(temporary: str) -> None:
            with open(temporary, "wb") as handle:
                fill(handle)

        self._replace_at(target, at)

    def _replace_at(self, target: str, fill: Callable[[str], object]) -> None:
        """``fill`` writes a file at a temporary path, which is synced, then renamed."""
        # The temporary lives under the root, so the rename never crosses file systems.
        temporary = os.path.join(self._root, _TMP_DIR, uuid.uuid4().hex)
        os.makedirs(os.path.dirname(temporary), exist_ok=True)
        try:
            fill(temporary)
            descriptor = os.open(temporary, os.O_RDWR)  # the writer's own is closed by now
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def get_bytes(self, key: str) -> bytes:
        """The bytes under ``key``.

        Raises:
            NotFoundError: no object is stored under ``key``.
        """
        source = self._path(key)
        with _reading(key, self.uri):
            data: bytes = self._fs.cat_file(source)
        return data

    def get_file(self, key: str, local_path: Path) -> None:
        """Stream the bytes under ``key`` to ``local_path``, replacing what is there.

        Raises:
            NotFoundError: no object is stored under ``key``.
        """
        source = self._path(key)
        with _reading(key, self.uri):
            self._fs.get_file(source, str(local_path))

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        source = self._path(key)
        with _reading(key, self.uri):
            return bool(self._fs.isfile(source))

    def delete(self, key: str) -> None:
        """Remove the object under ``key``; a missing key is not an error."""
        target = self._path(key)
        with _writing(key, self.uri), contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(target)

    def stat(self, key: str) -> tuple[int, float | None]:
        """The size and modification time of ``key`` (local: mtime, S3: LastModified)."""
        source = self._path(key)
        with _reading(key, self.uri):
            info = self._fs.info(source)
        return int(info.get("size") or 0), _mtime(info)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every committed key starting with ``prefix``, sorted; temporaries never appear.

        ``prefix`` is a plain string prefix: ``"a"`` matches ``"a/x"`` and ``"ab"``.
        """
        _check_key(prefix, allow_empty=True)
        folder = prefix.rpartition("/")[0]
        base = f"{self._root}/{folder}" if folder else self._root
        with _reading(prefix, self.uri):
            found: list[str] = self._fs.find(base)
        start = len(self._root) + 1
        for key in sorted(path[start:] for path in found):
            if key.startswith(prefix) and not key.startswith(f"{_TMP_DIR}/"):
                yield key


def _copy_from(local_path: Path, handle: BinaryIO) -> None:
    with local_path.open("rb") as source:
        shutil.copyfileobj(source, handle, length=1024 * 1024)


def _mtime(info: Mapping[str, Any]) -> float | None:
    # Each fsspec filesystem names the time differently.
    value = info.get("mtime", info.get("LastModified", info.get("created")))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
