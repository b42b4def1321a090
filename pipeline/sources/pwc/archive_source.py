"""The frozen Papers-with-Code archive: import links and papers, aggregate shares by paper date.

Import is all or nothing: both files are read in full first (only the needed columns: the links,
and the URL and date of every paper, from which the linked papers' dates are kept), then the
links are written with their paper's date in one transaction, so a bad archive (truncated gzip,
wrong columns, an HTML page, a missing path) leaves the database as it was.
The files' fingerprints (size and modification time of the local copy) are kept in
``source_state``; an unchanged archive is not imported again, so a rerun changes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, delete, func, select

from pipeline import shares
from pipeline.app import App
from pipeline.errors import StepFailed
from pipeline.http import HttpClient, HttpPolicy, HttpResponse
from pipeline.rawstore import store_response
from pipeline.runlog import RunRecord
from pipeline.sources.pwc.archive import (
    ArchiveError,
    FetchResult,
    ReadStats,
    fetch_archive,
    read_links,
    read_papers,
)
from pipeline.state import read_state, replace_notes, write_state
from storage.models import FrameworkShare, PwcLink
from storage.upsert import CHUNK_ROWS, upsert

log = logging.getLogger(__name__)

SOURCE = "pwc-archive"
SHARE_SOURCE = "pwc"
FINGERPRINT_KEY = "archive_fingerprint"
LAST_DATE_KEY = "last_paper_date"
GRANULARITIES = ("month", "quarter", "year")
LINK_KEY = ["paper_url", "repo_url"]
STORED_COLUMNS = ["paper_url", "repo_url", "arxiv_id", "is_official", "framework", "published"]


@dataclass
class ImportReport:
    imported: bool = False  # False when the archive was unchanged since the last import
    links: int = 0  # links stored (one per paper and repository)
    papers: int = 0  # linked papers found in the papers file(s): their dates were imported
    links_without_paper: int = 0
    problems: list[str] = field(default_factory=list)


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
    return json.dumps([[str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] for p in paths])


def _stored_state(engine: Engine, key: str) -> str | None:
    with engine.connect() as connection:
        return read_state(connection, SOURCE, key)


def _read_links(path: Path, stats: ReadStats) -> tuple[pa.Table, int]:
    """The usable links, one per (paper_url, repo_url), sorted by that key; and how many rows
    lacked a paper, repository or framework."""
    tables, skipped = [], 0
    for batch in read_links(path, stats=stats):
        table = pa.Table.from_pandas(batch, schema=_LINKS_SCHEMA, preserve_index=False)
        complete = pc.and_(
            pc.and_(pc.is_valid(table["paper_url"]), pc.is_valid(table["repo_url"])),
            pc.is_valid(table["framework"]),
        )
        tables.append(table.filter(complete))
        skipped += len(table) - len(tables[-1])
    if not tables:
        return _LINKS_SCHEMA.empty_table(), skipped
    return _last_per_key(pa.concat_tables(tables), LINK_KEY), skipped


_LINKS_SCHEMA = pa.schema(
    [
        ("paper_url", pa.string()),
        ("arxiv_id", pa.string()),
        ("repo_url", pa.string()),
        ("is_official", pa.bool_()),
        ("framework", pa.string()),
    ]
)


def _last_per_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """The last row of each ``key``, as an upsert would keep, sorted by the key.

    Links sorted by their key fill the table's B-tree in order: 3x faster to insert than in
    file order.
    """
    order = pa.array(np.arange(len(table)))
    ranked = table.append_column("order", order).sort_by(
        [*((name, "ascending") for name in key), ("order", "ascending")]
    )
    if len(ranked) < 2:
        return ranked.drop_columns(["order"])
    changes = [pc.not_equal(ranked[name][:-1], ranked[name][1:]) for name in key]
    is_last = pa.chunked_array([*functools.reduce(pc.or_, changes).chunks, pa.array([True])])
    return ranked.filter(is_last).drop_columns(["order"])


@dataclass
class _PaperDates:
    urls: pa.ChunkedArray  # the linked papers found in the papers file(s), each once
    published: pa.ChunkedArray  # their "YYYY-MM-DD" dates (null when undated)
    last_date: str | None  # the latest date in the papers file(s)


def _read_paper_dates(paths: list[Path], linked: pa.ChunkedArray, stats: ReadStats) -> _PaperDates:
    """Read the papers file(s) (two columns: ~30 MB for the whole archive) and keep only the
    dates of papers that ``linked`` names.

    Membership and de-duplication are done in Arrow, once for all batches: pandas' ``isin`` and
    ``drop_duplicates`` on strings go through Python objects (seconds for 576k papers), and
    Arrow's ``is_in`` builds its hash set again on every call.
    """
    tables, latest = [], []
    for path in paths:
        for batch in read_papers(path, stats=stats):
            tables.append(pa.Table.from_pandas(batch, schema=_PAPERS_SCHEMA, preserve_index=False))
            latest.append(pc.max(tables[-1]["date"]).as_py())
    papers = pa.concat_tables(tables) if tables else _PAPERS_SCHEMA.empty_table()
    papers = _last_per_key(papers.filter(pc.is_in(papers["paper_url"], linked)), ["paper_url"])
    last = max((day for day in latest if day is not None), default=None)
    return _PaperDates(
        papers["paper_url"],
        pc.cast(pc.cast(papers["date"], pa.date32()), pa.string()),
        None if last is None else last.strftime("%Y-%m-%d"),
    )


_PAPERS_SCHEMA = pa.schema([("paper_url", pa.string()), ("date", pa.timestamp("s"))])


def _link_tuples(links: pa.Table) -> Iterator[tuple]:
    """Rows in STORED_COLUMNS order for ``upsert``, built a batch at a time (bounded memory)."""
    links = links.set_column(
        links.schema.get_field_index("is_official"),
        "is_official",
        pc.fill_null(links["is_official"], False),
    )
    for batch in links.select(STORED_COLUMNS).to_batches(max_chunksize=CHUNK_ROWS):
        yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)


@dataclass
class ArchiveRows:
    """What an import writes (the links with their paper's date) and what reading them saw."""

    links: pa.Table  # STORED_COLUMNS, one row per (paper_url, repo_url), sorted by that key
    last_date: str | None  # the latest paper date in the papers file(s)
    papers_found: int  # linked papers found in the papers file(s)
    links_without_paper: int
    problems: list[str]


def read_archive(links_file: Path, papers_files: Sequence[Path]) -> ArchiveRows:
    """Read and normalise the archive files; nothing is written."""
    papers_stats, links_stats = ReadStats(), ReadStats()
    links, skipped = _read_links(links_file, links_stats)
    papers = _read_paper_dates(list(papers_files), links["paper_url"], papers_stats)
    position = pc.index_in(links["paper_url"], value_set=papers.urls)
    links = links.append_column("published", pc.take(papers.published, position))
    problems = links_stats.problems() + papers_stats.problems()
    if skipped:
        problems.append(f"{skipped} link rows without paper, repository or framework")
    if position.null_count:
        problems.append(
            f"{position.null_count} of {len(links)} links have no paper in the papers "
            "file (no date: they count in no period)"
        )
    return ArchiveRows(links, papers.last_date, len(papers.urls), position.null_count, problems)


def store_archive(connection: Connection, rows: ArchiveRows, fingerprint: str) -> None:
    """Replace the stored links by ``rows`` inside the caller's transaction."""
    connection.execute(delete(PwcLink))
    upsert(connection, PwcLink, _link_tuples(rows.links), LINK_KEY, STORED_COLUMNS)
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
    if not len(rows.links):  # storing it would delete every link and all pwc shares
        detail = "; ".join(rows.problems) or "the file holds no rows"
        raise ArchiveError(f"{links_file}: no usable link ({detail}); nothing imported")
    if not rows.papers_found:
        raise ArchiveError(
            f"none of the {len(rows.links)} links has its paper in "
            f"{', '.join(str(p) for p in papers_files)}: is it the papers file of this archive?"
        )
    with app.engine.begin() as connection:
        store_archive(connection, rows, fingerprint)
    report = ImportReport(
        imported=True,
        links=len(rows.links),
        papers=rows.papers_found,
        links_without_paper=rows.links_without_paper,
        problems=rows.problems,
    )
    run.rows += report.links
    log.info(
        "pwc-archive: imported %d links (%d of their papers found)", report.links, report.papers
    )
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
    month = func.substr(PwcLink.published, 1, 7)
    query = (
        select(month.label("month"), PwcLink.framework, PwcLink.is_official, func.count())
        .where(PwcLink.published.is_not(None))
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
    """Shares per variant (all, official) and granularity from monthly counts per PwC code.

    Every framework gets a row in every period the archive has papers in, 0 where it has no
    implementation (as gtrends and pwc-api have one for every configured framework).
    """
    if counts.empty:
        return []
    counts = counts.assign(framework=counts["code"].map(framework_of)).dropna(subset=["framework"])
    if counts.empty:  # no configured framework has a PwC code
        return []
    frameworks = sorted(set(framework_of.values()))
    rows: list[dict] = []
    for granularity in GRANULARITIES:
        periods = sorted(set(period_start(counts["month"], granularity)))
        every = pd.MultiIndex.from_product(
            [periods, frameworks], names=["period_start", "framework"]
        )
        for variant, subset in (("all", counts), ("official", counts[counts["is_official"]])):
            values = (
                subset.assign(period_start=period_start(subset["month"], granularity))
                .groupby(["period_start", "framework"])["count"]
                .sum()
                .reindex(every, fill_value=0)
                .reset_index(name="value")
            )
            rows += shares.share_rows(values, SHARE_SOURCE, variant, granularity)
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
    notes = {g: note for g, note in notes.items() if note and rows}
    with app.engine.begin() as connection:
        changed = shares.replace_shares(connection, rows, [FrameworkShare.source == SHARE_SOURCE])
        replace_notes(connection, SOURCE, SHARE_SOURCE, notes)
    return changed
