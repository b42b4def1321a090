"""Google Trends collection: fetch planned requests, store them, and rebuild the scaled series.

Each planned request is one step: pytrends fetches it, every HTTP response is committed to
``raw_responses`` as it arrives, the multiline body is parsed strictly, and the fetch with its
cells is written in one transaction. The fetched plan keys are the cursor: a rerun (after a
crash, a 429 storm or a spent budget) skips them and continues where the last run stopped.

The derived tables (``gtrends_series``, ``framework_share`` rows of source ``gtrends``) are
rebuilt from all stored cells by :func:`aggregate`, so they never depend on run order.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from pipeline.app import App
from pipeline.config import GTRENDS_FIRST_DAY, Settings
from pipeline.errors import StepFailed, UsageError
from pipeline.http import HttpPolicy, HttpResponse
from pipeline.rawstore import store_response
from pipeline.runlog import RunRecord, utc_now, utc_today
from pipeline.sources.gtrends.client import PytrendsClient
from pipeline.sources.gtrends.parse import UnexpectedResponse, parse_multiline
from pipeline.sources.gtrends.plan import (
    MAX_WEEKLY_DAYS,
    PlannedRequest,
    build_plan,
    date_windows,
    incremental_requests,
    series_of,
    unanswered,
)
from storage.db import sqlite_file
from storage.models import GtrendsCell, GtrendsFetch

log = logging.getLogger(__name__)

SOURCE = "gtrends"
_T = TypeVar("_T")


def search_terms(settings: Settings) -> dict[str, str]:
    """Google Trends search term (or topic id) -> framework key, in configured order."""
    return {f.gtrends: f.key for f in settings.gtrends_frameworks() if f.gtrends}


def _plan_for(settings: Settings, start: date, end: date, resolution: str) -> list[PlannedRequest]:
    g = settings.gtrends
    return build_plan(
        list(search_terms(settings)), start, end, resolution, g.geo, g.category, g.property
    )


def backfill_plan(
    settings: Settings, start: date, end: date, resolution: str
) -> list[PlannedRequest]:
    if not search_terms(settings):
        raise UsageError("no framework has a [frameworks.X] gtrends term to collect")
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    return _plan_for(settings, start, end, resolution)


def _if_stored(app: App, read: Callable[[], _T], nothing: _T) -> _T:
    """``read()``, or ``nothing`` while there is no database or schema yet; creates nothing,
    so --dry-run and the checks before a backfill leave a missing database missing."""
    db_file = sqlite_file(app.settings.database.url)
    if db_file is not None and not db_file.exists():
        return nothing
    try:
        return read()
    except SQLAlchemyError:  # no schema yet
        return nothing


def stored_plan_keys(app: App) -> tuple[set[str], dict[str, list[tuple[str, date, date]]]]:
    """Plan keys already fetched and their :func:`final_days` (for --dry-run)."""
    return _if_stored(
        app,
        lambda: (fetched_keys(app.engine, app.settings), final_days(app.engine, app.settings)),
        (set(), {}),
    )


def stored_span(app: App, resolution: str) -> tuple[date, date] | None:
    """First and last day of the stored windows of ``resolution`` (configured geo, category and
    property); None when there are none."""
    g = app.settings.gtrends
    query = select(func.min(GtrendsFetch.window_start), func.max(GtrendsFetch.window_end)).where(
        GtrendsFetch.resolution == resolution,
        GtrendsFetch.geo == g.geo,
        GtrendsFetch.category == g.category,
        GtrendsFetch.property == g.property,
    )

    def read() -> tuple[str | None, str | None]:
        with app.engine.connect() as connection:
            return tuple(connection.execute(query).one())

    first, last = _if_stored(app, read, (None, None))
    return None if first is None else (date.fromisoformat(first), date.fromisoformat(last))


# The daily fit is tied to the weekly windows (tie.py), so a daily range that meets them is on
# their scale. Monthly cells alone do not count: they tie nothing in years where every value is
# "<1", which is most years before these frameworks existed.
TIED_THROUGH = {"day": ("day", "week"), "week": ("week",), "month": ("month",)}


def refuse_gap(app: App, plan: list[PlannedRequest], resolution: str) -> None:
    """Windows sharing no day with the stored ones could not be put on one scale with them, and
    every later rebuild would fail: refuse such a plan before fetching anything."""
    if not plan:
        return
    start, end = min(r.start for r in plan), max(r.end for r in plan)
    spans = {r: span for r in TIED_THROUGH[resolution] if (span := stored_span(app, r))}
    if not spans or any(start <= last and end >= first for first, last in spans.values()):
        return
    first = min(first for first, _ in spans.values())
    last = max(last for _, last in spans.values())
    reach = f"--end {first}" if end < first else f"--start {last}"
    raise UsageError(
        f"{start}..{end} shares no day with the stored {' or '.join(spans)} windows "
        f"({first}..{last}), so the two could not be put on one scale; "
        f"extend the range to reach them ({reach})"
    )


def backfill(app: App, start: date, end: date, resolution: str) -> RunRecord:
    """Fetch every planned window not stored yet, then rebuild the series; resumable."""
    from pipeline.collect import recorded_step
    from pipeline.sources import SOURCES

    plan = backfill_plan(app.settings, start, end, resolution)
    with app.writing():
        refuse_gap(app, plan, resolution)
        run = recorded_step(
            app, "backfill", SOURCES[SOURCE], lambda run: _report(fetch_plan(app, run, plan))
        )
    if run.status == "partial":  # stopped by the source or the budget: a rerun continues
        raise StepFailed(
            f"gtrends backfill partial: {run.error} "
            "(run the same command again to continue where it stopped)"
        )
    if run.status != "ok":
        raise StepFailed(f"gtrends backfill {run.status}: {run.error}")
    return run


def _report(outcome: FetchOutcome) -> None:
    log.info("gtrends: %d requests fetched, %d already stored", outcome.requests, outcome.skipped)


def latest_available_day(settings: Settings, on: date | None = None) -> date:
    return (on or utc_today()) - timedelta(days=settings.gtrends.data_lag_days)


def incremental_plan(
    settings: Settings, stored_until: date | None, on: date | None = None
) -> list[PlannedRequest]:
    """One new daily window per batch, plus the weekly and monthly windows when they moved.

    An empty database gets the daily history from ``[gtrends] history_start`` first.

    Weekly windows end on the last complete Saturday and monthly windows on the last complete
    month, so their plan keys (and requests) change only once a week or month.
    """
    g = settings.gtrends
    latest = latest_available_day(settings, on)
    terms = list(search_terms(settings))
    daily = incremental_requests(
        terms,
        stored_until,
        latest,
        g.geo,
        g.category,
        g.property,
        history_start=date.fromisoformat(g.history_start),
    )
    last_saturday = latest - timedelta(days=(latest.weekday() + 2) % 7)
    weekly_windows = date_windows(
        last_saturday - timedelta(days=MAX_WEEKLY_DAYS - 1), last_saturday, "week"
    )
    weekly = _plan_for(settings, weekly_windows[-1][0], last_saturday, "week")
    last_month_end = latest.replace(day=1) - timedelta(days=1)
    monthly = _plan_for(settings, GTRENDS_FIRST_DAY, last_month_end, "month")  # all of it
    return daily + weekly + monthly


# --- storage ------------------------------------------------------------------------------


def fetched_keys(engine: Engine, settings: Settings) -> set[str]:
    g = settings.gtrends
    with engine.connect() as connection:
        return set(
            connection.execute(
                select(GtrendsFetch.plan_key).where(
                    GtrendsFetch.geo == g.geo,
                    GtrendsFetch.category == g.category,
                    GtrendsFetch.property == g.property,
                )
            ).scalars()
        )


def final_days(engine: Engine, settings: Settings) -> dict[str, list[tuple[str, date, date]]]:
    """Per series (``plan.series_of``), each stored window's plan key and the days it holds
    final data for: from its start to the end of its last final (not partial) period. A window
    asked beyond the last day Google had holds nothing after that day."""
    g = settings.gtrends
    query = (
        select(
            GtrendsFetch.plan_key,
            GtrendsFetch.resolution,
            GtrendsFetch.window_start,
            func.max(GtrendsCell.period_start),
        )
        .join(GtrendsCell, GtrendsCell.fetch_id == GtrendsFetch.id)
        .where(
            GtrendsFetch.geo == g.geo,
            GtrendsFetch.category == g.category,
            GtrendsFetch.property == g.property,
            GtrendsCell.is_partial.is_(False),
        )
        .group_by(GtrendsFetch.id, GtrendsFetch.plan_key, GtrendsFetch.resolution)
    )
    days: dict[str, list[tuple[str, date, date]]] = {}
    with engine.connect() as connection:
        for key, resolution, first, last_period in connection.execute(query):
            last = _period_end(date.fromisoformat(last_period), resolution)
            days.setdefault(series_of(key), []).append((key, date.fromisoformat(first), last))
    return days


def _period_end(start: date, resolution: str) -> date:
    if resolution == "week":
        return start + timedelta(days=6)
    if resolution == "month":
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        return following - timedelta(days=1)
    return start


def stored_until(engine: Engine, settings: Settings) -> date | None:
    """The last day with final (not partial) daily data for every configured framework; None
    while some configured framework has no daily data at all (a first collect stopped before
    its batch was fetched, or a framework just added): the next collect then plans the daily
    history from ``[gtrends] history_start``, which skips the windows already stored."""
    g = settings.gtrends
    query = (
        select(GtrendsCell.framework, func.max(GtrendsCell.period_start))
        .join(GtrendsFetch, GtrendsFetch.id == GtrendsCell.fetch_id)
        .where(
            GtrendsFetch.resolution == "day",
            GtrendsFetch.geo == g.geo,
            GtrendsFetch.category == g.category,
            GtrendsFetch.property == g.property,
            GtrendsCell.is_partial.is_(False),
        )
        .group_by(GtrendsCell.framework)
    )
    with engine.connect() as connection:
        latest = dict(connection.execute(query).all())
    configured = list(search_terms(settings).values())
    if not latest or any(key not in latest for key in configured):
        return None
    return date.fromisoformat(min(latest[key] for key in configured))


@dataclass
class FetchOutcome:
    requests: int = 0
    rows: int = 0
    skipped: int = 0


class _RawRecorder:
    """The client's ``on_response``: commits each response and remembers the data response."""

    def __init__(self, engine: Engine, run_id: int | None):
        self.engine = engine
        self.run_id = run_id
        self.last_multiline_id: int | None = None

    def __call__(self, response: HttpResponse, request: dict) -> None:
        raw_id = store_response(self.engine, self.run_id, SOURCE, response, request)
        if urlsplit(request.get("url", "")).path.endswith("/widgetdata/multiline"):
            self.last_multiline_id = raw_id


