"""Read-only SQL for ``trends sql`` and ``trends export --query``.

SQLite: the file is opened with ``mode=ro`` and ``query_only``, and an authorizer allows only
reads, so writes, DDL, ATTACH, extension loading and writing PRAGMAs are refused before they run.
PostgreSQL: the statement runs in a ``READ ONLY`` transaction that is always rolled back,
through a server-side cursor (``DECLARE … CURSOR FOR``), which takes exactly one SELECT, VALUES
or TABLE query: a second statement (``…; COMMIT; BEGIN READ WRITE; …``) or ``COPY … TO
PROGRAM`` is a syntax error before anything runs, and rows arrive in chunks. Functions with
effects outside the transaction (``pg_terminate_backend``) are up to the role's privileges: give
``trends sql`` a read-only role for untrusted queries (docs/QUERYING.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from pipeline.errors import UsageError

READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
# PRAGMAs that only read, even when given an argument such as a table name.
READ_PRAGMAS_WITH_ARGUMENT = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
}
# PRAGMAs that act even without an argument.
ACTING_PRAGMAS = {"optimize", "wal_checkpoint", "shrink_memory", "incremental_vacuum"}
FORBIDDEN_FUNCTIONS = {"load_extension"}


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action == sqlite3.SQLITE_FUNCTION:
        return (
            sqlite3.SQLITE_DENY
            if (arg2 or "").lower() in FORBIDDEN_FUNCTIONS
            else sqlite3.SQLITE_OK
        )
    if action in READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if arg2 is None and name not in ACTING_PRAGMAS:
            return sqlite3.SQLITE_OK
        if name in READ_PRAGMAS_WITH_ARGUMENT:
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@dataclass
class QueryResult:
    columns: list[str]
    rows: Iterator[tuple[Any, ...]]


def _message(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


def _refusal(error: Exception, *, postgresql: bool) -> UsageError:
    message = _message(error)
    if "not authorized" in message or "read-only" in message or "readonly" in message:
        message = f"only read-only queries are allowed ({message})"
    elif postgresql and getattr(error, "sqlstate", None) == "42601":  # syntax error
        message += " (one SELECT, WITH … SELECT, VALUES or TABLE query is allowed)"
    return UsageError(f"query refused: {message}")


def _translated(error: Exception, *, started: bool, postgresql: bool) -> BaseException:
    """What a driver error means to the user: Ctrl-C, a refused query (before it ran) or a
    failed one (part-way); anything else is re-raised as it is."""
    if isinstance(error, sqlite3.OperationalError) and str(error) == "interrupted":
        return KeyboardInterrupt()  # the progress callback let a Ctrl-C in
    if not _is_driver_error(error):
        return error
    if started:
        return UsageError(f"query failed: {_message(error)}")
    return _refusal(error, postgresql=postgresql)


PROGRESS_EVERY = 100_000  # SQLite VM steps between two progress callbacks (~1 ms)


def _let_signals_in() -> int:
    return 0  # 0: go on; a KeyboardInterrupt raised meanwhile makes SQLite stop the query


def _is_driver_error(error: Exception) -> bool:
    # psycopg's errors share no base class with sqlite3's or SQLAlchemy's.
    return isinstance(error, sqlite3.Error | DBAPIError) or type(error).__module__.startswith(
        "psycopg"
    )


@contextmanager
def readonly_query(
    engine: Engine, sql: str, params: dict[str, Any] | None = None, *, chunk: int = 10_000
) -> Iterator[QueryResult]:
    """Run one read-only statement; rows stream while the context is open."""
    connection = engine.raw_connection()
    try:
        driver = connection.driver_connection
        is_sqlite = isinstance(driver, sqlite3.Connection)
        if is_sqlite:
            driver.set_authorizer(_authorize)
            # Python runs signal handlers only between bytecodes, never inside one long
            # sqlite3 step: a no-op progress callback lets Ctrl-C in (the query then stops
            # with "interrupted").
            driver.set_progress_handler(_let_signals_in, PROGRESS_EVERY)
            cursor = connection.cursor()
        else:
            connection.cursor().execute("SET TRANSACTION READ ONLY")
            cursor = driver.cursor(name="trends_readonly_query")
        try:
            if params:
                cursor.execute(sql, params)
            else:
                cursor.execute(sql)
        except Exception as error:
            raise _translated(error, started=False, postgresql=not is_sqlite) from None
        if cursor.description is None:
            raise UsageError(
                "query refused: the statement returns no rows (only SELECT is allowed)"
            )
        columns = [column[0] for column in cursor.description]

        def rows() -> Iterator[tuple[Any, ...]]:
            try:
                while batch := cursor.fetchmany(chunk):
                    yield from (tuple(row) for row in batch)
            except Exception as error:  # part-way: division by zero, overflow, Ctrl-C, …
                raise _translated(error, started=True, postgresql=not is_sqlite) from None

        yield QueryResult(columns, rows())
    finally:
        try:
            connection.rollback()
        finally:
            if isinstance(connection.driver_connection, sqlite3.Connection):
                connection.driver_connection.set_authorizer(None)
                connection.driver_connection.set_progress_handler(None, 0)
            connection.close()
