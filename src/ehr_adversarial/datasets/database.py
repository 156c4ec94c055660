"""A Kedro dataset whose load() returns a database handle (DuckDB file or PostgreSQL server).

Catalog examples::

    mimic3.database:                      # embedded default
      type: ehr_adversarial.datasets.database.DatabaseDataset
      engine: duckdb
      filepath: data/01_raw/mimic3/mimic3.duckdb

    mimic3.database:                      # PostgreSQL (password from credentials, never logged)
      type: ehr_adversarial.datasets.database.DatabaseDataset
      engine: postgres
      host: 127.0.0.1
      port: 5432
      dbname: mimic
      credentials: mimic3_postgres        # {user, password}

The handle is not an open connection: nodes open one with `with database.connect() as conn`
and it closes when the node is done. load() connects once, so an unreachable server or a
refused login stops the run before any node starts, with host/port/dbname in the message.
"""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError

from ehr_adversarial.sources.database import (
    Database,
    DatabaseError,
    DuckDBDatabase,
    PostgresDatabase,
)

ENGINES = ("duckdb", "postgres")
_POSTGRES_KEYS = ("host", "port", "dbname", "user", "password", "connect_timeout")


class DatabaseDataset(AbstractDataset[None, Database]):
    """Loads a `DuckDBDatabase` or `PostgresDatabase` handle; saving is not supported."""

    def __init__(
        self,
        engine: str = "duckdb",
        filepath: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        dbname: str | None = None,
        user: str | None = None,
        connect_timeout: int = 10,
        credentials: dict[str, Any] | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise DatasetError(f"DatabaseDataset: engine is {engine!r}; use one of {ENGINES}")
        self._engine = engine
        self.metadata = metadata
        if engine == "duckdb":
            if not filepath:
                raise DatasetError("DatabaseDataset(engine=duckdb) needs a filepath for the database file")
            self._database: Database = DuckDBDatabase(path=str(filepath), memory_limit=memory_limit, threads=threads)
            return
        settings: dict[str, Any] = {"host": host, "port": port, "dbname": dbname, "user": user, "connect_timeout": connect_timeout}
        # Credentials may carry any connection setting (commonly user and password).
        unknown = set(credentials or {}) - set(_POSTGRES_KEYS)
        if unknown:
            raise DatasetError(f"DatabaseDataset credentials: unknown keys {sorted(unknown)}; use {_POSTGRES_KEYS}")
        settings.update({key: value for key, value in (credentials or {}).items() if value is not None})
        missing = [key for key in ("host", "port", "dbname") if settings.get(key) in (None, "")]
        if missing:
            raise DatasetError(f"DatabaseDataset(engine=postgres) needs {', '.join(missing)}")
        settings["port"] = int(settings["port"])
        self._database = PostgresDatabase(**{k: v for k, v in settings.items() if v is not None})

    def load(self) -> Database:
        try:
            self._database.ping()
        except DatabaseError as exc:
            raise DatasetError(str(exc)) from None
        return self._database

    def save(self, data: None) -> None:
        raise DatasetError("DatabaseDataset is read-only: nodes write through the handle that load() returns")

    def _describe(self) -> dict[str, Any]:
        # Never the password.
        return self._database.describe()

    def _exists(self) -> bool:
        try:
            self._database.ping()
        except DatabaseError:
            return False
        return True
