"""The project's SQL, one file per concept, loaded by name.

Files are written once for every engine: standard SQL that DuckDB and PostgreSQL both
run, with parameters written as `:name`. `bind` translates them to the driver's
paramstyle (`$name` for DuckDB, `%(name)s` for psycopg2) and picks the values the
statement uses, so a value is always bound by the driver, never formatted into the text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

# `:name`, but not the `::` of a PostgreSQL cast (the files use CAST(... AS ...) anyway).
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_CREATE_TABLE = re.compile(r"CREATE TABLE (\w+)\.(\w+)\s*\((.*?)\);", re.S | re.I)
_COLUMN = re.compile(r"^\s*(\w+)\s+([A-Z]+(?: PRECISION)?(?:\(\d+\))?)(\s+NOT NULL)?\s*,?\s*$", re.I)

PARAMSTYLES = ("dollar", "pyformat")


@cache
def load_sql(name: str) -> str:
    """The text of `sql/<name>.sql`; fails naming the files that exist."""
    path = resources.files(__package__) / f"{name}.sql"
    if not path.is_file():
        known = sorted(p.name[:-4] for p in resources.files(__package__).iterdir() if p.name.endswith(".sql"))
        raise FileNotFoundError(f"no SQL file {name}.sql in {__package__}; known: {', '.join(known)}")
    return path.read_text(encoding="utf-8")


def statements(name: str) -> list[str]:
    """The `;`-separated statements of a parameter-free file (DDL), comments removed."""
    text = "\n".join(line for line in load_sql(name).splitlines() if not line.lstrip().startswith("--"))
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def bind(sql: str, params: dict[str, Any] | None, paramstyle: str) -> tuple[str, dict[str, Any]]:
    """`sql` in the driver's paramstyle and the values of the placeholders it uses.

    Raises KeyError naming a placeholder that `params` lacks.
    """
    if paramstyle not in PARAMSTYLES:
        raise ValueError(f"unknown paramstyle {paramstyle!r}; one of {PARAMSTYLES}")
    params = params or {}
    # Full-line comments go: they may mention `:name` without meaning a placeholder.
    sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    names = list(dict.fromkeys(_PLACEHOLDER.findall(sql)))
    missing = sorted(set(names) - set(params))
    if missing:
        raise KeyError(f"SQL needs parameter(s) {', '.join(':' + m for m in missing)}, not given")
    if paramstyle == "dollar":
        text = _PLACEHOLDER.sub(lambda m: "$" + m.group(1), sql)
    else:
        # psycopg2 formats with %, so a literal % in the SQL must be doubled.
        text = _PLACEHOLDER.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))
    return text, {name: params[name] for name in names}


@cache
def table_columns(ddl_name: str = "mimiciii_tables") -> dict[str, tuple[tuple[str, str, bool], ...]]:
    """Columns of every table a DDL file creates: {table: ((column, type, not_null), ...)}.

    The DDL file is the single place that states the column types; loaders read them
    from here (DuckDB's read_csv needs them, the header check needs the names).
    """
    tables: dict[str, tuple[tuple[str, str, bool], ...]] = {}
    for _schema, table, body in _CREATE_TABLE.findall(load_sql(ddl_name)):
        columns = []
        for line in body.splitlines():
            line = line.split("--", 1)[0]
            if not line.strip():
                continue
            match = _COLUMN.match(line)
            if match is None:
                raise ValueError(f"{ddl_name}.sql, table {table}: cannot parse column line {line.strip()!r}")
            columns.append((match.group(1).lower(), match.group(2).upper(), bool(match.group(3))))
        tables[table.lower()] = tuple(columns)
    return tables


def create_table_statement(table: str, ddl_name: str = "mimiciii_tables") -> str:
    """The CREATE TABLE statement of one table of a DDL file."""
    for match in _CREATE_TABLE.finditer(load_sql(ddl_name)):
        if match.group(2).lower() == table.lower():
            return match.group(0).rstrip(";")
    raise KeyError(f"{ddl_name}.sql creates no table {table!r}")
