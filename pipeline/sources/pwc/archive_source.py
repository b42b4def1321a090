"""The frozen Papers-with-Code archive: import links and papers, aggregate shares by paper date.

Import is all or nothing: both files are read in full first (DuckDB, only the needed columns;
see :mod:`.reader`), each link is given its paper's date (matched by paper URL, else by arXiv
id), and what the shares need, the number of links per (paper date, framework code, official),
is written in one transaction, so a bad archive (truncated gzip, wrong columns, an HTML page,
a missing path) leaves the database as it was. The links themselves stay in the cached files.
The files' fingerprints (size and modification time of the local copy) are kept in
``source_state``; an unchanged archive is not imported again, so a rerun changes nothing.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, func, select

from pipeline import shares
from pipeline.app import App
from pipeline.errors import StepFailed
from pipeline.http import HttpClient, HttpPolicy, HttpResponse
from pipeline.rawstore import store_response
from pipeline.runlog import RunRecord
from pipeline.sources.pwc import reader
from pipeline.sources.pwc.archive import (
    ArchiveError,
    FetchResult,
    ReadStats,
    archive_files,
    fetch_archive,
)
from pipeline.state import read_state, replace_notes, write_state
from storage.models import FrameworkShare, PwcLinkCount
from storage.upsert import insert_rows

log = logging.getLogger(__name__)

SOURCE = "pwc-archive"
SHARE_SOURCE = "pwc"
FINGERPRINT_KEY = "archive_fingerprint"
LAST_DATE_KEY = "last_paper_date"
GRANULARITIES = ("month", "quarter", "year")
COUNT_COLUMNS = ("published", "framework", "is_official", "links")


@dataclass
class ImportReport:
    imported: bool = False  # False when the archive was unchanged since the last import
    links: int = 0  # links stored (one per paper and repository)
    papers: int = 0  # linked papers found in the papers file(s): their dates were imported
    links_without_paper: int = 0
    links_by_arxiv: int = 0  # links whose paper only its arXiv id found
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        found = f"{self.papers} of their papers found"
        if self.links_by_arxiv:
            plural = "" if self.links_by_arxiv == 1 else "s"
            found += f"; {self.links_by_arxiv} link{plural} matched by arXiv id"
        return f"imported {self.links} links ({found})"


def _fetch(app: App, run: RunRecord, location: str, http: HttpClient) -> FetchResult:
    """A local copy of ``location``; downloads are recorded in ``raw_responses`` (no body)."""
    result = fetch_archive(location, Path(app.settings.pwc.cache_dir), http)
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
    """What identifies the archive's files: each data file (a directory's shards each), with
    its size and modification time in nanoseconds."""
    files = [file for path in paths for file in archive_files(path)]
    return json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])


def _stored_state(engine: Engine, key: str) -> str | None:
    with engine.connect() as connection:
        return read_state(connection, SOURCE, key)


# One link per (paper_url, repo_url): the last row of the file, as an upsert would keep it.
# Its paper: the last papers row with its URL, else (a paper renamed on the site) the last row
# with its arXiv id.
_MATCH_SQL = """
CREATE TEMP TABLE usable AS
    SELECT paper_url, repo_url, arxiv_id, framework, coalesce(is_official, false) AS is_official
    FROM links
    WHERE seq IN (SELECT max(seq) FROM links
                    WHERE paper_url IS NOT NULL AND repo_url IS NOT NULL AND framework IS NOT NULL
                    GROUP BY paper_url, repo_url);
CREATE TEMP TABLE by_url AS
    SELECT paper_url, arg_max_null(published, seq) AS published
    FROM papers WHERE paper_url IN (SELECT paper_url FROM usable)
    GROUP BY paper_url;
CREATE TEMP TABLE by_arxiv AS
    SELECT arxiv_id, arg_max_null(paper_url, seq) AS paper_url,
           arg_max_null(published, seq) AS published
    FROM papers
    WHERE arxiv_id IN (SELECT arxiv_id FROM usable ANTI JOIN by_url USING (paper_url))
    GROUP BY arxiv_id
"""
# Links per (date, framework code, official) and how each found its paper.
_COUNTS_SQL = """
SELECT strftime(published, '%Y-%m-%d'), framework, is_official, by_url, by_arxiv, links
FROM (SELECT coalesce(b.published, a.published) AS published, u.framework, u.is_official,
             b.paper_url IS NOT NULL AS by_url, a.arxiv_id IS NOT NULL AS by_arxiv,
             count(*) AS links
      FROM usable u
      LEFT JOIN by_url b USING (paper_url)
      LEFT JOIN by_arxiv a ON b.paper_url IS NULL AND a.arxiv_id = u.arxiv_id
      GROUP BY ALL)
