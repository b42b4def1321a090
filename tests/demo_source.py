"""A small test-only source that really writes to the database, so the cron, scheduler and
status paths are tested without the network or the real collectors.

``collect`` stores one fake response (framework counts) in ``raw_responses`` in one
transaction; ``aggregate`` turns the latest response of each week into ``framework_share`` rows
(source ``demo``). Environment knobs, read at call time so a subprocess can use them too:
``DEMO_SOURCE_SCHEDULE`` (crontab, default ``0 6 * * *``), ``DEMO_SOURCE_DELAY`` (seconds the
fetch takes), ``DEMO_SOURCE_FAIL`` (a message: the fetch fails with it) and
``DEMO_SOURCE_RETRY_AFTER`` (seconds: the fetch is refused with a 429 asking to wait that long,
through the shared HTTP policy) and ``DEMO_SOURCE_BLOCKED`` (set: the source blocks us, as
Google's CAPTCHA page does).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from sqlalchemy import insert, select

from pipeline.app import App
from pipeline.http import HttpPolicy, SourceBlocked, SourceError, TransientError
from pipeline.runlog import RunRecord, utc_now
from pipeline.sources import SOURCES, Source
from storage.models import FrameworkShare, RawResponse
from storage.upsert import upsert

NAME = "demo"
COUNTS = {"pytorch": 6, "tensorflow": 3, "jax": 1}
KEY = ["source", "variant", "granularity", "period_start", "framework"]


def collect(app: App, run: RunRecord) -> None:
    time.sleep(float(os.environ.get("DEMO_SOURCE_DELAY", "0")))
    if os.environ.get("DEMO_SOURCE_RETRY_AFTER"):  # a 429 whose Retry-After is waited out
        policy = HttpPolicy(app.settings.http)

        def refused() -> None:
            retry_after = float(os.environ["DEMO_SOURCE_RETRY_AFTER"])
            raise TransientError("HTTP 429 from demo", status=429, retry_after=retry_after)

        policy.call(refused, what="GET demo://counts")
    if os.environ.get("DEMO_SOURCE_BLOCKED"):
        raise SourceBlocked("demo blocked us")
    if os.environ.get("DEMO_SOURCE_FAIL"):
        raise SourceError(os.environ["DEMO_SOURCE_FAIL"])
    body = json.dumps(COUNTS)
    with app.engine.begin() as connection:
        connection.execute(
            insert(RawResponse).values(
                run_id=run.id,
                source=NAME,
                method="GET",
                url="demo://counts",
                params="{}",
                status=200,
                content_type="application/json",
                fetched_at=utc_now(),
                body=body,
                body_sha256=hashlib.sha256(body.encode()).hexdigest(),
                body_bytes=len(body),
            )
        )
    run.requests += 1
    run.rows += 1


def week_start(day: date) -> date:
    """The Sunday a week starts on, as Google's weeks do."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def aggregate(app: App) -> int:
    with app.engine.begin() as connection:
        responses = connection.execute(
            select(RawResponse.fetched_at, RawResponse.body)
            .where(RawResponse.source == NAME)
            .order_by(RawResponse.id)
        ).all()
        latest: dict[str, dict[str, int]] = {}
        for fetched_at, body in responses:
            fetched = datetime.fromisoformat(fetched_at.replace("Z", "+00:00")).date()
            latest[week_start(fetched).isoformat()] = json.loads(body)
        rows = [
            {
                "source": NAME,
                "variant": "all",
                "granularity": "week",
                "period_start": period,
                "framework": framework,
                "value": count,
                "share": count / sum(counts.values()),
            }
            for period, counts in latest.items()
            for framework, count in counts.items()
        ]
        if rows:
            upsert(connection, FrameworkShare, rows, KEY)
    return len(rows)


DEMO = Source(
    name=NAME,
    module=__name__,
    share_source=NAME,
    enabled=lambda settings: True,
    schedule=lambda settings: os.environ.get("DEMO_SOURCE_SCHEDULE", "0 6 * * *"),
)


@contextmanager
def only_demo_source() -> Iterator[Source]:
    """Make the registry hold just the demo source (the real collectors would need the
    network), and restore it afterwards."""
    saved = dict(SOURCES)
    SOURCES.clear()
    SOURCES[NAME] = DEMO
    try:
        yield DEMO
    finally:
        SOURCES.clear()
        SOURCES.update(saved)


if __name__ == "__main__":
    # `python -m tests.demo_source [trends options]`: the trends CLI with only the demo source,
    # for tests that need a real process (the scheduler and its signals).
    from pipeline.cli import main

    SOURCES.clear()
    SOURCES[NAME] = DEMO
    main(prog_name="trends")
