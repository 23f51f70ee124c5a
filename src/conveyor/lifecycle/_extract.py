"""Extract: tabular data from files (incrementally, by watermark), SQL or DuckDB, as a `Dataset`."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from conveyor.core.step import step
from conveyor.errors import ValidationError

__all__ = ["Dataset", "Watermark", "as_frame", "extract", "fingerprint"]

DATASET_FORMAT = "conveyor.dataset/1"
_METADATA_KEY = b"conveyor.dataset"
_READERS = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".parquet", ".pq")


@dataclass(frozen=True)
class Watermark:
    """How far incremental extraction has read: the newest mtime and every file seen.

    A file is new when it is not among ``files`` or was modified after ``mtime_ns``
    (so files landed with old timestamps, as ``cp -p`` leaves them, are still read).

    Attributes:
        mtime_ns: the largest modification time read so far, in nanoseconds.
        files: the absolute paths read so far, sorted.
    """

    mtime_ns: int = 0
    files: tuple[str, ...] = ()

    def is_new(self, path: str, mtime_ns: int) -> bool:
        """Whether the file at ``path``, modified at ``mtime_ns``, has not been read yet."""
        return mtime_ns > self.mtime_ns or path not in self._seen

    @property
    def _seen(self) -> frozenset[str]:
        return frozenset(self.files)

    def advance(self, read: Mapping[str, int]) -> Watermark:
        """The watermark after also reading ``read`` (path → mtime_ns)."""
        newest = max([self.mtime_ns, *read.values()])
        return Watermark(newest, tuple(sorted(self._seen | set(read))))

    def to_dict(self) -> dict[str, Any]:
        """The watermark as JSON-able data."""
        return {"mtime_ns": self.mtime_ns, "files": list(self.files)}

    @classmethod
    def from_dict(cls, data: Any) -> Watermark:
        """The watermark `to_dict` wrote.

        Raises:
            ValidationError: when ``data`` is not a watermark.
        """
        ok = isinstance(data, dict) and set(data) == {"mtime_ns", "files"}
        files = data.get("files") if ok else None
        if not ok or type(data["mtime_ns"]) is not int or not isinstance(files, list):
            raise ValidationError("watermark", "must be {'mtime_ns': int, 'files': [path, ...]}")
        if not all(isinstance(f, str) for f in files):
            raise ValidationError("watermark.files", "must be a list of paths")
        return cls(data["mtime_ns"], tuple(sorted(files)))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the watermark as JSON, atomically (a reader sees the old or the new state)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Watermark:
        """The watermark saved at ``path``; an empty one if there is no such file yet.

        Raises:
            ValidationError: when the file is not a watermark.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValidationError(str(path), f"is not a watermark (invalid JSON: {exc})") from None


@dataclass(frozen=True, eq=False)
class Dataset:
    """Tabular data with where it came from and a fingerprint of its content.

    Attributes:
        frame: the data.
        fingerprint: sha256 of the data's Arrow IPC stream (see `fingerprint`).
        rows: how many rows ``frame`` has.
        source: where the data came from, in words (pattern, query; no passwords).
        files: the files read, in the order their rows appear.
        watermark: the watermark after this read (incremental file extraction), else None.
    """

    frame: pd.DataFrame = field(repr=False)
    fingerprint: str
    rows: int
    source: str
    files: tuple[str, ...] = ()
    watermark: Watermark | None = None

    @classmethod
    def of(
        cls,
        frame: pd.DataFrame,
        source: str,
        files: Sequence[str] = (),
        watermark: Watermark | None = None,
    ) -> Dataset:
        """A dataset over ``frame``, fingerprinted."""
        return cls(frame, fingerprint(frame), len(frame), source, tuple(files), watermark)

    def metadata(self) -> dict[str, Any]:
        """Everything but the frame, as JSON-able data."""
        return {
            "format": DATASET_FORMAT,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "source": self.source,
            "files": list(self.files),
            "watermark": None if self.watermark is None else self.watermark.to_dict(),
        }

    def to_bytes(self) -> bytes:
        """One Parquet file: the frame, with `metadata` as JSON under ``conveyor.dataset``."""
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.frame)
        meta = dict(table.schema.metadata or {})
        meta[_METADATA_KEY] = json.dumps(self.metadata(), sort_keys=True).encode()
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(meta), sink, compression="snappy")
        data: bytes = sink.getvalue().to_pybytes()
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Dataset:
        """The dataset `to_bytes` wrote.

        Raises:
            ValidationError: when the bytes are not a stored dataset.
        """
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValidationError("dataset", f"is not Parquet: {exc}") from None
        meta = dict(table.schema.metadata or {})
        raw = meta.pop(_METADATA_KEY, None)
        info = json.loads(raw) if raw is not None else {}
        if info.get("format") != DATASET_FORMAT:
            raise ValidationError("dataset", f"has no {DATASET_FORMAT} metadata")
        frame = table.replace_schema_metadata(meta).to_pandas()
        mark = info["watermark"]
        return cls(
            frame,
            info["fingerprint"],
            int(info["rows"]),
            info["source"],
            tuple(info["files"]),
            None if mark is None else Watermark.from_dict(mark),
        )


