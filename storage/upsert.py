"""One portable, idempotent upsert: ``INSERT … ON CONFLICT (key) DO UPDATE`` on SQLite and
PostgreSQL, updating a row only when one of its values actually changed.

The statement is compiled once and run through the driver's ``executemany`` with plain tuples
(or dicts for PostgreSQL's named parameters), which keeps it close to raw-driver speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase

CHUNK_ROWS = 10_000


def _insert_for(connection: Connection):  # noqa: ANN202 - dialect-specific Insert constructors
    name = connection.dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise NotImplementedError(f"upsert is not implemented for {name}")


def _table(target: Table | type[DeclarativeBase]) -> Table:
    return target if isinstance(target, Table) else target.__table__  # type: ignore[return-value]


def upsert(
    connection: Connection,
    target: Table | type[DeclarativeBase],
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    key: Sequence[str],
    columns: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` into ``target``, updating existing rows that match on ``key``.

    ``rows`` are mappings, or tuples of values in the order of ``columns`` (the fast form for
    bulk loads: nothing is built per row). ``columns`` are the columns written (default: the
    keys of the first row). Rows whose values are unchanged are left alone, so a repeated upsert
    changes nothing. Returns the number of rows inserted or changed. Runs inside the caller's
    transaction.
    """
    table = _table(target)

    def on_conflict(statement: Any, names: list[str]) -> Any:
        updatable = [name for name in names if name not in key]
        if not updatable:
            return statement.on_conflict_do_nothing(index_elements=list(key))
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=list(key),
            set_={name: excluded[name] for name in updatable},
            where=or_(*(table.c[name].is_distinct_from(excluded[name]) for name in updatable)),
        )

    return _insert_many(connection, table, rows, columns, on_conflict)


def insert_rows(
    connection: Connection,
    target: Table | type[DeclarativeBase],
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    columns: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` (mappings, or tuples in the order of ``columns``) into ``target``, in
    batches, inside the caller's transaction. Returns the number of rows inserted."""
    return _insert_many(connection, _table(target), rows, columns)


def _insert_many(
    connection: Connection,
    table: Table,
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    columns: Sequence[str] | None,
    finish: Callable[[Any, list[str]], Any] | None = None,
) -> int:
    """Insert ``rows`` in batches through one compiled statement, ``finish``-ed (an ON
    CONFLICT clause) when given. Returns the rows the driver reports inserted or changed."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    if not isinstance(first, Mapping) and columns is None:
        raise ValueError("rows given as tuples need the column names (columns=…)")
    names = list(columns or first.keys())
    # inline(): no implicit RETURNING of the primary key, which executemany does not need.
    statement = _insert_for(connection)(table).inline().values({n: bindparam(n) for n in names})
    if finish is not None:
        statement = finish(statement, names)
    return _execute_many(connection, statement, names, first, iterator)


def _execute_many(
    connection: Connection, statement: Any, names: list[str], first: Any, rest: Iterator[Any]
) -> int:
    """Send ``first`` and ``rest`` through ``statement`` in batches of CHUNK_ROWS."""
    compiled = statement.compile(dialect=connection.dialect)
    sql = str(compiled)
    positional = compiled.positiontup is not None
    order = list(compiled.positiontup) if positional else names
    as_tuples = not isinstance(first, Mapping)

    def as_params(row: Any) -> Any:
        if as_tuples:
            row = dict(zip(names, row, strict=True))
        if positional:
            return tuple(row[name] for name in order)
        return {name: row[name] for name in order}

    ready = as_tuples and positional and order == names  # rows go to the driver as they are
    changed = 0
    batch = [first, *islice(rest, CHUNK_ROWS - 1)]
    while batch:
        params = batch if ready else [as_params(row) for row in batch]
        result = connection.exec_driver_sql(sql, params)
        changed += max(result.rowcount, 0)
        batch = list(islice(rest, CHUNK_ROWS))
    return changed


def replace_rows(
    connection: Connection,
    target: Table | type[DeclarativeBase],
    rows: list[Mapping[str, Any]],
    key: Sequence[str],
    scope: Sequence[Any],
) -> int:
    """Make the rows matching ``scope`` (WHERE clauses) exactly ``rows``: upsert them and
    delete the others. Unchanged rows are not touched, so rebuilding derived data that did not
    change changes nothing (ids and all). Returns the rows inserted, changed or deleted."""
    table = _table(target)
    changed = upsert(connection, table, rows, key) if rows else 0
    wanted = {tuple(row[name] for name in key) for row in rows}
    existing = connection.execute(
        select(table.c.id, *(table.c[name] for name in key)).where(*scope)
    )
    stale = [row[0] for row in existing if tuple(row[1:]) not in wanted]
    for first in range(0, len(stale), CHUNK_ROWS):
        connection.execute(delete(table).where(table.c.id.in_(stale[first : first + CHUNK_ROWS])))
    return changed + len(stale)
