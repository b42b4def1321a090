"""Engines: SQLite pragmas and transactions done right, PostgreSQL through the same code.

Python 3.11's sqlite3 driver does not emit BEGIN for DDL or SELECT ("legacy transaction
control"), so DDL is not transactional and SAVEPOINTs misbehave. SQLAlchemy's documented fix is
used: let the driver autocommit and emit BEGIN ourselves. Writers use ``BEGIN IMMEDIATE`` so they
take the write lock up front (waiting up to the busy timeout) instead of failing half-way.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_MS = 30_000  # SQLite busy timeout; PostgreSQL lock_timeout
CONNECT_TIMEOUT_S = 10  # PostgreSQL
WAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or other backends)."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def postgres_connect_args(url: str, *, readonly: bool = False) -> dict[str, Any]:
    """libpq settings that keep a PostgreSQL run from hanging, as the busy timeout does for
    SQLite: give up connecting after ``CONNECT_TIMEOUT_S`` (an unreachable host would otherwise
    hold a cron job for minutes) and on a table lock held by another session after
    ``BUSY_TIMEOUT_MS``. Settings in the URL (``?connect_timeout=…``,
    ``?options=-c lock_timeout=…``) win: libpq applies the last ``-c`` of a name."""
    query = make_url(url).query
    options = [f"-c lock_timeout={BUSY_TIMEOUT_MS}"]
    if readonly:
        options.append("-c default_transaction_read_only=on")
    given = query.get("options")
    options += [given] if isinstance(given, str) else list(given or ())
    connect_args: dict[str, Any] = {"options": " ".join(options)}
    if "connect_timeout" not in query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return connect_args


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys, and
    PostgreSQL connect and lock timeouts (:func:`postgres_connect_args`).

    ``readonly`` opens SQLite with ``mode=ro`` and ``query_only`` and PostgreSQL with read-only
    transactions, for ``trends sql`` and other readers.
    """
    if not is_sqlite(url):
        return create_engine(url, connect_args=postgres_connect_args(url, readonly=readonly))

    db_file = sqlite_file(url)
    if readonly:
        if db_file is None or not db_file.exists():
            raise FileNotFoundError(f"database {db_file or url} does not exist yet")
        # A URI keeps the driver from creating the file and refuses writes at the file level.
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(
                f"file:{db_file.resolve()}?mode=ro", uri=True, check_same_thread=False
            ),
        )
    else:
        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if readonly:
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # After a checkpoint, cut the WAL back to this size: a big import (45 MB) or a
            # reader that kept it from being reset would otherwise leave it large for good.
            cursor.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine
