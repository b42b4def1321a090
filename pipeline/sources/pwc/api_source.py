"""Live counts from a v1-compatible Papers-with-Code API (source ``pwc-api``).

Each run snapshots the number of repositories per framework (``repositories/``), and the number
of papers per framework and quarter from ``[pwc] api_start`` on
(``papers/?framework=&start_date=&end_date=``). Either endpoint may be missing (HTTP 404; the
relaunched catalogue's own client uses only ``papers/``), not both. Counts are stored only
when the server echoes the filters it was asked for and not every framework got the same count
(a server ignoring the filter); otherwise the run fails with a clear message and nothing is
stored.

A quarter is fetched on every run until a run after its end has fetched it whole; from then on
it is final and not asked again.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import select

from pipeline import shares
from pipeline.app import App
from pipeline.http import HttpClient, HttpPolicy, HttpResponse, SourceError
from pipeline.rawstore import store_response
from pipeline.redact import redact_url
from pipeline.runlog import RunRecord, utc_today
from pipeline.sources.pwc.api import EndpointMissing, PwcApiClient
from pipeline.state import replace_notes
from storage.models import FrameworkShare, PwcApiCount
from storage.upsert import upsert

log = logging.getLogger(__name__)

SOURCE = "pwc-api"
KEY = ["snapshot_date", "endpoint", "framework", "period_start"]


def quarters(first: date, last: date) -> list[tuple[date, date]]:
    """(start, end) of every calendar quarter from the one holding ``first`` to ``last``'s."""
    start = date(first.year, (first.month - 1) // 3 * 3 + 1, 1)
    spans = []
    while start <= last:
        following = date(start.year + (start.month + 3 > 12), (start.month + 2) % 12 + 1, 1)
        spans.append((start, following - timedelta(days=1)))
        start = following
    return spans


def _completed_quarters(app: App) -> set[str]:
    """Quarters whose paper counts were fetched after the quarter ended: they are final. A
    quarter last fetched while it was running is fetched again, whole."""
    with app.engine.connect() as connection:
        return set(
            connection.execute(
                select(PwcApiCount.period_start).where(
                    PwcApiCount.endpoint == "papers",
                    PwcApiCount.snapshot_date > PwcApiCount.period_end,
                )
            ).scalars()
        )


def collect(app: App, run: RunRecord) -> None:
    settings = app.settings
    codes = {f.pwc: f.key for f in settings.pwc_frameworks() if f.pwc and f.pwc != "none"}
    http = HttpClient(HttpPolicy(settings.http))

    def on_response(response: HttpResponse, request: dict) -> None:
        store_response(app.engine, run.id, SOURCE, response, request)

    client = PwcApiClient(settings.pwc.api_url, http, on_response)
    snapshot = utc_today()
    rows: list[dict] = []
    missing = []  # endpoints the server does not have (404): each is optional, not both
    try:
        try:
            repositories = {key: client.repository_count(code) for code, key in codes.items()}
        except EndpointMissing:
            missing.append("repositories/")
        else:
            PwcApiClient.check_distinct(repositories)
            rows += [
                _row(snapshot, "repositories", key, "", "", count)
                for key, count in repositories.items()
            ]

        completed = _completed_quarters(app)
        for start, end in quarters(date.fromisoformat(settings.pwc.api_start), snapshot):
            if start.isoformat() in completed:
                continue
            try:
                counts = {
                    key: client.paper_count(code, start, min(end, snapshot))
                    for code, key in codes.items()
                }
            except EndpointMissing:
                missing.append("papers/")
                break
            PwcApiClient.check_distinct(counts)
            rows += [
                _row(snapshot, "papers", key, start.isoformat(), end.isoformat(), count)
                for key, count in counts.items()
            ]
    finally:
        run.requests += http.policy.requests_sent
    if len(missing) == 2:
        raise SourceError(
            f"{redact_url(settings.pwc.api_url)[0]} has neither repositories/ nor papers/ "
            "(HTTP 404): is [pwc] api_url a v1-compatible API?"
        )
    for endpoint in missing:
        log.info("pwc-api: the server has no %s endpoint; the other counts only", endpoint)
    # One transaction: a snapshot is stored whole or not at all.
    with app.engine.begin() as connection:
        run.rows += upsert(connection, PwcApiCount, rows, KEY)


def _row(snapshot: date, endpoint: str, framework: str, start: str, end: str, count: int) -> dict:
    return {
        "snapshot_date": snapshot.isoformat(),
        "endpoint": endpoint,
        "framework": framework,
        "period_start": start,
        "period_end": end,
        "count": count,
    }


def aggregate(app: App) -> int:
    """Shares of the latest counts: repositories per snapshot day, papers per quarter."""
    with app.engine.connect() as connection:
        counts = pd.DataFrame(
            connection.execute(
                select(
                    PwcApiCount.snapshot_date,
                    PwcApiCount.endpoint,
                    PwcApiCount.framework,
                    PwcApiCount.period_start,
                    PwcApiCount.period_end,
                    PwcApiCount.count,
                )
            ).all(),
            columns=[
                "snapshot_date",
                "endpoint",
                "framework",
                "period_start",
                "period_end",
                "count",
            ],
        )
    # Only the configured frameworks: one removed from the configuration leaves the shares.
    counts = counts[counts["framework"].isin({f.key for f in app.settings.pwc_frameworks()})]
    repositories = counts[counts["endpoint"] == "repositories"].assign(
        period_start=lambda frame: frame["snapshot_date"], granularity="day"
    )
    papers = counts[counts["endpoint"] == "papers"].sort_values("snapshot_date")
    papers = papers.drop_duplicates(["period_start", "framework"], keep="last")
    papers = papers.assign(granularity="quarter")
    rows = []
    for variant, frame in (("repositories", repositories), ("papers", papers)):
        for granularity, subset in frame.groupby("granularity"):
            values = subset.rename(columns={"count": "value"})
            rows += shares.share_rows(
                shares.frame_triples(values), SOURCE, variant, str(granularity)
            )
    with app.engine.begin() as connection:
        changed = shares.replace_shares(connection, rows, [FrameworkShare.source == SOURCE])
        replace_notes(connection, SOURCE, SOURCE, _running_quarter_notes(papers))
    return changed


def _running_quarter_notes(papers: pd.DataFrame) -> dict[str, str]:
    """A note for quarters whose latest counts were fetched before the quarter ended: they
    hold only the papers up to that day, until a run after the quarter's end completes them."""
    running = papers[papers["snapshot_date"] <= papers["period_end"]]
    counted = running.groupby("period_start")["snapshot_date"].max().sort_index()
    if counted.empty:
        return {}
    return {
        "quarter": "; ".join(
            f"{start}: incomplete quarter (papers up to {day}; a run after the quarter "
            "ends completes it)"
            for start, day in counted.items()
        )
    }
