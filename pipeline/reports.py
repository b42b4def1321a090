"""Read-side library functions behind ``trends runs``, ``status``, ``shares`` and ``export``."""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, inspect, select

from pipeline.errors import StepFailed, UsageError
from pipeline.output import atomic_path, write_parquet, write_rows
from pipeline.readonly import readonly_query
from pipeline.runlog import last_success
from storage.models import Base, FrameworkShare, Run

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.sources import Source

GRANULARITIES = ("day", "week", "month", "quarter", "year")


def recent_runs(engine: Engine, limit: int = 20) -> tuple[list[str], list[tuple[Any, ...]]]:
    columns = [
        "id",
        "command",
        "source",
        "status",
        "started_at",
        "finished_at",
        "requests",
        "rows",
        "error",
    ]
    query = select(*(getattr(Run, c) for c in columns)).order_by(Run.id.desc()).limit(limit)
    with engine.connect() as connection:
        return columns, [tuple(row) for row in connection.execute(query)]


@dataclass
class SourceStatus:
    """One enabled source's health, as ``trends status`` shows it."""

    source: str
    schedule: str
    last_success: str | None  # when the last successful collect run finished
    last_failure: str | None
    last_error: str | None
    next_due: str | None  # None: due now (never succeeded)
    freshness: str  # ok | due | overdue | never
    share_rows: int
    latest_period: str | None
    stored_rows: str  # rows its runs wrote to tables with a run_id, e.g. "raw_responses=3"

    @property
    def overdue(self) -> bool:
        return self.freshness in ("overdue", "never")


STATUS_COLUMNS = [f.name for f in dataclasses.fields(SourceStatus)]


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _freshness(due_at: datetime | None, now: datetime, grace: timedelta) -> str:
    if due_at is None:
        return "never"
    if due_at > now:
        return "ok"
    return "due" if now - due_at <= grace else "overdue"


def _stored_rows(connection: Connection, source: str) -> str:
    """Rows the source's runs wrote, for every table that records its run (``run_id``)."""
    counts = []
    for table in Base.metadata.sorted_tables:
        if "run_id" not in table.c:
            continue
        count = connection.execute(
            select(func.count())
            .select_from(table.join(Run.__table__, table.c.run_id == Run.id))
            .where(Run.source == source)
        ).scalar_one()
        if count:
            counts.append(f"{table.name}={count}")
    return ", ".join(counts)


def source_status(
    engine: Engine, settings: Settings, sources: list[Source], now: datetime | None = None
) -> list[SourceStatus]:
    """Per source: last success and failure, freshness against its schedule, rows it has.

    Overdue: the schedule fired more than ``[scheduler] misfire_grace_hours`` ago without a
    successful ``collect`` since (or the source never succeeded).
    """
    from pipeline.schedule import next_due  # local imports keep `trends --help` light

    now = now or datetime.now(UTC)
    grace = timedelta(hours=settings.scheduler.misfire_grace_hours)
    statuses = []
    with engine.connect() as connection:
        for source in sources:
            success = last_success(connection, source.name)
            failure = connection.execute(
                select(Run.finished_at, Run.error)
                .where(Run.source == source.name, Run.status.in_(("failed", "partial")))
                .order_by(Run.id.desc())
                .limit(1)
            ).first()
            rows, latest = connection.execute(
                select(func.count(), func.max(FrameworkShare.period_start)).where(
                    FrameworkShare.source == source.share_source
                )
            ).one()
            due_at = next_due(settings, source, success.started if success else None)
            statuses.append(
                SourceStatus(
                    source=source.name,
                    schedule=f"{source.schedule(settings)} ({settings.scheduler.timezone})",
                    last_success=success.finished_at if success else None,
                    last_failure=failure[0] if failure else None,
                    last_error=failure[1] if failure else None,
                    next_due=_iso(due_at),
                    freshness=_freshness(due_at, now, grace),
                    share_rows=rows,
                    latest_period=latest,
                    stored_rows=_stored_rows(connection, source.name),
                )
            )
    return statuses


def check_fresh(statuses: list[SourceStatus]) -> None:
    """Raise :class:`StepFailed` (exit 1, for monitoring) when an enabled source is overdue."""
    late = [
        f"{s.source} ({'never collected' if s.freshness == 'never' else f'due {s.next_due}'})"
        for s in statuses
        if s.overdue
    ]
    if late:
        raise StepFailed(f"overdue: {', '.join(late)}")


def parse_date(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):  # fromisoformat takes 20240101 too
            raise ValueError(text)
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise UsageError(f"{option}: expected a date YYYY-MM-DD, got {text!r}") from None


