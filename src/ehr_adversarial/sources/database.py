"""One interface over the two database engines that hold MIMIC-III.

* `DuckDBDatabase`: an embedded file database (the default; no server).
* `PostgresDatabase`: a PostgreSQL server through psycopg2, e.g. a mimic-code build.

A database object is a handle (engine + where), safe to pass around and to print: it never
shows a password. `with database.connect() as conn:` opens a `Connection` whose methods run
the project's SQL files identically on both engines (`:name` placeholders, bound by the
driver), bulk-load a CSV(.gz) file into a table, and fill temporary tables from DataFrames.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pandas as pd

from ehr_adversarial.sources.sql import bind

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# Rows per round trip when PostgreSQL streams a result to pandas.
_FETCH_ROWS = 200_000
_COPY_CHUNK = 1 << 20
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
# Schemas the project's SQL names; a DuckDB file may not share their name (see connect()).
_RESERVED_DUCKDB_NAMES = ("mimiciii", "ehr_adversarial")


class DatabaseError(RuntimeError):
    """A database operation failed; the message says where and how to fix it."""


class DatabaseConnectionError(DatabaseError):
    """The database cannot be reached or refused the login."""


class CsvLoadError(DatabaseError):
    """A CSV file could not be loaded; the message names the file and line."""


def _identifier(name: str) -> str:
    """`name` if it is a plain lower-case SQL identifier (tables/columns cannot be bound)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return name


