"""``trends collect``: run sources under the writer lock, each in its own recorded run.

A failing source never stops the others: its run ends ``failed`` (or ``partial`` when the source
refused us part-way) with a one-line reason, what it committed is kept, and the command ends
with exit code 1 naming every source that did not finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.app import App
from pipeline.errors import StepFailed, TrendsError, UsageError, one_line
from pipeline.http import SourceBlocked, SourceError, SourceUnavailable
from pipeline.runlog import RunRecord, last_success, recorded_run, utc_now
from pipeline.schedule import is_due
from pipeline.sources import SOURCES, Source, enabled_sources
from pipeline.state import read_state, write_state

log = logging.getLogger(__name__)

# After a source blocks us (Google's CAPTCHA page), scheduled runs leave it alone this long:
# asking again every cron tick would prolong the block ("stop for the day"). Under a day, so
# that a daily schedule's next fire (a day after the run that was blocked) still goes ahead.
BLOCK_COOLDOWN = timedelta(hours=20)
BLOCKED_AT = "blocked_at"  # source_state key: when the source last blocked us (ISO UTC)


@dataclass
class CollectReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not due
    problems: dict[str, str] = field(default_factory=dict)  # source -> one-line reason


def select_sources(app: App, names: tuple[str, ...] | list[str]) -> list[Source]:
    unknown = [name for name in names if name not in SOURCES]
    if unknown:
        raise UsageError(
            f"unknown source {unknown[0]!r} (one of: {', '.join(SOURCES) or 'none registered'})"
        )
    if names:  # each once, in the order first named (`collect gtrends gtrends` runs it once)
        return [SOURCES[name] for name in dict.fromkeys(names)]
    return enabled_sources(app.settings)


def run_step(app: App, source: Source, run: RunRecord, work: Callable[[], None]) -> None:
    """Run a source's ``work`` then re-aggregate; the first failure becomes the run's status.

    Whatever was committed is aggregated, even after a partial or failed collection.
    """
    for step in (work, lambda: _aggregate_into(app, source, run)):
        try:
            step()
        except SourceBlocked as error:
            _first_failure(run, "partial", str(error))
            _remember_block(app, source)
        except SourceUnavailable as error:
            _first_failure(run, "partial", str(error))
        except (SourceError, TrendsError) as error:
            _first_failure(run, "failed", str(error))
        except Exception as error:  # a bug must not stop other sources; -v shows the traceback
            log.debug("%s failed", source.name, exc_info=True)
            _first_failure(run, "failed", one_line(error))


def _remember_block(app: App, source: Source) -> None:
    with app.engine.begin() as connection:
        write_state(connection, source.name, {BLOCKED_AT: utc_now()})


def blocked_until(app: App, source: str, now: datetime) -> datetime | None:
    """Until when scheduled runs leave ``source`` alone because it blocked us (None: they
    need not wait). Read-only."""
    with app.readonly_engine.connect() as connection:
        value = read_state(connection, source, BLOCKED_AT)
        success = last_success(connection, source)
    if value is None:
        return None
    blocked = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if success is not None and success.started >= blocked:  # timestamps are whole seconds
        return None  # a collect succeeded since (say, run by hand): the block is over
    until = blocked + BLOCK_COOLDOWN
    return until if now < until else None


def _first_failure(run: RunRecord, status: str, message: str) -> None:
    if run.status == "ok":
        run.status, run.error = status, message
    else:
        log.error("%s: also: %s", run.source, message)


def _aggregate_into(app: App, source: Source, run: RunRecord) -> None:
    run.rows += source.aggregate(app)


def recorded_step(
    app: App, command: str, source: Source, work: Callable[[RunRecord], None]
) -> RunRecord:
    """One recorded run of ``work`` for ``source`` (call under ``app.writing()``)."""
    with recorded_run(app.engine, command, source.name) as run:
        run_step(app, source, run, lambda: work(run))
    if run.status == "ok":
        log.info("%s: ok, %d requests, %d rows", source.name, run.requests, run.rows)
    else:
        log.error("%s: %s (%s)", source.name, run.error, run.status)
    return run


def collect(
    app: App,
    names: tuple[str, ...] | list[str] = (),
    *,
    due: bool = False,
    now: datetime | None = None,
) -> CollectReport:
    """Collect the named (default: all enabled) sources; with ``due``, only those due now."""
    sources = select_sources(app, names)
    report = CollectReport()
    now = now or datetime.now(UTC)
    with app.writing():
        for source in sources:
            if due and not due_now(app, source, now):
                report.skipped.append(source.name)
                log.info("%s: not due", source.name)
                continue
            report.ran.append(source.name)
            run = recorded_step(app, "collect", source, lambda run, s=source: s.collect(app, run))
            if run.status != "ok":
                report.problems[source.name] = run.error or run.status
    if report.problems:
        raise StepFailed(*(f"{name}: {reason}" for name, reason in report.problems.items()))
    return report


def due_now(app: App, source: Source, now: datetime) -> bool:
    """Whether the source's schedule fired since its last successful collect (or it never
    had one). Read-only, so it never waits for a writer (`collect --due`, `trends schedule`)."""
    until = blocked_until(app, source.name, now)
    if until is not None:
        log.info("%s: blocked us; scheduled runs wait until %s UTC", source.name, f"{until:%F %R}")
        return False
    with app.readonly_engine.connect() as connection:
        success = last_success(connection, source.name)
    return is_due(app.settings, source, success.started if success else None, now)


def aggregate_all(app: App) -> int:
    """Rebuild every source's derived rows from stored observations (no network).

    A source whose rebuild fails is named; the others are still rebuilt (exit 1 at the end).
    """
    problems, total = [], 0
    with app.writing():
        for source in SOURCES.values():
            run = recorded_step(app, "aggregate", source, lambda run: None)
            if run.status != "ok":
                problems.append(f"{source.name}: {run.error}")
            total += run.rows
    if problems:
        raise StepFailed(*problems)
    return total