def share_filters(
    source: str | None, start: str | None, end: str | None
) -> tuple[str | None, str | None]:
    """Check ``--source`` against the sources that write shares and the dates of
    ``--start``/``--end``; returns the dates as ISO strings."""
    from pipeline.sources import SOURCES

    known = sorted({s.share_source for s in SOURCES.values()})
    if source is not None and source not in known:
        stored_as = SOURCES[source].share_source if source in SOURCES else None
        hint = f" (its shares are stored as source {stored_as!r})" if stored_as else ""
        raise UsageError(f"--source: unknown source {source!r}{hint}; one of {', '.join(known)}")
    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    if first and last and last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    return first, last


def read_shares(
    engine: Engine,
    source: str | None = None,
    granularity: str | None = None,
    start: str | None = None,
    end: str | None = None,
    latest: bool = False,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``framework_share`` rows in long form, filtered, oldest period first.

    ``latest`` keeps only the most recent period of each source, variant and granularity.
    """
    columns = ["source", "variant", "granularity", "period_start", "framework", "value", "share"]
    query = select(*(getattr(FrameworkShare, c) for c in columns))
    if source:
        query = query.where(FrameworkShare.source == source)
    if granularity:
        query = query.where(FrameworkShare.granularity == granularity)
    if start:
        query = query.where(FrameworkShare.period_start >= start)
    if end:
        query = query.where(FrameworkShare.period_start <= end)
    query = query.order_by(
        FrameworkShare.source,
        FrameworkShare.variant,
        FrameworkShare.granularity,
        FrameworkShare.period_start,
        FrameworkShare.share.desc(),
        FrameworkShare.framework,  # ties (often shares of 0) in the same order on any backend
    )
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(query)]
    if latest:
        newest: dict[tuple[Any, ...], str] = {}
        for row in rows:
            newest[row[:3]] = max(newest.get(row[:3], ""), row[3])
        rows = [row for row in rows if row[3] == newest[row[:3]]]
    return columns, rows


def pivot_shares(
    rows: list[tuple[Any, ...]], frameworks: list[str]
) -> dict[tuple[str, str, str], tuple[list[str], list[list[Any]]]]:
    """Wide tables for reading: one per (source, variant, granularity), shares in percent."""
    groups: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for source, variant, granularity, period, framework, _value, share in rows:
        groups.setdefault((source, variant, granularity), {}).setdefault(period, {})[framework] = (
            share
        )
    tables = {}
    for group, periods in groups.items():
        present = {f for shares in periods.values() for f in shares}
        order = [f for f in frameworks if f in present] + sorted(present - set(frameworks))
        body = [
            [period, *(_percent(shares.get(f)) for f in order)]
            for period, shares in sorted(periods.items())
        ]
        tables[group] = (["period_start", *order], body)
    return tables


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.1f}%"


def exportable_names(engine: Engine) -> list[str]:
    inspector = inspect(engine)
    names = inspector.get_table_names() + inspector.get_view_names()
    return sorted(name for name in names if name != "alembic_version")


def _whole_table(engine: Engine, name: str) -> str:
    """``SELECT *`` in a stable order: by the primary key, or by every column (views), so an
    export is the same file on SQLite and PostgreSQL and from one run to the next."""
    inspector = inspect(engine)
    order = inspector.get_pk_constraint(name).get("constrained_columns") or [
        column["name"] for column in inspector.get_columns(name)
    ]
    return f'SELECT * FROM "{name}" ORDER BY ' + ", ".join(f'"{c}"' for c in order)


def export(
    engine: Engine, fmt: str, output: Path, table: str | None = None, query: str | None = None
) -> int:
    """Write a table, view or read-only query to ``output``; the file appears only when complete."""
    if (table is None) == (query is None):
        raise UsageError("give exactly one of --table or --query")
    if table is not None:
        names = exportable_names(engine)
        if table not in names:
            raise UsageError(f"no table or view named {table!r} (one of: {', '.join(names)})")
        query = _whole_table(engine, table)
    assert query is not None
    if str(output) == "-":  # standard output, for pipes
        if fmt == "parquet":
            raise UsageError("-o -: Parquet needs a file")
        with readonly_query(engine, query) as result:
            return write_rows(fmt, result.columns, result.rows, sys.stdout)
    with readonly_query(engine, query) as result, atomic_path(output) as temporary:
        if fmt == "parquet":
            return write_parquet(result.columns, result.rows, temporary)
        with temporary.open("w", encoding="utf-8", newline="") as out:
            return write_rows(fmt, result.columns, result.rows, out)
