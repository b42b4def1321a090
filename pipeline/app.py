"""The application object every command starts from: settings, engines, the writer lock."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import Engine

from pipeline.config import Settings, load_settings
from pipeline.errors import LockHeld, UsageError
from pipeline.runlog import database_lock, fail_stale_runs, writer_lock
from storage import migrate
from storage.db import make_engine, sqlite_file

MIGRATION_WAIT_SECONDS = 60.0


class App:
    """Settings plus lazily created engines. Creating an ``App`` touches no file or network."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> App:
        return cls(load_settings(path))

    @cached_property
    def engine(self) -> Engine:
        _check_sqlite_file(self.settings.database.url)
        return make_engine(self.settings.database.url)

    @cached_property
    def readonly_engine(self) -> Engine:
        self.prepare_for_reading()
        return make_engine(self.settings.database.url, readonly=True)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock with the schema migrated and interrupted runs closed."""
        with writer_lock(self.settings.lock_path), database_lock(self.engine):
            migrate.upgrade(self.engine)
            fail_stale_runs(self.engine)
            yield

    def prepare_for_reading(self) -> None:
        """Make sure readers find the current schema: create or migrate the database first.

        The check reads through a read-only connection, so a reader never waits for a writer
        (the write engine begins every transaction with BEGIN IMMEDIATE). Migrating needs the
        writer lock; when another process holds it while the schema is behind, that process is
        migrating (writers migrate first): the reader waits for it, up to
        ``MIGRATION_WAIT_SECONDS``, instead of failing with "lock held" (exit 75).
        """
        _check_sqlite_file(self.settings.database.url)
        db_file = sqlite_file(self.settings.database.url)
        if db_file is not None and not db_file.exists():
            with self.writing():
                return
        deadline = time.monotonic() + MIGRATION_WAIT_SECONDS
        while self._schema_behind():
            try:
                with self.writing():
                    return
            except LockHeld:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _schema_behind(self) -> bool:
        reader = make_engine(self.settings.database.url, readonly=True)
        try:
            return migrate.pending(reader)
        finally:
            reader.dispose()

    def close(self) -> None:
        for name in ("engine", "readonly_engine"):
            engine = self.__dict__.pop(name, None)
            if engine is not None:
                engine.dispose()


def _check_sqlite_file(url: str) -> None:
    """A configured file that is not SQLite is a configuration error naming the file (the
    driver only says "file is not a database", at the first query).

    The file is read through SQLite, never with ``open()``: closing any descriptor of a file
    drops every POSIX lock the process holds on it, including those of its open SQLite
    connections. Another process closing its connection then believes it is the last one and
    deletes the WAL our connections still write into, losing what they commit. SQLite's own
    connections know about each other and keep the locks.
    """
    db_file = sqlite_file(url)
    if db_file is None or not db_file.is_file() or db_file.stat().st_size == 0:
        return  # missing or empty: a new, empty database
    try:
        probe = sqlite3.connect(f"file:{db_file.resolve()}?mode=ro", uri=True)
        try:
            probe.execute("PRAGMA schema_version")
        finally:
            probe.close()
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise UsageError(f"[database] url: {db_file} is not a SQLite database") from None
        # Anything else (permissions, a lock) is the real connection's to report.
