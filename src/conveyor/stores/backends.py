"""Which backend serves a store URI: a scheme → factory table, each backend imported on use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.stores.artifacts.base import ByteStore
    from conveyor.stores.artifacts.content import ContentAddressedStore
    from conveyor.stores.metadata.base import RunStore
    from conveyor.stores.metadata.loop import LoopStore
    from conveyor.stores.metadata.models import ModelStore

__all__ = [
    "open_artifact_store",
    "open_loop_store",
    "open_metadata_store",
    "open_model_store",
]


# --- Artifact stores ---------------------------------------------------------


def _fsspec_byte_store(uri: str, **storage_options: Any) -> ByteStore:
    from conveyor.stores.artifacts.fsspec_store import FsspecByteStore

    return FsspecByteStore(uri, **storage_options)


_ARTIFACT_BACKENDS: dict[str, Callable[..., ByteStore]] = {
    "file": _fsspec_byte_store,
    "memory": _fsspec_byte_store,
    "s3": _fsspec_byte_store,
}


def _scheme(uri: str) -> str:
    scheme, separator, _ = uri.partition("://")
    # A one-letter "scheme" is a Windows drive letter, not a URL.
    return scheme.lower() if separator and len(scheme) > 1 else "file"


def open_artifact_store(uri: str, **storage_options: Any) -> ContentAddressedStore:
    """Open the content-addressed artifact store at ``uri``.

    Args:
        uri: a plain path (relative or absolute), ``file://…``, ``memory://…``
            or ``s3://bucket/prefix``.
        **storage_options: passed to the backend, e.g. ``endpoint_url`` for S3.

    Returns:
        The store, ready to use; a local folder is created if missing.

    Raises:
        ConfigError: the URI is empty or its scheme is not supported (the
            message lists the supported ones), or the backend's extra is missing.
    """
    if not uri:
        raise ConfigError("an artifact store URI must not be empty")
    factory = _ARTIFACT_BACKENDS.get(_scheme(uri))
    if factory is None:
        supported = ", ".join(f"{scheme}://" for scheme in _ARTIFACT_BACKENDS)
        raise ConfigError(
            f"unsupported artifact store URI {uri!r}; supported: {supported} or a plain path"
        )
    from conveyor.stores.artifacts.content import ContentAddressedStore

    return ContentAddressedStore(factory(uri, **storage_options))


# --- Metadata and model stores (one SQL database) --------------------------------

# Both stores live in the same database, so they accept the same URIs.
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres")


def _check_sql_uri(uri: str) -> None:
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if scheme not in _SQL_SCHEMES:
        raise ConfigError(
            f"unsupported metadata URI {uri!r}; supported: sqlite:///path/to/conveyor.db, "
            "postgresql://user@host:port/database"
        )


def open_metadata_store(uri: str) -> RunStore:
    """Open (and migrate, if needed) the metadata store at ``uri``.

    Args:
        uri: ``sqlite:///path/conveyor.db`` or ``postgresql://user@host:port/db``.

    Raises:
        ConfigError: the scheme is not supported (the message lists those that are).
    """
    _check_sql_uri(uri)
    from conveyor.stores.metadata.sql.store import SqlMetadataStore

    return SqlMetadataStore(uri)


def open_model_store(uri: str) -> ModelStore:
    """Open (and migrate, if needed) the model registry's store in the metadata database.

    Args:
        uri: ``sqlite:///path/conveyor.db`` or ``postgresql://user@host:port/db``.

    Raises:
        ConfigError: the scheme is not supported (the message lists those that are).
    """
    _check_sql_uri(uri)
    from conveyor.stores.metadata.sql.models import SqlModelStore

    return SqlModelStore(uri)


def open_loop_store(uri: str) -> LoopStore:
    """Open (and migrate, if needed) the closed loop's store in the metadata database.

    It holds monitor evaluations, alerts, trigger events, leases, delivery checks
    and traffic policies.

    Args:
        uri: ``sqlite:///path/conveyor.db`` or ``postgresql://user@host:port/db``.

    Raises:
        ConfigError: the scheme is not supported (the message lists those that are).
    """
    _check_sql_uri(uri)
    from conveyor.stores.metadata.sql.loop import SqlLoopStore

    return SqlLoopStore(uri)