"""
_SUMMARY_SQL = """
SELECT (SELECT count(*) FROM links
        WHERE paper_url IS NULL OR repo_url IS NULL OR framework IS NULL),
       (SELECT count(*) FROM (SELECT paper_url FROM by_url UNION SELECT paper_url FROM by_arxiv)),
       (SELECT strftime(max(published), '%Y-%m-%d') FROM papers)
"""


@dataclass
class ArchiveRows:
    """What an import writes (links per paper date, framework code and official flag) and
    what reading the files saw."""

    counts: list[tuple[str | None, str, bool, int]]  # (published, framework, is_official, links)
    links: int  # usable links: one per (paper_url, repo_url)
    last_date: str | None  # the latest paper date in the papers file(s)
    papers_found: int  # linked papers found in the papers file(s)
    links_without_paper: int
    links_by_arxiv: int  # links whose paper only its arXiv id found
    problems: list[str]


def read_archive(links_file: Path, papers_files: Sequence[Path]) -> ArchiveRows:
    """Read and normalise the archive files, match links to papers and count; nothing is
    written."""
    links_stats, papers_stats = ReadStats(), ReadStats()
    with contextlib.closing(reader.connect()) as db, reader.interruptible():
        reader.load_links(db, links_file, links_stats)
        reader.load_papers(db, list(papers_files), papers_stats)
        for statement in filter(str.strip, _MATCH_SQL.split(";")):
            db.execute(statement)
        groups = db.execute(_COUNTS_SQL).fetchall()
        incomplete, papers, last_date = db.execute(_SUMMARY_SQL).fetchone()
    counts: Counter[tuple[str | None, str, bool]] = Counter()
    by_arxiv = orphans = 0
    for published, framework, official, by_url, arxiv, links in groups:
        counts[(published, framework, official)] += links
        by_arxiv += links if arxiv else 0
        orphans += 0 if by_url or arxiv else links
    for stats in (links_stats, papers_stats):
        log.log(logging.WARNING if stats.problems() else logging.INFO, "%s", stats.summary())
    total = sum(counts.values())
    problems = links_stats.problems() + papers_stats.problems()
    if incomplete:
        problems.append(f"{incomplete} link rows without paper, repository or framework")
    if orphans:
        problems.append(
            f"{orphans} of {total} links have no paper in the papers "
            "file (no date: they count in no period)"
        )
    rows = sorted(((*key, n) for key, n in counts.items()), key=_count_order)
    return ArchiveRows(rows, total, last_date, papers, orphans, by_arxiv, problems)


def _count_order(row: tuple) -> tuple:
    return (row[0] or "", row[1], row[2])


def store_archive(connection: Connection, rows: ArchiveRows, fingerprint: str) -> None:
    """Replace the stored link counts by ``rows`` inside the caller's transaction."""
    connection.execute(delete(PwcLinkCount))
    insert_rows(connection, PwcLinkCount, rows.counts, COUNT_COLUMNS)
    state = {FINGERPRINT_KEY: fingerprint, LAST_DATE_KEY: rows.last_date or ""}
    write_state(connection, SOURCE, state)


def import_archive(
    app: App,
    run: RunRecord,
    links_location: str,
    papers_locations: Sequence[str],
    *,
    force: bool = False,
) -> ImportReport:
    """Import the archive (links + papers) in one transaction unless it is unchanged."""
    report = ImportReport()
    if not links_location:
        raise ArchiveError("no links file given ([pwc] links_url is empty and no --links)")
    if not papers_locations:  # every link would lack its date: all pwc shares would go
        raise ArchiveError("no papers file given ([pwc] papers_url is empty and no --papers)")
    http = HttpClient(HttpPolicy(app.settings.http))  # one budget for all files of the run
    try:
        links_file = _fetch(app, run, links_location, http).path
        papers_files = [_fetch(app, run, location, http).path for location in papers_locations]
    finally:  # failed downloads were requests too
        run.requests += http.policy.requests_sent
    fingerprint = _fingerprint([links_file, *papers_files])
    if not force and _stored_state(app.engine, FINGERPRINT_KEY) == fingerprint:
        log.info("pwc-archive: unchanged since the last import; nothing to do")
        return report

    rows = read_archive(links_file, papers_files)
    if not rows.links:  # storing it would delete every link and all pwc shares
        detail = "; ".join(rows.problems) or "the file holds no rows"
        raise ArchiveError(f"{links_file}: no usable link ({detail}); nothing imported")
    if not rows.papers_found:
        raise ArchiveError(
            f"none of the {rows.links} links has its paper in "
            f"{', '.join(str(p) for p in papers_files)}: is it the papers file of this archive?"
        )
    with app.engine.begin() as connection:
        store_archive(connection, rows, fingerprint)
    report = ImportReport(
        imported=True,
        links=rows.links,
        papers=rows.papers_found,
        links_without_paper=rows.links_without_paper,
        links_by_arxiv=rows.links_by_arxiv,
        problems=rows.problems,
    )
    run.rows += report.links
    log.info("pwc-archive: %s", report.summary())
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