class _Sha256Sink:
    """A write-only file that hashes what is written to it."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        return view.nbytes

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Hashing needs no closing."""
        self.closed = True


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the frame's Arrow IPC stream: columns sorted by name, no index, no metadata.

    Equal data of equal types gives equal fingerprints whatever the column order or
    the index; any change of a value, a type or the row order changes it.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    order = sorted(range(table.num_columns), key=lambda i: table.column_names[i])
    table = table.select(order).replace_schema_metadata(None).combine_chunks()
    sink = _Sha256Sink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        writer.write_table(table)
    return sink.hash.hexdigest()


def as_frame(data: Any) -> pd.DataFrame:
    """The pandas frame of a `Dataset`, a pandas or polars DataFrame or a pyarrow Table.

    Raises:
        ValidationError: for anything else.
    """
    if isinstance(data, Dataset):
        return data.frame
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pa.Table):
        return data.to_pandas()
    if type(data).__module__.split(".")[0] == "polars" and hasattr(data, "to_pandas"):
        frame: pd.DataFrame = data.to_pandas()
        return frame
    raise ValidationError(
        "data", f"must be a Dataset, a pandas or polars DataFrame or a pyarrow Table, not {data!r}"
    )


@step(cache=False)  # what a pattern or a query names changes while its text does not
def extract(
    pattern: str | None = None,
    *,
    since: Watermark | None = None,
    state: str | None = None,
    sql: str | None = None,
    url: str | None = None,
    duckdb: str | None = None,
    params: dict[str, Any] | list[Any] | None = None,
) -> Dataset:
    """Read tabular data from files, a SQL database or DuckDB into a `Dataset`.

    Give exactly one of ``pattern``, ``sql`` (with ``url``) or ``duckdb``.

    Args:
        pattern: a CSV or Parquet file, or a glob (``data/*.parquet``, ``data/**/*.csv``).
        since: read only files that are new since this watermark (``ds.watermark``).
        state: a JSON file holding the watermark: read only files new since it, then
            advance it (written atomically when the extract returns).
        sql: a query run through SQLAlchemy, with ``:name`` placeholders for ``params``.
        url: the SQLAlchemy URL for ``sql`` (``sqlite:///data.db``, ``postgresql://…``).
        duckdb: a DuckDB query (``select * from 'x.parquet'``), with ``?`` placeholders
            for a list of ``params`` or ``$name`` ones for a dict.
        params: values bound to the query's placeholders (never formatted into it).

    Returns:
        The dataset. For files its ``watermark`` covers everything read so far; with
        nothing new it has no rows and the watermark is unchanged.

    Raises:
        ValidationError: the arguments do not name one source, the pattern matches no
            file, a file cannot be read, or the query fails.
    """
    _check_sources(pattern, sql, url, duckdb, since, state, params)
    if sql is not None:
        assert url is not None
        return _extract_sql(sql, url, params)
    if duckdb is not None:
        return _extract_duckdb(duckdb, params)
    assert pattern is not None
    mark = Watermark.load(state) if state is not None and since is None else since
    dataset = _extract_files(pattern, mark)
    if state is not None and dataset.watermark is not None:
        dataset.watermark.save(state)
    return dataset