def _save_fetch(
    engine: Engine,
    request: PlannedRequest,
    body: bytes,
    raw_id: int,
    run_id: int | None,
    framework_of: dict[str, str],
) -> int:
    """Parse and store one fetched window in one transaction; returns the cells written."""
    timeline = parse_multiline(body, request.keywords, request.resolution)
    cells = [
        {
            "framework": framework_of[o.keyword],
            "period_start": o.period_start.isoformat(),
            "value": o.value,
            "has_data": o.has_data,
            "below_one": o.below_one,
            "is_partial": o.is_partial,
        }
        for o in timeline.observations
    ]
    with engine.begin() as connection:
        fetch_id = connection.execute(
            insert(GtrendsFetch)
            .values(
                plan_key=request.key,
                keywords=json.dumps([framework_of[k] for k in request.keywords]),
                geo=request.geo,
                category=request.category,
                property=request.property,
                resolution=request.resolution,
                window_start=request.start.isoformat(),
                window_end=request.end.isoformat(),
                has_partial=any(cell["is_partial"] for cell in cells),
                raw_response_id=raw_id,
                run_id=run_id,
                fetched_at=utc_now(),
            )
            .returning(GtrendsFetch.id)
        ).scalar_one()
        if cells:
            connection.execute(insert(GtrendsCell), [{"fetch_id": fetch_id, **c} for c in cells])
    return len(cells)


