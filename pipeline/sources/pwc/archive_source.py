"""The frozen Papers-with-Code archive: import links and papers, aggregate shares by paper date.

Import is all or nothing: both files are read and written in one transaction, so a bad archive
(truncated gzip, wrong columns, an HTML page, a missing path) leaves the database as it was.
The files' fingerprints (size and modification time of the local copy) are kept in
``source_state``; an unchanged archive is not imported again, so a rerun changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, delete, func, insert, select

from pipeline.app import App
from pipeline.errors import StepFailed
from pipeline.http import HttpClient, HttpPolicy, HttpResponse
from pipeline.rawstore import store_response
from pipeline.runlog import RunRecord, utc_now
from pipeline.sources.pwc.archive import (
    FetchResult,
    ReadStats,
    fetch_archive,
    read_links,
    read_papers,
)
from storage.models import FrameworkShare, PwcLink, PwcPaper, SourceState
from storage.upsert import replace_rows, upsert

log = logging.getLogger(__name__)

SOURCE = "pwc-archive"
SHARE_SOURCE = "pwc"
FINGERPRINT_KEY = "archive_fingerprint"
LAST_DATE_KEY = "last_paper_date"
NOTE_KEY = "note"
GRANULARITIES = ("month", "quarter", "year")
SHARE_KEY = ["source", "variant", "granularity", "period_start", "framework"]


@dataclass
class ImportReport:
    imported: bool = False  # False when the archive was unchanged since the last import
    links: int = 0
    papers: int = 0
    links_without_paper: int = 0
    problems: list[str] = field(default_factory=list)


def _fetch(app: App, run: RunRecord, location: str) -> FetchResult:
    """A local copy of ``location``; downloads are recorded in ``raw_responses`` (no body)."""
    http = HttpClient(HttpPolicy(app.settings.http))
    result = fetch_archive(location, Path(app.settings.pwc.cache_dir), http)
    run.requests += http.policy.requests_sent
    if result.status is not None:  # a URL: record what the server answered
        response = HttpResponse(url=str(location), status=result.status, headers={}, body=b"")
        params = {
            "cached_file": str(result.path),
            "size": str(result.size),
            "downloaded": str(result.downloaded).lower(),
        }
        store_response(app.engine, run.id, SOURCE, response, {"params": params}, keep_body=False)
    return result


def _fingerprint(paths: list[Path]) -> str:
    return json.dumps([[str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] for p in paths])


def _stored_state(engine: Engine, key: str) -> str | None:
    with engine.connect() as connection:
        return connection.execute(
            select(SourceState.value).where(SourceState.source == SOURCE, SourceState.key == key)
        ).scalar()


def _paper_rows(path: Path, stats: ReadStats) -> Iterator[dict]:
    for batch in read_papers(path, stats=stats):
        dates = batch["date"].dt.strftime("%Y-%m-%d")
        for url, published in zip(batch["paper_url"], dates, strict=True):
            if isinstance(url, str) and url:
                yield {
                    "paper_url": url,
                    "published": published if isinstance(published, str) else None,
                }


def _link_rows(path: Path, stats: ReadStats, skipped: list[int]) -> Iterator[dict]:
    for batch in read_links(path, stats=stats):
        complete = (
            batch["paper_url"].notna() & batch["repo_url"].notna() & batch["framework"].notna()
        )
        skipped[0] += int((~complete).sum())
        for row in batch[complete].itertuples(index=False):
            yield {
                "paper_url": row.paper_url,
                "repo_url": row.repo_url,
                "arxiv_id": row.arxiv_id if isinstance(row.arxiv_id, str) else None,
                "is_official": bool(row.is_official) if pd.notna(row.is_official) else False,
                "framework": row.framework,
            }


def import_archive(
    app: App,
    run: RunRecord,
    links_location: str,
    papers_locations: list[str],
    *,
    force: bool = False,
) -> ImportReport:
    """Import the archive (links + papers) in one transaction unless it is unchanged."""
    report = ImportReport()
    links_file = _fetch(app, run, links_location).path
    papers_files = [_fetch(app, run, location).path for location in papers_locations]
    fingerprint = _fingerprint([links_file, *papers_files])
    if not force and _stored_state(app.engine, FINGERPRINT_KEY) == fingerprint:
        log.info("pwc-archive: unchanged since the last import; nothing to do")
        return report

    papers_stats, links_stats, skipped = ReadStats(), ReadStats(), [0]
    with app.engine.begin() as connection:
        connection.execute(delete(PwcLink))
        connection.execute(delete(PwcPaper))
        for path in papers_files:
            report.papers += upsert(
                connection, PwcPaper, _paper_rows(path, papers_stats), ["paper_url"]
            )
        report.links = upsert(
            connection,
            PwcLink,
            _link_rows(links_file, links_stats, skipped),
            ["paper_url", "repo_url"],
        )
        report.links_without_paper = connection.execute(
            select(func.count())
            .select_from(PwcLink)
            .outerjoin(PwcPaper, PwcPaper.paper_url == PwcLink.paper_url)
            .where(PwcPaper.paper_url.is_(None))
        ).scalar_one()
        last_date = connection.execute(select(func.max(PwcPaper.published))).scalar()
        for key, value in ((FINGERPRINT_KEY, fingerprint), (LAST_DATE_KEY, last_date or "")):
            upsert(
                connection,
                SourceState,
                [{"source": SOURCE, "key": key, "value": value, "updated_at": utc_now()}],
                ["source", "key"],
            )
    report.imported = True
    report.problems = links_stats.problems() + papers_stats.problems()
    if skipped[0]:
        report.problems.append(f"{skipped[0]} link rows without paper, repository or framework")
    if report.links_without_paper:
        report.problems.append(
            f"{report.links_without_paper} of {report.links} links have no paper in the papers "
            "file (no date: they count in no period)"
        )
    run.rows += report.links + report.papers
    log.info("pwc-archive: imported %d links and %d papers", report.links, report.papers)
    for problem in report.problems:
        log.warning("pwc-archive: %s", problem)
    return report


def backfill(
    app: App, links_location: str, papers_locations: list[str], *, force: bool = False
) -> ImportReport:
    """``trends backfill pwc``: import under the writer lock in a recorded run, then aggregate."""
    from pipeline.collect import recorded_step
    from pipeline.sources import SOURCES

    report = ImportReport()

    def work(run: RunRecord) -> None:
        nonlocal report
        report = import_archive(app, run, links_location, papers_locations, force=force)

    with app.writing():
        run = recorded_step(app, "backfill", SOURCES[SOURCE], work)
    if run.status != "ok":
        raise StepFailed(f"pwc-archive: {run.error}")
    return report


def collect(app: App, run: RunRecord) -> None:
    """Scheduled run: import the configured archive if it changed (a conditional GET otherwise)."""
    settings = app.settings.pwc
    import_archive(app, run, settings.links_url, settings.papers_locations)


# --- aggregation ----------------------------------------------------------------------------


def _monthly_counts(engine: Engine) -> pd.DataFrame:
    month = func.substr(PwcPaper.published, 1, 7)
    query = (
        select(month.label("month"), PwcLink.framework, PwcLink.is_official, func.count())
        .join(PwcPaper, PwcPaper.paper_url == PwcLink.paper_url)
        .where(PwcPaper.published.is_not(None))
        .group_by(month, PwcLink.framework, PwcLink.is_official)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pd.DataFrame(rows, columns=["month", "code", "is_official", "count"])


def period_start(month: pd.Series, granularity: str) -> pd.Series:
    """First day of the month, quarter or year of ``YYYY-MM`` strings."""
    year, number = month.str[:4], month.str[5:7].astype(int)
    if granularity == "month":
        return month + "-01"
    if granularity == "quarter":
        return year + "-" + ((number - 1) // 3 * 3 + 1).map("{:02d}".format) + "-01"
    return year + "-01-01"


def share_rows(counts: pd.DataFrame, framework_of: dict[str, str]) -> list[dict]:
    if counts.empty:
        return []
    counts = counts.assign(framework=counts["code"].map(framework_of)).dropna(subset=["framework"])
    rows: list[dict] = []
    for variant, subset in (("all", counts), ("official", counts[counts["is_official"]])):
        for granularity in GRANULARITIES:
            grouped = (
                subset.assign(period_start=period_start(subset["month"], granularity))
                .groupby(["period_start", "framework"], as_index=False)["count"]
                .sum()
            )
            totals = grouped.groupby("period_start")["count"].transform("sum")
            for row, total in zip(grouped.itertuples(index=False), totals, strict=True):
                rows.append(
                    {
                        "source": SHARE_SOURCE,
                        "variant": variant,
                        "granularity": granularity,
                        "period_start": row.period_start,
                        "framework": row.framework,
                        "value": float(row.count),
                        "share": row.count / total,
                    }
                )
    return rows


def incomplete_period_note(last_date: str | None, granularity: str) -> str | None:
    """A note when the archive's last date does not reach the end of its period."""
    if not last_date:
        return None
    day = pd.Timestamp(last_date)
    ends = {
        "month": day + pd.offsets.MonthEnd(0),
        "quarter": day + pd.offsets.QuarterEnd(0),
        "year": day + pd.offsets.YearEnd(0),
    }
    if day >= ends[granularity]:
        return None
    start = period_start(pd.Series([last_date[:7]]), granularity).iloc[0]
    return f"{start}: incomplete {granularity} (the archive ends on {last_date})"


