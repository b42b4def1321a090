"""The writer lock and the ``runs`` table.

Every writing command takes one lock (a file lock; cron, the scheduler and backfills share it)
and records a ``runs`` row: ``running`` at the start, then ``ok``, ``partial`` or ``failed``.
Because only the lock holder writes, a ``running`` row found by a new lock holder belongs to a
process that died: it is marked ``failed``.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, func, insert, select, update

from pipeline.errors import LockHeld, TrendsError
from pipeline.redact import redact_text
from storage.models import Run

log = logging.getLogger(__name__)

STALE_RUN_ERROR = "the process ended before the run finished (killed or crashed)"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_today() -> date:
    """Today in UTC; ``TRENDS_TODAY=YYYY-MM-DD`` pretends another day (tests, replays)."""
    pretend = os.environ.get("TRENDS_TODAY")
    return date.fromisoformat(pretend) if pretend else datetime.now(UTC).date()


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the writer lock, or raise :class:`LockHeld` at once if another process has it."""
    try:  # filelock reports a file it cannot create as "held": say what is really wrong
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError as error:
        raise TrendsError(
            f"cannot create the writer lock file {path}: {error.strerror or error}"
        ) from None
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeld(f"another run holds the writer lock {path}; nothing done") from None
    try:
        yield
    finally:
        lock.release()


# Any fixed 64-bit number; every framework-trends writer on one PostgreSQL database uses it.
ADVISORY_LOCK_KEY = 0x7472656E6473  # "trends"


@contextmanager
def database_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, also hold a session advisory lock, so writers on different hosts (whose
    lock files differ) exclude each other too. Nothing to do on SQLite: the file lock sits
    beside the database file."""
    if engine.dialect.name != "postgresql":
        yield
        return
    # Autocommit: the lock belongs to the session, and no transaction stays open meanwhile.
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        if not connection.execute(select(func.pg_try_advisory_lock(ADVISORY_LOCK_KEY))).scalar():
            raise LockHeld("another run holds the writer lock on this database; nothing done")
        try:
            yield
        finally:
            connection.execute(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
    finally:
        connection.close()


@dataclass
class LastSuccess:
    started: datetime  # what schedules count from (see ``last_success``)
    finished_at: str


def last_success(connection: Connection, source: str) -> LastSuccess | None:
    """The source's last successful ``collect`` run.

    Schedules count from its start, not its end: a run that began before a fire time may have
    missed what that fire was meant to pick up, so that fire still makes the source due.
    Backfills do not count (a backfill of an old range leaves the source as stale as it was).
    """
    row = connection.execute(
        select(Run.started_at, Run.finished_at)
        .where(Run.source == source, Run.command == "collect", Run.status == "ok")
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return LastSuccess(datetime.fromisoformat(row[0].replace("Z", "+00:00")), row[1])


def fail_stale_runs(engine: Engine) -> int:
    """Mark runs left ``running`` by a dead process as failed. Call only under the lock."""
    with engine.begin() as connection:
        result = connection.execute(
            update(Run)
            .where(Run.status == "running")
            .values(status="failed", finished_at=utc_now(), error=STALE_RUN_ERROR)
        )
    if result.rowcount:
        log.warning("marked %d interrupted run(s) as failed", result.rowcount)
    return result.rowcount


@dataclass
class RunRecord:
    """A run in progress; collectors add to ``requests`` and ``rows`` as they commit work."""

    id: int
    command: str
    source: str | None
    requests: int = 0
    rows: int = 0
    status: str = "ok"
    error: str | None = None

    def partial(self, message: str) -> None:
        self.status, self.error = "partial", message

    def failed(self, message: str) -> None:
        self.status, self.error = "failed", message


def start_run(engine: Engine, command: str, source: str | None = None) -> RunRecord:
    with engine.begin() as connection:
        run_id = connection.execute(
            insert(Run)
            .values(command=command, source=source, status="running", started_at=utc_now())
            .returning(Run.id)
        ).scalar_one()
    return RunRecord(id=run_id, command=command, source=source)


def finish_run(engine: Engine, run: RunRecord) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(Run)
            .where(Run.id == run.id)
            .values(
                status=run.status,
                finished_at=utc_now(),
                requests=run.requests,
                rows=run.rows,
                error=None if run.error is None else redact_text(run.error),
            )
        )


@contextmanager
def recorded_run(engine: Engine, command: str, source: str | None = None) -> Iterator[RunRecord]:
    """Record a run around a block; an exception marks it failed (and propagates)."""
    run = start_run(engine, command, source)
    try:
        yield run
    except BaseException as error:
        message = str(error) or type(error).__name__
        if isinstance(error, KeyboardInterrupt | SystemExit):
            message = "interrupted"
            # Interrupted inside a driver call, a connection is closed with its statement still
            # referenced from the traceback's frames, and SQLite keeps such a connection (and
            # its write lock) until the statement is freed: finish_run would wait the whole
            # busy timeout. Dropping the finished frames' locals frees it; line numbers stay.
            traceback.clear_frames(error.__traceback__)
        run.failed(message)
        raise
    finally:
        finish_run(engine, run)