def fetch_plan(
    app: App, run: RunRecord, plan: list[PlannedRequest], *, progress: bool | None = None
) -> FetchOutcome:
    """Fetch every planned request not stored yet. Errors propagate after committed steps."""
    settings = app.settings
    todo = unanswered(plan, fetched_keys(app.engine, settings), final_days(app.engine, settings))
    outcome = FetchOutcome(skipped=len(plan) - len(todo))
    if not todo:
        return outcome
    recorder = _RawRecorder(app.engine, run.id)
    policy = HttpPolicy(settings.http)
    client = PytrendsClient(settings.gtrends.base_url, policy, recorder)
    framework_of = search_terms(settings)
    show_bar = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(todo, desc="gtrends", unit="request", disable=not show_bar)
    try:
        for request in bar:
            recorder.last_multiline_id = None
            try:
                body = client.fetch(request)
            finally:
                run.requests = policy.requests_sent
            if recorder.last_multiline_id is None:  # pytrends returned without a data response
                raise UnexpectedResponse(f"no multiline response received for {request.key}")
            written = _save_fetch(
                app.engine, request, body, recorder.last_multiline_id, run.id, framework_of
            )
            outcome.requests += 1
            outcome.rows += written
            run.rows += written
            if not show_bar:
                log.info("gtrends: fetched %s (%d cells)", request.key, written)
    finally:
        bar.close()
    return outcome


def collect(app: App, run: RunRecord) -> None:
    """Incremental collection for cron: bring the daily, weekly and monthly series up to date."""
    if not search_terms(app.settings):
        return
    plan = incremental_plan(app.settings, stored_until(app.engine, app.settings))
    fetch_plan(app, run, plan)


def aggregate(app: App) -> int:
    from pipeline.sources.gtrends.aggregate import rebuild

    return rebuild(app.engine, app.settings)