def _open_csv(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def readable_lines(path: Path) -> int:
    """How many complete lines of `path` can be read before it breaks (truncated gzip)."""
    lines = 0
    try:
        with _open_csv(path) as stream:
            while chunk := stream.read(_COPY_CHUNK):
                lines += chunk.count(b"\n")
    except (EOFError, OSError, zlib.error):
        pass
    return lines


class _CountingReader(io.RawIOBase):
    """Wraps a CSV stream for COPY: counts lines read and keeps a read error for the message."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.lines = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self._stream.read(size)
        except (EOFError, OSError, zlib.error) as exc:
            self.error = exc
            raise
        self.lines += chunk.count(b"\n")
        return chunk


class Connection:
    """An open connection; engine-specific subclasses implement the primitives."""

    engine: ClassVar[str]
    paramstyle: ClassVar[str]

    def __init__(self, conn: Any, where: str) -> None:
        self._conn = conn  # the driver's connection
        self.where = where
        self._in_transaction = False

    # -- primitives (per engine) ---------------------------------------------------------
    def _run(self, sql: str, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def _fetch(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _autocommit(self) -> None:
        """Commit what a statement outside `transaction()` did."""
        raise NotImplementedError

    def _commit(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()

    def copy_csv(self, table: str, columns: Mapping[str, str], path: Path) -> int:
        """Bulk-load the CSV(.gz) `path` (header line first, columns in file order with their
        SQL types) into `mimiciii.<table>`; returns the rows loaded. CsvLoadError on bad input."""
        raise NotImplementedError

    def _fill_temp_table(self, name: str, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    # -- shared behaviour -----------------------------------------------------------------
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement written with `:name` placeholders."""
        text, values = bind(sql, dict(params or {}), self.paramstyle)
        with self._statement():
            self._run(text, values)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """The result of one SELECT as a DataFrame (callers cast it to their schema)."""
        text, values = bind(sql, dict(params or {}), self.paramstyle)
        with self._statement():
            return self._fetch(text, values)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The single value a query returns."""
        frame = self.query(sql, params)
        return None if frame.empty else frame.iloc[0, 0]

    @contextmanager
    def _statement(self) -> Iterator[None]:
        """Outside `transaction()`, one statement commits on success and is undone on failure."""
        if self._in_transaction:
            yield
            return
        try:
            yield
        except BaseException:
            self._recover()
            raise
        self._autocommit()

    def _recover(self) -> None:
        """Undo a failed statement outside a transaction (PostgreSQL needs it)."""

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Everything inside commits together or not at all."""
        if self._in_transaction:
            raise DatabaseError("nested transactions are not supported")
        self._begin()
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            self._rollback()
            raise
        self._in_transaction = False
        self._commit()

    def table_exists(self, schema: str, table: str) -> bool:
        """Whether `schema.table` exists (information_schema, same on both engines)."""
        return bool(
            self.scalar(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = :schema AND table_name = :table",
                {"schema": schema, "table": table},
            )
        )

    def count_rows(self, schema: str, table: str) -> int:
        """COUNT(*) of `schema.table`."""
        return int(self.scalar(f"SELECT COUNT(*) FROM {_identifier(schema)}.{_identifier(table)}"))

    def create_temp_table(self, name: str, frame: pd.DataFrame, types: Mapping[str, str]) -> None:
        """A session-temporary table `name` with the given column types, filled from `frame`."""
        _identifier(name)
        columns = ", ".join(f"{_identifier(col)} {sql_type}" for col, sql_type in types.items())
        self.execute(f"DROP TABLE IF EXISTS {name}")
        self.execute(f"CREATE TEMPORARY TABLE {name} ({columns})")
        if len(frame):
            with self._statement():
                self._fill_temp_table(name, frame[list(types)])

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBConnection(Connection):
    engine = "duckdb"
    paramstyle = "dollar"

    def _run(self, sql: str, params: dict[str, Any]) -> None:
        self._conn.execute(sql, params)

    def _fetch(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        return self._conn.execute(sql, params).df()

    def _begin(self) -> None:
        self._conn.begin()

    def _autocommit(self) -> None:
        # DuckDB commits each statement outside an explicit transaction by itself.
        pass

    def copy_csv(self, table: str, columns: Mapping[str, str], path: Path) -> int:
        import duckdb

        names = ", ".join(_identifier(col) for col in columns)
        sql = (
            f"INSERT INTO mimiciii.{_identifier(table)} ({names}) "
            "SELECT * FROM read_csv($path, header = true, auto_detect = false, columns = $columns, "
            "delim = ',', quote = '\"', escape = '\"', allow_quoted_nulls = false, "
            f"timestampformat = '{_TIMESTAMP_FORMAT}')"
        )
        try:
            return int(self._conn.execute(sql, {"path": str(path), "columns": dict(columns)}).fetchone()[0])
        except duckdb.Error as exc:
            raise CsvLoadError(_duckdb_csv_message(path, table, exc)) from None

    def _fill_temp_table(self, name: str, frame: pd.DataFrame) -> None:
        # A registered DataFrame is a zero-copy view; the INSERT casts to the declared types.
        self._conn.register("_ehr_frame", frame)
        try:
            self._conn.execute(f"INSERT INTO {name} SELECT * FROM _ehr_frame")
        finally:
            self._conn.unregister("_ehr_frame")


def _duckdb_csv_message(path: Path, table: str, exc: Exception) -> str:
    """DuckDB's CSV error reduced to file, line and reason."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    if line:
        reason = next(
            (ln.strip() for ln in text.splitlines() if ln.startswith(("Error when converting", "Expected Number"))),
            text.splitlines()[0],
        )
        original = re.search(r"Original Line: (.*)", text)
        shown = f"; the line reads: {original.group(1)[:300]}" if original else ""
        return f"{path}, line {line.group(1)}: {reason}{shown}"
    if "gzip" in text.lower() or "GZIP" in text:
        return (
            f"{path}: the gzip file is truncated or corrupt after line {readable_lines(path)} "
            f"({text.splitlines()[0]}); download it again"
        )
    return f"{path}: loading into mimiciii.{table} failed: {text.splitlines()[0]}"


# pandas dtypes of PostgreSQL result columns by type OID (psycopg2's cursor.description).
_PG_DTYPES = {
    16: "boolean",  # bool
    20: "Int64",  # int8
    21: "Int64",  # int2
    23: "Int64",  # int4
    700: "float64",  # float4
    701: "float64",  # float8
    1700: "float64",  # numeric
    25: "str",  # text
    1042: "str",  # char(n)
    1043: "str",  # varchar
    1114: "datetime64[us]",  # timestamp
}


def _typed_frame(rows: list[tuple], description: Any) -> pd.DataFrame:
    """Rows of a PostgreSQL result as a DataFrame typed by the result's column types, not by
    the values (an all-NULL column would otherwise come back as object)."""
    frame = pd.DataFrame.from_records(rows, columns=[d.name for d in description])
    return frame.astype({d.name: _PG_DTYPES[d.type_code] for d in description if d.type_code in _PG_DTYPES})


class PostgresConnection(Connection):
    engine = "postgres"
    paramstyle = "pyformat"

    def __init__(self, conn: Any, where: str) -> None:
        super().__init__(conn, where)
        self._cursor_seq = 0

    def _run(self, sql: str, params: dict[str, Any]) -> None:
        with self._conn.cursor() as cur:
            cur.execute(sql, params or None)

    def _fetch(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        # A server-side cursor streams the result in chunks, so a large measurement table
        # never exists as one list of Python tuples.
        self._cursor_seq += 1
        with self._conn.cursor(name=f"ehr_fetch_{self._cursor_seq}") as cur:
            cur.itersize = _FETCH_ROWS
            cur.execute(sql, params or None)
            chunks = []
            while rows := cur.fetchmany(_FETCH_ROWS):
                chunks.append(_typed_frame(rows, cur.description))
                del rows  # only one chunk of Python row tuples alive at a time
            if not chunks:
                return _typed_frame([], cur.description or [])
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)

    def _begin(self) -> None:
        # psycopg2 opens a transaction with the first statement; nothing to do.
        pass

    def _autocommit(self) -> None:
        self._conn.commit()

    def _recover(self) -> None:
        self._conn.rollback()

    def copy_csv(self, table: str, columns: Mapping[str, str], path: Path) -> int:
        import psycopg2

        names = ", ".join(_identifier(col) for col in columns)
        sql = (
            f"COPY mimiciii.{_identifier(table)} ({names}) FROM STDIN "
            "WITH (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', ESCAPE '\"')"
        )
        with _open_csv(path) as stream, self._conn.cursor() as cur:
            reader = _CountingReader(stream)
            try:
                # Streams the (decompressed) file to the server; no row-by-row inserts.
                cur.copy_expert(sql, reader, size=_COPY_CHUNK)
            except psycopg2.Error as exc:
                if reader.error is not None:
                    raise CsvLoadError(
                        f"{path}: the gzip file is truncated or corrupt after line {reader.lines} "
                        f"({reader.error}); download it again"
                    ) from None
                context = getattr(exc.diag, "context", None) or ""
                line = re.search(r"line (\d+)", context)
                where = f", line {line.group(1)}" if line else ""
                reason = (exc.diag.message_primary or str(exc)).strip()
                detail = f" ({context.strip()})" if context else ""
                raise CsvLoadError(f"{path}{where}: {reason}{detail}") from None
            return cur.rowcount

    def _fill_temp_table(self, name: str, frame: pd.DataFrame) -> None:
        # COPY from an in-memory CSV: one round trip, and floats keep full precision (repr).
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False, na_rep="", date_format="%Y-%m-%d %H:%M:%S.%f")
        buffer.seek(0)
        with self._conn.cursor() as cur:
            cur.copy_expert(f"COPY {name} FROM STDIN WITH (FORMAT csv)", buffer)


@dataclass(frozen=True)
class DuckDBDatabase:
    """An embedded DuckDB file (created on first use)."""

    path: str
    memory_limit: str | None = None
    threads: int | None = None
    engine: ClassVar[str] = "duckdb"

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "path": str(self.path)}

    @property
    def where(self) -> str:
        return f"DuckDB file {self.path}"

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        import duckdb

        if Path(self.path).stem.lower() in _RESERVED_DUCKDB_NAMES:
            # DuckDB names the catalog after the file; a catalog `mimiciii` makes
            # `mimiciii.<table>` ambiguous.
            raise DatabaseConnectionError(
                f"DuckDB file {self.path}: its name may not be one of {_RESERVED_DUCKDB_NAMES}; rename it"
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.threads:
            config["threads"] = int(self.threads)
        try:
            raw = duckdb.connect(str(self.path), config=config)
        except duckdb.Error as exc:
            raise DatabaseConnectionError(f"cannot open {self.where}: {str(exc).splitlines()[0]}") from None
        with DuckDBConnection(raw, self.where) as conn:
            yield conn

    def ping(self) -> None:
        """Open and close once, so a bad path fails before any node runs."""
        with self.connect():
            pass


@dataclass(frozen=True)
class PostgresDatabase:
    """A PostgreSQL database reached through psycopg2. The password never appears in repr,
    logs or error messages."""

    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "mimic"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    connect_timeout: int = 10
    options: dict[str, Any] = field(default_factory=dict)
    engine: ClassVar[str] = "postgres"

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "host": self.host, "port": int(self.port), "dbname": self.dbname, "user": self.user}

    @property
    def where(self) -> str:
        user = f" as user {self.user!r}" if self.user else ""
        return f"PostgreSQL database {self.dbname!r} at {self.host}:{self.port}{user}"

    def __repr__(self) -> str:
        return f"PostgresDatabase(host={self.host!r}, port={self.port!r}, dbname={self.dbname!r}, user={self.user!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        import psycopg2

        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": int(self.port),
            "dbname": self.dbname,
            "connect_timeout": int(self.connect_timeout),
            "application_name": "ehr_adversarial",
            "client_encoding": "UTF8",
            **self.options,
        }
        if self.user:
            kwargs["user"] = self.user
        if self.password:
            kwargs["password"] = self.password
        try:
            raw = psycopg2.connect(**kwargs)
        except psycopg2.Error as exc:
            reason = " ".join(self._scrub(str(exc)).split())
            raise DatabaseConnectionError(
                f"cannot connect to {self.where}: {reason}. Check host, port and dbname in the "
                "catalog entry, and the user/password in conf/local/credentials.yml or PGPASSWORD."
            ) from None
        with PostgresConnection(raw, self.where) as conn:
            yield conn

    def ping(self) -> None:
        """Connect once, so an unreachable server or a refused login fails early."""
        with self.connect():
            pass

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: Any) -> PostgresDatabase:
        """A handle from a libpq DSN ("host=... port=... user=... dbname=..."), with overrides."""
        from psycopg2.extensions import parse_dsn

        settings = parse_dsn(dsn)
        values = {
            "host": settings.get("host", "127.0.0.1"),
            "port": int(settings.get("port", 5432)),
            "dbname": settings.get("dbname", "postgres"),
            "user": settings.get("user"),
            "password": settings.get("password"),
            **overrides,
        }
        return cls(**values)

    def create_database(self, dbname: str) -> PostgresDatabase:
        """Create database `dbname` on this server (connected through this handle's database)
        and return a handle to it. CREATE DATABASE cannot run inside a transaction."""
        self._run_autocommit(f"CREATE DATABASE {_identifier(dbname)}")
        return replace(self, dbname=dbname)

    def drop_database(self, dbname: str) -> None:
        """Drop database `dbname` on this server, closing its sessions (PostgreSQL >= 13)."""
        self._run_autocommit(f"DROP DATABASE IF EXISTS {_identifier(dbname)} WITH (FORCE)")

    def _run_autocommit(self, sql: str) -> None:
        with self.connect() as conn:
            raw = conn._conn  # noqa: SLF001 (this module's own connection class)
            raw.autocommit = True
            with raw.cursor() as cur:
                cur.execute(sql)


Database = DuckDBDatabase | PostgresDatabase
