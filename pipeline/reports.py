"""Read-side library functions behind ``trends runs``, ``status``, ``shares`` and ``export``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, inspect, select

from pipeline.errors import UsageError
from pipeline.output import atomic_path, write_parquet, write_rows
from pipeline.readonly import readonly_query
from storage.models import FrameworkShare, Run

GRANULARITIES = ("day", "week", "month", "quarter", "year")
# Collector name -> the framework_share.source it writes.
SHARE_SOURCE_OF = {"gtrends": "gtrends", "pwc-archive": "pwc", "pwc-api": "pwc-api"}


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
    source: str
    last_success: str | None
    last_failure: str | None
    last_error: str | None
    share_rows: int
    latest_period: str | None


def source_status(engine: Engine, sources: list[str]) -> list[SourceStatus]:
    """Per collector: the last successful and failed runs and what it has in framework_share."""
    statuses = []
    with engine.connect() as connection:
        for source in sources:
            last_ok = connection.execute(
                select(func.max(Run.finished_at)).where(Run.source == source, Run.status == "ok")
            ).scalar()
            failure = connection.execute(
                select(Run.finished_at, Run.error)
                .where(Run.source == source, Run.status.in_(("failed", "partial")))
                .order_by(Run.id.desc())
                .limit(1)
            ).first()
            share_source = SHARE_SOURCE_OF.get(source, source)
            rows, latest = connection.execute(
                select(func.count(), func.max(FrameworkShare.period_start)).where(
                    FrameworkShare.source == share_source
                )
            ).one()
            statuses.append(
                SourceStatus(
                    source=source,
                    last_success=last_ok,
                    last_failure=failure[0] if failure else None,
                    last_error=failure[1] if failure else None,
                    share_rows=rows,
                    latest_period=latest,
                )
            )
    return statuses


def parse_date(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise UsageError(f"{option}: expected a date YYYY-MM-DD, got {text!r}") from None


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
        query = f'SELECT * FROM "{table}"'
    assert query is not None
    with readonly_query(engine, query) as result, atomic_path(output) as temporary:
        if fmt == "parquet":
            return write_parquet(result.columns, result.rows, temporary)
        with temporary.open("w", encoding="utf-8", newline="") as out:
            return write_rows(fmt, result.columns, result.rows, out)