def _monthly_counts(engine: Engine) -> list[tuple[str, str, bool, int]]:
    """(YYYY-MM, framework code, official, links) of the dated links."""
    month = func.substr(PwcLinkCount.published, 1, 7)
    query = (
        select(
            month, PwcLinkCount.framework, PwcLinkCount.is_official, func.sum(PwcLinkCount.links)
        )
        .where(PwcLinkCount.published.is_not(None))
        .group_by(month, PwcLinkCount.framework, PwcLinkCount.is_official)
    )
    with engine.connect() as connection:
        return [
            (m, code, bool(official), int(n)) for m, code, official, n in connection.execute(query)
        ]


def period_start(month: str, granularity: str) -> str:
    """First day of the month, quarter or year of a ``YYYY-MM`` string."""
    year, number = month[:4], int(month[5:7])
    if granularity == "month":
        return f"{month}-01"
    if granularity == "quarter":
        return f"{year}-{(number - 1) // 3 * 3 + 1:02d}-01"
    return f"{year}-01-01"


def share_rows(
    monthly: Iterable[tuple[str, str, bool, int]], framework_of: dict[str, str]
) -> list[dict]:
    """Shares per variant (all, official) and granularity from monthly counts per PwC code.

    Every framework gets a row in every period the archive has papers in, 0 where it has no
    implementation (as gtrends and pwc-api have one for every configured framework).
    """
    frameworks = sorted(set(framework_of.values()))
    values: dict[tuple[str, str], dict[str, dict[str, int]]] = {}  # (granularity, variant)
    for month, code, official, count in monthly:
        framework = framework_of.get(code)
        if framework is None:  # a code no configured framework has
            continue
        for granularity in GRANULARITIES:
            period = period_start(month, granularity)
            for variant in ("all", "official"):
                cells = values.setdefault((granularity, variant), {})
                cell = cells.setdefault(period, dict.fromkeys(frameworks, 0))
                cell[framework] += count if variant == "all" or official else 0
    rows: list[dict] = []
    for (granularity, variant), cells in values.items():
        cell_rows = (
            (period, framework, value)
            for period, cell in sorted(cells.items())
            for framework, value in cell.items()
        )
        rows += shares.share_rows(cell_rows, SHARE_SOURCE, variant, granularity)
    return rows


def _period_end(day: dt.date, granularity: str) -> dt.date:
    month = {"month": day.month, "quarter": (day.month - 1) // 3 * 3 + 3, "year": 12}[granularity]
    return dt.date(day.year, month, calendar.monthrange(day.year, month)[1])


def incomplete_period_note(last_date: str | None, granularity: str) -> str | None:
    """A note when the archive's last date does not reach the end of its period."""
    if not last_date:
        return None
    if dt.date.fromisoformat(last_date) >= _period_end(
        dt.date.fromisoformat(last_date), granularity
    ):
        return None
    start = period_start(last_date[:7], granularity)
    return f"{start}: incomplete {granularity} (the archive ends on {last_date})"


def aggregate(app: App) -> int:
    """Rebuild the ``pwc`` shares (variants all/official; month, quarter, year)."""
    rows = share_rows(_monthly_counts(app.engine), app.settings.framework_for_pwc_code())
    last_date = _stored_state(app.engine, LAST_DATE_KEY)
    notes = {g: incomplete_period_note(last_date, g) for g in GRANULARITIES}
    notes = {g: note for g, note in notes.items() if note and rows}
    with app.engine.begin() as connection:
        changed = shares.replace_shares(connection, rows, [FrameworkShare.source == SHARE_SOURCE])
        replace_notes(connection, SOURCE, SHARE_SOURCE, notes)
    return changed