def _check_sources(
    pattern: str | None,
    sql: str | None,
    url: str | None,
    duckdb: str | None,
    since: Watermark | None,
    state: str | None,
    params: dict[str, Any] | list[Any] | None,
) -> None:
    given = [name for name, v in (("pattern", pattern), ("sql", sql), ("duckdb", duckdb)) if v]
    if len(given) != 1:
        raise ValidationError("source", f"give exactly one of pattern, sql or duckdb; got {given}")
    if (sql is None) != (url is None):
        raise ValidationError("url", "sql and url go together (url is SQLAlchemy's, for sql)")
    if pattern is None and (since is not None or state is not None):
        raise ValidationError("since", "watermarks (since, state) apply to file patterns")
    if pattern is not None and params:
        raise ValidationError("params", "bind parameters apply to sql and duckdb queries")
    if sql is not None and params is not None and not isinstance(params, dict):
        raise ValidationError("params", "sql binds :name placeholders from a dict")
    if since is not None and not isinstance(since, Watermark):
        raise ValidationError("since", "must be a Watermark (Watermark.from_dict(...) for JSON)")


def _extract_files(pattern: str, since: Watermark | None) -> Dataset:
    matched = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    paths = [os.path.abspath(p) for p in matched if os.path.isfile(p)]
    if not paths:
        raise ValidationError("pattern", f"{pattern!r} matches no file")
    for path in paths:
        if not path.lower().endswith(_READERS):
            kinds = ", ".join(_READERS)
            raise ValidationError("pattern", f"{path} is not CSV or Parquet ({kinds})")
    mark = since or Watermark()
    mtimes = {path: os.stat(path).st_mtime_ns for path in paths}
    new = [path for path in paths if mark.is_new(path, mtimes[path])]
    if not new:
        return Dataset.of(pd.DataFrame(), pattern, (), mark)
    tables = [_read_file(path) for path in new]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationError("pattern", f"the files' columns do not agree: {exc}") from None
    return Dataset.of(table.to_pandas(), pattern, new, mark.advance({p: mtimes[p] for p in new}))


def _read_file(path: str) -> pa.Table:
    try:
        if path.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError("pattern", f"cannot read {path}: {exc}") from None


def _extract_sql(query: str, url: str, params: dict[str, Any] | list[Any] | None) -> Dataset:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    try:
        engine = sa.create_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise ValidationError("url", f"is not a usable SQLAlchemy URL: {exc}") from None
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            result = connection.execute(sa.text(query), params or {})
            columns, rows = list(result.keys()), result.fetchall()
    except sa_exc.DBAPIError as exc:
        raise ValidationError("sql", f"the query failed on {shown}: {exc.orig}") from None
    except sa_exc.StatementError as exc:
        raise ValidationError("params", f"cannot bind the query's parameters: {exc}") from None
    finally:
        engine.dispose()
    frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
    return Dataset.of(frame, f"sql {shown}: {query}")


def _extract_duckdb(query: str, params: dict[str, Any] | list[Any] | None) -> Dataset:
    try:
        import duckdb
    except ImportError:
        raise ValidationError(
            "duckdb", "needs the duckdb package: pip install 'conveyor-mlops[duckdb]'"
        ) from None
    connection = duckdb.connect()
    try:
        relation = connection.sql(query, params=params or None)
        if relation is None:
            raise ValidationError("duckdb", "the statement returns no table; give a query")
        # A relation's to_arrow_table since duckdb 1.4; fetch_arrow_table before.
        names = ("to_arrow_table", "fetch_arrow_table")
        to_table = next(m for m in (getattr(relation, n, None) for n in names) if m is not None)
        table = to_table()
    except duckdb.Error as exc:
        raise ValidationError("duckdb", f"the query failed: {exc}") from None
    finally:
        connection.close()
    return Dataset.of(table.to_pandas(), f"duckdb: {query}")
