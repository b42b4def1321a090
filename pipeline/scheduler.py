"""``trends schedule``: a foreground APScheduler 3 ``BlockingScheduler`` for hosts without cron.

The scheduler holds no state that matters: jobs live in a ``MemoryJobStore`` and are declared
from the configuration at every start (one per enabled source, with an explicit id); progress
lives in the database. Each job runs the same library path as ``trends collect SOURCE`` under
the same writer lock, so a cron run and the scheduler never write at once: a job that finds
the lock held logs it and skips that fire.

Jobs run one at a time (a single worker thread), so the scheduler's own jobs never contend for
the lock. At start, a source that is due already (see ``schedule.is_due``: a fire was missed
while the scheduler was down, or it never succeeded) runs at once. SIGINT/SIGTERM shut the
scheduler down with ``wait=True``: a collection in progress stops before its next HTTP request
or in its backoff wait (collectors commit per step, so it ends on a committed transaction, as
``partial``; the next run continues) and queued jobs are skipped. A second signal exits at
once; the next run marks the interrupted run ``failed``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import func, select

from pipeline.app import App
from pipeline.collect import blocked_until, collect, due_now
from pipeline.errors import LockHeld, TrendsError, UsageError
from pipeline.http import STOP_REQUESTED
from pipeline.schedule import CrontabTrigger
from pipeline.sources import Source, enabled_sources
from storage.models import Run

log = logging.getLogger(__name__)


def job_id(source: Source) -> str:
    return f"collect-{source.name}"


def run_job(app: App, source_name: str, stopping: threading.Event) -> str:
    """One scheduled collection of one source; returns how it ended (for logs and tests).

    Never raises: a failed source is recorded in ``runs`` and logged, and the scheduler goes on.
    """
    if stopping.is_set():
        log.info("%s: skipped, the scheduler is stopping", source_name)
        return "skipped"
    failure, before = None, None
    try:
        app.prepare_for_reading()  # a fresh database gets its schema (under the lock) first
        until = blocked_until(app, source_name, datetime.now(UTC))
        if until is not None:
            when = f"{until:%F %R} UTC"
            log.info("%s: skipped, it blocked us; waiting until %s", source_name, when)
            return "blocked"
        log.info("%s: run started", source_name)
        with app.engine.connect() as connection:
            before = connection.execute(select(func.max(Run.id))).scalar() or 0
        collect(app, [source_name])
    except LockHeld as error:
        log.warning("%s: skipped, %s", source_name, error)
        return "locked"
    except TrendsError as error:
        failure = str(error)  # the run's own status and message are read back below
    except Exception:  # a bug must not stop the scheduler; the traceback goes to the log
        log.exception("%s: run crashed", source_name)
        return "crashed"
    if before is None:  # failed before anything ran (e.g. the schema could not migrate)
        log.error("%s: run ended failed: %s", source_name, failure)
        return "failed"
    with app.engine.connect() as connection:
        run = connection.execute(
            select(Run.id, Run.status, Run.requests, Run.rows, Run.error)
            .where(Run.id > before, Run.source == source_name, Run.command == "collect")
            .order_by(Run.id.desc())
            .limit(1)
        ).first()
    if run is None:  # failed before its run was recorded
        log.error("%s: run ended failed: %s", source_name, failure)
        return "failed"
    level = logging.INFO if run.status == "ok" else logging.ERROR
    log.log(
        level,
        "%s: run %d ended %s (%d requests, %d rows)%s",
        source_name,
        run.id,
        run.status,
        run.requests,
        run.rows,
        f": {run.error}" if run.error else "",
    )
    return run.status


def build_scheduler(
    app: App, stopping: threading.Event, *, run_now: bool = False
) -> BlockingScheduler:
    """A scheduler with one cron job per enabled source (``run_now``: each also runs at once)."""
    settings = app.settings.scheduler
    timezone = ZoneInfo(settings.timezone)
    scheduler = BlockingScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={
            "coalesce": True,  # many missed fires are one run: collection is cursor-driven
            "max_instances": 1,
            # APScheduler's default of 1 second would silently drop a run after any stall.
            "misfire_grace_time": max(1, round(settings.misfire_grace_hours * 3600)),
        },
        timezone=timezone,
    )
    sources = enabled_sources(app.settings)
    if not sources:
        raise UsageError("no enabled sources to schedule (see the [gtrends] and [pwc] settings)")
    now = datetime.now(timezone)
    for source in sources:
        # A source that is due already (a fire missed while the scheduler was down, or never
        # collected) runs at once, as `collect --due` would run it, instead of waiting for its
        # next fire: a weekly source would stay overdue for up to a week after a restart.
        catch_up = run_now or due_now(app, source, now)
        extra = {"next_run_time": now} if catch_up else {}
        scheduler.add_job(
            run_job,
            CrontabTrigger(source.schedule(app.settings), timezone),
            args=[app, source.name, stopping],
            id=job_id(source),
            name=f"collect {source.name}",
            replace_existing=True,
            **extra,
        )
    scheduler.add_listener(_log_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    return scheduler


def _log_job_event(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning(
            "%s: missed its %s fire (more than the misfire grace late)",
            event.job_id,
            event.scheduled_run_time,
        )
    else:
        log.error("%s: job raised %r", event.job_id, event.exception)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _wake_on_signals(scheduler: BlockingScheduler) -> Iterator[None]:
    """Wake the scheduler's main loop whenever a signal arrives.

    Python runs signal handlers in the main thread between bytecodes. The main thread sleeps in
    the scheduler's ``Event.wait(until the next fire)``, and a signal caught just before that
    wait begins (or delivered to another thread) does not interrupt it: the handler would run
    only at the next fire time, minutes later. The C-level handler also writes to a wakeup fd;
    a small thread reading it wakes the scheduler, so the Python handler runs at once.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def nudge() -> None:
        while os.read(read_end, 64):
            scheduler.wakeup()
        os.close(read_end)

    threading.Thread(target=nudge, name="signal-wakeup", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(write_end)  # ends the nudge thread (read returns b"")


@contextmanager
def _stop_on_signals(scheduler: BlockingScheduler, stopping: threading.Event) -> Iterator[list]:
    """SIGINT/SIGTERM call ``scheduler.shutdown(wait=True)``; a second signal exits at once.

    The shutdown runs in its own thread: waiting for a job inside the signal handler would
    block the scheduler's main loop while it may hold the scheduler's locks.
    """
    stoppers: list[threading.Thread] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stopping.is_set():
            log.warning("%s again: exiting now, without waiting for the running job", name)
            os._exit(128 + signum)
        stopping.set()
        STOP_REQUESTED.set()  # the running job stops at its next request or backoff wait
        log.info("%s: stopping the running job at its next request (again: exit at once)", name)
        stopper = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True})
        stopper.start()
        stoppers.append(stopper)

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield stoppers
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_scheduler(app: App, *, run_now: bool = False) -> None:
    """Run the configured collectors on their cron schedules until SIGINT or SIGTERM."""
    stopping = threading.Event()
    STOP_REQUESTED.clear()
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # our lines say it all; -v: theirs
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = build_scheduler(app, stopping, run_now=run_now)

    def log_jobs(_event: SchedulerEvent) -> None:  # fire times exist once the scheduler started
        for job in scheduler.get_jobs():
            log.info("%s: %s, next run %s", job.id, job.trigger, job.next_run_time)
        log.info("scheduler running; stop with Ctrl-C or SIGTERM")

    scheduler.add_listener(log_jobs, EVENT_SCHEDULER_STARTED)
    with _stop_on_signals(scheduler, stopping) as stoppers, _wake_on_signals(scheduler):
        scheduler.start()  # blocks until a signal shuts the scheduler down
        for stopper in stoppers:
            while stopper.is_alive():  # short joins: a second signal is handled at once
                stopper.join(0.2)
    log.info("scheduler stopped")