def aggregate(app: App) -> int:
    """Rebuild the ``pwc`` shares (variants all/official; month, quarter, year)."""
    rows = share_rows(_monthly_counts(app.engine), app.settings.framework_for_pwc_code())
    last_date = _stored_state(app.engine, LAST_DATE_KEY)
    notes = {g: incomplete_period_note(last_date, g) for g in GRANULARITIES}
    notes = {f"{NOTE_KEY}:{SHARE_SOURCE}:{g}": note for g, note in notes.items() if note and rows}
    with app.engine.begin() as connection:
        changed = replace_rows(
            connection, FrameworkShare, rows, SHARE_KEY, [FrameworkShare.source == SHARE_SOURCE]
        )
        stored = dict(
            connection.execute(
                select(SourceState.key, SourceState.value).where(
                    SourceState.source == SOURCE, SourceState.key.like(f"{NOTE_KEY}:%")
                )
            ).all()
        )
        if stored != notes:  # rewrite only when they changed: a rebuild changes nothing
            connection.execute(
                delete(SourceState).where(
                    SourceState.source == SOURCE, SourceState.key.like(f"{NOTE_KEY}:%")
                )
            )
            for key, note in notes.items():
                connection.execute(
                    insert(SourceState).values(
                        source=SOURCE, key=key, value=note, updated_at=utc_now()
                    )
                )
    return changed
