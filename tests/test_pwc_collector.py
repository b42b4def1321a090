"""Papers with Code end to end: archive import and live counts through the CLI, on fakes."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipeline.sources.pwc.api_source import quarters
from tests.conftest import query, run_cli, write_config
from tests.fakes import pwc_data
from tests.fakes.pwc_server import ArchiveFileServer, FakePwcApi, html_page, status

LINKS = pwc_data.load_fixture_links()
PAPERS = pwc_data.fixture_papers(LINKS)


COUNTS = "SELECT published, framework, is_official, links FROM pwc_link_counts ORDER BY 1, 2, 3"


def snapshot(url: str) -> dict[str, list[tuple]]:
    tables = ["framework_share", "source_state"]
    return {
        "pwc_link_counts": query(url, COUNTS),
        **{t: query(url, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables},
    }


def stored_links(url: str) -> int:
    return query(url, "SELECT coalesce(sum(links), 0) FROM pwc_link_counts")[0][0]


@pytest.fixture
def archive(tmp_path: Path) -> dict[str, Path]:
    """The real fixture links with dated papers, in both formats."""
    return pwc_data.write_fixture_archive(tmp_path / "archive")


def import_args(archive: dict[str, Path], fmt: str = "parquet") -> list[str]:
    links, papers = str(archive[f"links.{fmt}"]), str(archive[f"papers.{fmt}"])
    return ["backfill", "pwc", "--links", links, "--papers", papers]


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str) -> Path:
    extra = f'[pwc]\ncache_dir = "{tmp_path / "cache"}"\n[gtrends]\nenabled = false\n'
    return write_config(tmp_path / "trends.toml", sqlite_url, extra)


def expected_quarter_counts(official_only: bool = False) -> Counter:
    dates = {p["paper_url"]: p["date"] for p in PAPERS}
    counts: Counter = Counter()
    seen = set()
    for link in LINKS:
        key = (link["paper_url"], pwc_data_repo(link["repo_url"]))
        if key in seen or dates.get(link["paper_url"]) is None:
            continue
        seen.add(key)
        if official_only and not link["is_official"]:
            continue
        day = pd.Timestamp(dates[link["paper_url"]])
        counts[(f"{day.year}-{(day.month - 1) // 3 * 3 + 1:02d}-01", link["framework"])] += 1
    return counts


def pwc_data_repo(url: str) -> str:
    from pipeline.sources.pwc.archive import normalize_repo_url

    return normalize_repo_url(url) or url


@pytest.mark.parametrize("fmt", ["parquet", "json.gz"])
def test_archive_import_counts_and_shares(archive, config, sqlite_url, fmt) -> None:
    result = run_cli(
        config,
        "backfill",
        "pwc",
        "--links",
        str(archive[f"links.{fmt}"]),
        "--papers",
        str(archive[f"papers.{fmt}"]),
    )
    assert result.exit_code == 0, result.output
    distinct = {(link["paper_url"], pwc_data_repo(link["repo_url"])) for link in LINKS}
    assert stored_links(sqlite_url) == len(distinct)
    rows = query(
        sqlite_url,
        "SELECT variant, period_start, framework, value, share FROM framework_share "
        "WHERE source = 'pwc' AND granularity = 'quarter'",
    )
    names = {"tf": "tensorflow", "paddle": "paddlepaddle", "none": "other"}
    for official, variant in ((False, "all"), (True, "official")):
        expected = {
            (q, names.get(code, code)): n
            for (q, code), n in expected_quarter_counts(official).items()
        }
        stored = {(q, f): v for var, q, f, v, _ in rows if var == variant}
        assert {k: v for k, v in stored.items() if v} == pytest.approx(expected)
        # Every framework has a row (0 when it has no implementation) in every period.
        frameworks = {f for _, f in stored}
        periods = {q for q, _ in stored}
        assert set(stored) == {(q, f) for q in periods for f in frameworks}
        assert len(frameworks) >= 5
    totals = Counter()
    for _variant, quarter, _f, _v, share in rows:
        totals[(_variant, quarter)] += share
    assert all(total == pytest.approx(1.0) for total in totals.values())
    granularities = query(sqlite_url, "SELECT DISTINCT granularity FROM framework_share")
    assert {g for (g,) in granularities} == {"month", "quarter", "year"}


def test_frameworks_without_pwc_codes_import_the_archive_and_share_nothing(
    archive, tmp_path, sqlite_url
) -> None:
    extra = (
        f'[pwc]\ncache_dir = "{tmp_path / "cache"}"\n[gtrends]\nenabled = false\n'
        '[frameworks.pytorch]\nname = "PyTorch"\ngtrends = "pytorch"\n'
    )
    config = write_config(tmp_path / "no-codes.toml", sqlite_url, extra)
    result = run_cli(config, *import_args(archive))
    assert result.exit_code == 0, result.output
    assert stored_links(sqlite_url) > 0
    assert query(sqlite_url, "SELECT count(*) FROM framework_share")[0][0] == 0
    assert run_cli(config, "aggregate").exit_code == 0


def test_an_empty_links_url_is_named(tmp_path, sqlite_url, monkeypatch) -> None:
    extra = f'[pwc]\ncache_dir = "{tmp_path / "cache"}"\n[gtrends]\nenabled = false\n'
    config = write_config(tmp_path / "c.toml", sqlite_url, extra)
    monkeypatch.setenv("TRENDS_PWC_LINKS_URL", "")
    result = run_cli(config, "collect", "pwc-archive")
    assert result.exit_code == 1
    assert "no links file given ([pwc] links_url is empty and no --links)" in result.stderr


def test_rerun_changes_nothing_and_other_framework_is_none(archive, config, sqlite_url) -> None:
    args = import_args(archive)
    assert run_cli(config, *args).exit_code == 0
    before = snapshot(sqlite_url)
    second = run_cli(config, *args)
    assert second.exit_code == 0 and "unchanged" in second.stderr
    forced = run_cli(config, *args, "--force")
    assert forced.exit_code == 0
    assert snapshot(sqlite_url)["framework_share"] == before["framework_share"]
    assert snapshot(sqlite_url)["pwc_link_counts"] == before["pwc_link_counts"]
    other = query(sqlite_url, "SELECT count(*) FROM framework_share WHERE framework = 'other'")
    assert other[0][0] > 0


def test_links_without_paper_are_counted_and_reported(tmp_path, config, sqlite_url) -> None:
    folder = tmp_path / "orphans"
    spec = pwc_data.ArchiveSpec(n_links=3000, n_papers=2000, orphan_fraction=0.05, batch_size=1000)
    files = pwc_data.write_synthetic_archive(folder, spec, formats=("parquet",))
    links = next(p for name, p in files.items() if name.startswith("links"))
    papers = next(p for name, p in files.items() if name.startswith("papers"))
    result = run_cli(
        config, "-v", "backfill", "pwc", "--links", str(links), "--papers", str(papers)
    )
    assert result.exit_code == 0, result.output
    assert "have no paper in the papers file" in result.stderr
    reported = re.search(r"(\d+) of (\d+) links have no paper", result.stderr)
    assert reported and int(reported[2]) == stored_links(sqlite_url) == spec.n_links
    # Orphans are counted as links without a date (as are links to undated papers), so they
    # count in no period.
    undated = query(sqlite_url, "SELECT sum(links) FROM pwc_link_counts WHERE published IS NULL")
    assert 0 < int(reported[1]) < undated[0][0]


def test_incomplete_last_quarter_is_flagged_in_shares(archive, config) -> None:
    assert (
        run_cli(
            config,
            "backfill",
            "pwc",
            "--links",
            str(archive["links.parquet"]),
            "--papers",
            str(archive["papers.parquet"]),
        ).exit_code
        == 0
    )
    last = max(p["date"] for p in PAPERS if p["date"] is not None)
    shown = run_cli(config, "shares", "--source", "pwc", "--granularity", "quarter")
    day = pd.Timestamp(last)
    if day == day + pd.offsets.QuarterEnd(0):
        pytest.skip("the fixture's last paper happens to close its quarter")
    assert f"incomplete quarter (the archive ends on {pd.Timestamp(last).date()})" in shown.stdout
    as_csv = run_cli(
        config, "shares", "--source", "pwc", "--granularity", "quarter", "--format", "csv"
    )
    assert "note: pwc: " in as_csv.stderr and "incomplete quarter" in as_csv.stderr
    other = run_cli(
        config, "shares", "--source", "pwc", "--granularity", "month", "--format", "csv"
    )
    assert "incomplete quarter" not in other.stderr  # notes only for what is shown


def test_download_cache_skips_unchanged_files(archive, config, sqlite_url) -> None:
    with ArchiveFileServer(
        {"links.parquet": archive["links.parquet"], "papers.parquet": archive["papers.parquet"]}
    ) as server:
        args = [
            "backfill",
            "pwc",
            "--links",
            server.url("links.parquet"),
            "--papers",
            server.url("papers.parquet"),
        ]
        assert run_cli(config, *args).exit_code == 0
        assert run_cli(config, *args).exit_code == 0
        assert server.full_downloads("/links.parquet") == 1
        assert server.full_downloads("/papers.parquet") == 1
    # A 304 leaves nothing behind in the cache (it used to leave empty .part files).
    assert not [p.name for p in (config.parent / "cache").iterdir() if ".part" in p.name]
    recorded = query(
        sqlite_url, "SELECT status, body FROM raw_responses WHERE source='pwc-archive'"
    )
    assert recorded and all(body is None for _, body in recorded)


def test_request_budget_covers_all_files_of_a_run(archive, config, sqlite_url, monkeypatch) -> None:
    """[http] request_budget is per run and source, not per file; failed downloads count."""
    files = {"links.parquet": archive["links.parquet"], "papers.parquet": archive["papers.parquet"]}
    monkeypatch.setenv("TRENDS_HTTP_REQUEST_BUDGET", "1")
    with ArchiveFileServer(files) as server:
        links, papers = server.url("links.parquet"), server.url("papers.parquet")
        result = run_cli(config, "backfill", "pwc", "--links", links, "--papers", papers)
        assert len(server.requests) == 1
    assert result.exit_code == 1 and "request budget of 1 spent" in result.stderr
    assert query(sqlite_url, "SELECT requests FROM runs") == [(1,)]
    assert stored_links(sqlite_url) == 0


def broken_files(tmp_path: Path, archive: dict[str, Path]) -> dict[str, Path]:
    truncated = tmp_path / "truncated.json.gz"
    data = archive["links.json.gz"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    wrong = tmp_path / "wrong.parquet"
    pd.DataFrame({"title": ["x"], "stars": [3]}).to_parquet(wrong)
    html = tmp_path / "page.parquet"
    html.write_text("<!doctype html><html><body>Sign in</body></html>")
    links = pd.read_parquet(archive["links.parquet"])
    no_rows = tmp_path / "no-rows.parquet"
    links.iloc[:0].to_parquet(no_rows)
    empty_array = tmp_path / "empty.json.gz"
    empty_array.write_bytes(gzip.compress(b"[]"))
    unusable = tmp_path / "unusable.parquet"
    links.assign(framework=None).to_parquet(unusable)
    return {
        "truncated gzip": truncated,
        "wrong columns": wrong,
        "html page": html,
        "missing path": tmp_path / "nope.parquet",
        # Storing "no links" would delete every stored link and all pwc shares.
        "no rows": no_rows,
        "empty json array": empty_array,
        "no usable link": unusable,
    }


BROKEN = [
    "truncated gzip",
    "wrong columns",
    "html page",
    "missing path",
    "no rows",
    "empty json array",
    "no usable link",
]


@pytest.mark.parametrize("kind", BROKEN)
def test_bad_archive_is_one_line_exit_1_and_database_unchanged(
    archive, config, sqlite_url, tmp_path, kind
) -> None:
    good = import_args(archive)
    assert run_cli(config, *good).exit_code == 0
    before = snapshot(sqlite_url)
    bad = broken_files(tmp_path, archive)[kind]
    result = run_cli(
        config, "backfill", "pwc", "--links", str(bad), "--papers", str(archive["papers.parquet"])
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: pwc-archive: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert snapshot(sqlite_url) == before


def test_html_instead_of_a_download_is_refused(archive, config, sqlite_url) -> None:
    with ArchiveFileServer({"links.parquet": archive["links.parquet"]}) as server:
        server.fail_next(html_page())
        result = run_cli(
            config,
            "backfill",
            "pwc",
            "--links",
            server.url("links.parquet"),
            "--papers",
            str(archive["papers.parquet"]),
        )
    assert result.exit_code == 1 and "HTML" in result.stderr
    assert stored_links(sqlite_url) == 0


@pytest.mark.parametrize("papers", ["none given", "another archive's"])
def test_papers_that_date_no_link_are_refused_and_shares_kept(
    archive, config, sqlite_url, tmp_path, monkeypatch, papers
) -> None:
    """Without dates every link would count nowhere and all pwc shares would be deleted: an
    empty papers setting or a papers file that matches no link is an error, nothing changes."""
    assert run_cli(config, *import_args(archive)).exit_code == 0
    before = snapshot(sqlite_url)
    links = ["backfill", "pwc", "--force", "--links", str(archive["links.parquet"])]
    if papers == "none given":
        monkeypatch.setenv("TRENDS_PWC_PAPERS_URL", "")
        result = run_cli(config, *links)
        assert "no papers file given" in result.stderr
    else:
        other = tmp_path / "other-papers.parquet"
        pd.DataFrame(
            {"paper_url": ["https://paperswithcode.com/paper/x"], "date": ["2020-01-01"]}
        ).to_parquet(other)
        result = run_cli(config, *links, "--papers", str(other))
        assert "has its paper in" in result.stderr
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert snapshot(sqlite_url) == before


# --- live API --------------------------------------------------------------------------------


def api_config(tmp_path: Path, sqlite_url: str, api: FakePwcApi) -> Path:
    extra = (
        f'[pwc]\napi_url = "{api.base_url}"\napi_start = "2024-07-01"\n[gtrends]\nenabled = false\n'
    )
    return write_config(tmp_path / "api.toml", sqlite_url, extra)


def test_api_counts_are_stored_as_pwc_api_shares(tmp_path, sqlite_url, monkeypatch) -> None:
    monkeypatch.setenv("TRENDS_TODAY", "2025-02-15")
    with FakePwcApi(LINKS, PAPERS) as api:
        config = api_config(tmp_path, sqlite_url, api)
        result = run_cli(config, "collect", "pwc-api")
        assert result.exit_code == 0, result.output
        calls = len(api.requests)
        repeat = run_cli(config, "collect", "pwc-api")
        assert repeat.exit_code == 0
        # Only the current quarter's paper counts (and the repositories) are asked again.
        assert len(api.requests) - calls < calls
    repos = dict(
        query(
            sqlite_url,
            "SELECT framework, count FROM pwc_api_counts WHERE endpoint = 'repositories'",
        )
    )
    expected = Counter()
    for _repo, code in {
        (link["repo_url"], link["framework"]) for link in LINKS
    }:  # as the server counts
        expected[code] += 1
    assert repos["pytorch"] == expected["pytorch"] and repos["tensorflow"] == expected["tf"]
    quarters = query(
        sqlite_url,
        "SELECT DISTINCT period_start FROM pwc_api_counts WHERE endpoint = 'papers' ORDER BY 1",
    )
    assert [q for (q,) in quarters] == ["2024-07-01", "2024-10-01", "2025-01-01"]
    shares = query(
        sqlite_url,
        "SELECT variant, granularity, period_start, sum(share) FROM "
        "framework_share WHERE source = 'pwc-api' GROUP BY 1, 2, 3",
    )
    assert {(v, g) for v, g, _, _ in shares} == {("repositories", "day"), ("papers", "quarter")}
    assert all(total == pytest.approx(1.0) for *_, total in shares)


def test_a_quarter_collected_while_running_is_completed_after_it_ends(
    tmp_path, sqlite_url, monkeypatch
) -> None:
    """Collected mid-quarter, Q3 holds the papers up to that day; the first run after the
    quarter ended must fetch it whole, and later runs leave it alone."""

    def stored_q3() -> dict[str, int]:
        latest = (
            "SELECT framework, count FROM pwc_api_counts WHERE endpoint = 'papers' AND "
            "period_start = '2024-07-01' AND snapshot_date = (SELECT max(snapshot_date) FROM "
            "pwc_api_counts WHERE endpoint = 'papers' AND period_start = '2024-07-01')"
        )
        return dict(query(sqlite_url, latest))

    notes: dict[str, list[str]] = {}
    with FakePwcApi(LINKS, PAPERS) as api:
        config = api_config(tmp_path, sqlite_url, api)
        for today in ("2024-08-15", "2024-10-06", "2024-11-20"):
            monkeypatch.setenv("TRENDS_TODAY", today)
            assert run_cli(config, "collect", "pwc-api").exit_code == 0
            notes[today] = [
                line
                for line in run_cli(config, "shares", "--source", "pwc-api").stdout.splitlines()
                if line.startswith("note:")
            ]
            if today == "2024-08-15":
                mid_quarter = stored_q3()
            if today == "2024-10-06":
                q3_asked = [r for r in api.requests if r.query.get("start_date") == "2024-07-01"]
        later = [r for r in api.requests if r.query.get("start_date") == "2024-07-01"]
    dates = {p["paper_url"]: p["date"] for p in PAPERS}
    whole = Counter(
        code
        for url, code in {(link["paper_url"], link["framework"]) for link in LINKS}
        if "2024-07-01" <= dates[url] <= "2024-09-30"
    )
    assert stored_q3()["pytorch"] == whole["pytorch"] > mid_quarter["pytorch"]
    assert stored_q3()["tensorflow"] == whole["tf"]
    assert len(later) == len(q3_asked)  # final after 2024-10-06: not asked on 2024-11-20
    # `trends shares` flags the running quarter, and only that one.
    assert notes["2024-08-15"] == [
        "note: 2024-07-01: incomplete quarter (papers up to 2024-08-15; a run after the "
        "quarter ends completes it)"
    ]
    assert [n.split(" (")[0] for n in notes["2024-10-06"]] == [
        "note: 2024-10-01: incomplete quarter"
    ]
    assert "up to 2024-11-20" in notes["2024-11-20"][0]


def test_quarters_cover_mid_quarter_and_december_starts() -> None:
    assert quarters(date(2025, 3, 15), date(2025, 4, 1)) == [
        (date(2025, 1, 1), date(2025, 3, 31)),
        (date(2025, 4, 1), date(2025, 6, 30)),
    ]
    assert quarters(date(2024, 12, 31), date(2025, 1, 1)) == [
        (date(2024, 10, 1), date(2024, 12, 31)),
        (date(2025, 1, 1), date(2025, 3, 31)),
    ]


def test_a_quarter_fetched_on_its_last_day_is_fetched_again(
    tmp_path, sqlite_url, monkeypatch
) -> None:
    """Papers of a quarter's last day may not be counted yet on that day: only a run after
    the quarter's end makes it final."""
    with FakePwcApi(LINKS, PAPERS) as api:
        config = api_config(tmp_path, sqlite_url, api)
        for today in ("2024-09-30", "2024-10-01"):
            monkeypatch.setenv("TRENDS_TODAY", today)
            assert run_cli(config, "collect", "pwc-api").exit_code == 0
        asked = [r.query.get("start_date") for r in api.requests]
    frameworks = len(query(sqlite_url, "SELECT DISTINCT framework FROM pwc_api_counts"))
    assert asked.count("2024-07-01") == 2 * frameworks  # on 09-30, and again on 10-01


@pytest.mark.parametrize(
    ("endpoints", "stored"),
    [(["papers"], {"papers"}), (["repositories"], {"repositories"}), ([], set())],
)
def test_an_api_without_one_endpoint_gives_the_other_counts(
    tmp_path, sqlite_url, monkeypatch, endpoints, stored
) -> None:
    monkeypatch.setenv("TRENDS_TODAY", "2025-02-15")
    with FakePwcApi(LINKS, PAPERS, endpoints=endpoints) as api:
        result = run_cli(api_config(tmp_path, sqlite_url, api), "collect", "pwc-api")
    kept = query(sqlite_url, "SELECT DISTINCT endpoint FROM pwc_api_counts")
    assert {endpoint for (endpoint,) in kept} == stored
    if stored:
        assert result.exit_code == 0, result.output
        variants = query(sqlite_url, "SELECT DISTINCT variant FROM framework_share")
        assert {variant for (variant,) in variants} == stored
    else:
        assert result.exit_code == 1
        assert result.stderr == (
            f"Error: pwc-api: {api.base_url} has neither repositories/ nor papers/ (HTTP 404): "
            "is [pwc] api_url a v1-compatible API?\n"
        )


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ({"ignore_filters": True}, "ignores the framework filter"),
        ({"same_count": True}, "ignores the framework filter"),
        ({"echo_filters": ["framework"]}, "applied_filters"),
    ],
)
def test_api_that_ignores_filters_is_refused_and_nothing_stored(
    tmp_path, sqlite_url, monkeypatch, mode, message
) -> None:
    monkeypatch.setenv("TRENDS_TODAY", "2025-02-15")
    with FakePwcApi(LINKS, PAPERS, **mode) as api:
        result = run_cli(api_config(tmp_path, sqlite_url, api), "collect", "pwc-api")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: pwc-api: ") and message in result.stderr
    assert query(sqlite_url, "SELECT count(*) FROM pwc_api_counts")[0][0] == 0
    assert (
        query(sqlite_url, "SELECT count(*) FROM raw_responses WHERE source = 'pwc-api'")[0][0] > 0
    )
    assert query(sqlite_url, "SELECT status FROM runs")[0][0] == "failed"


def test_unreachable_source_is_named_and_others_are_kept(archive, tmp_path, sqlite_url) -> None:
    extra = (
        f'[pwc]\napi_url = "http://127.0.0.1:9/api/v1"\ncache_dir = "{tmp_path / "c"}"\n'
        f'links_url = "{archive["links.parquet"]}"\npapers_url = "{archive["papers.parquet"]}"\n'
        "[gtrends]\nenabled = false\n"
    )
    config = write_config(tmp_path / "all.toml", sqlite_url, extra)
    result = run_cli(config, "collect")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: pwc-api: ")
    assert query(sqlite_url, "SELECT source, status FROM runs ORDER BY id") == [
        ("pwc-archive", "ok"),
        ("pwc-api", "partial"),
    ]
    assert query(sqlite_url, "SELECT count(*) FROM framework_share WHERE source = 'pwc'")[0][0] > 0


def test_import_keeps_the_last_duplicate_link_and_only_linked_papers(
    tmp_path, config, sqlite_url
) -> None:
    """Links naming the same repository (after normalisation) are one row, the last one
    winning as an upsert would; papers without links are not stored; the last paper date of
    the whole papers file is kept for the incomplete-period note."""
    link = {**LINKS[0], "repo_url": "https://github.com/Owner/Repo", "framework": "tf"}
    links = [
        link,
        {**link, "repo_url": "https://github.com/owner/repo/tree/main", "framework": "jax"},
        {
            **link,
            "paper_url": "https://paperswithcode.com/paper/orphan",
            "paper_arxiv_id": "2999.00001",
        },
    ]
    papers = [
        {**PAPERS[0], "paper_url": link["paper_url"], "date": "2020-02-03"},
        {
            **PAPERS[0],
            "paper_url": "https://paperswithcode.com/paper/unlinked",
            "date": "2025-07-30",
        },
    ]
    schema = pwc_data.papers_schema()
    links_file = pwc_data.write_archive_file(
        tmp_path / "l.parquet",
        [pwc_data.records_batch(links, pwc_data.LINK_SCHEMA)],
        pwc_data.LINK_SCHEMA,
    )
    papers_file = pwc_data.write_archive_file(
        tmp_path / "p.json.gz", [pwc_data.records_batch(papers, schema)], schema
    )
    result = run_cli(
        config, "backfill", "pwc", "--links", str(links_file), "--papers", str(papers_file)
    )
    assert result.exit_code == 0, result.output
    assert "imported 2 links (1 of their papers found)" in result.stderr
    assert "1 of 2 links have no paper" in result.stderr
    stored = query(sqlite_url, "SELECT published, framework, links FROM pwc_link_counts")
    assert sorted(stored, key=str) == [("2020-02-03", "jax", 1), (None, "tf", 1)]
    assert query(sqlite_url, "SELECT value FROM source_state WHERE key = 'last_paper_date'") == [
        ("2025-07-30",)
    ]


@pytest.mark.parametrize("fmt", ["parquet", "json.gz"])
def test_a_link_whose_paper_was_renamed_finds_it_by_arxiv_id(
    tmp_path, config, sqlite_url, fmt
) -> None:
    """A link naming a paper URL the papers file lacks takes the date of the paper with its
    arXiv id (prefix and version ignored); without a match by either it has no paper. A paper
    found both ways counts once."""
    link = {**LINKS[0], "framework": "jax", "paper_arxiv_id": "arXiv:2001.00001v2"}
    links = [
        {**link, "paper_url": "https://paperswithcode.com/paper/old-slug"},
        {**link, "paper_url": "https://paperswithcode.com/paper/lost", "paper_arxiv_id": None},
        {
            **link,
            "paper_url": "https://paperswithcode.com/paper/new-slug",
            "repo_url": "https://github.com/someone/port",
            "framework": "pytorch",
        },
    ]
    papers = [
        {**PAPERS[0], "paper_url": "https://paperswithcode.com/paper/new-slug",
         "arxiv_id": "2001.00001", "date": "2020-02-03"},
        {**PAPERS[0], "paper_url": "https://paperswithcode.com/paper/other",
         "arxiv_id": "2001.00002", "date": "2021-05-06"},
    ]  # fmt: skip
    schema = pwc_data.papers_schema()
    links_file = pwc_data.write_archive_file(
        tmp_path / f"l.{fmt}",
        [pwc_data.records_batch(links, pwc_data.LINK_SCHEMA)],
        pwc_data.LINK_SCHEMA,
    )
    papers_file = pwc_data.write_archive_file(
        tmp_path / f"p.{fmt}", [pwc_data.records_batch(papers, schema)], schema
    )
    args = ("backfill", "pwc", "--links", str(links_file), "--papers", str(papers_file))
    result = run_cli(config, *args)
    assert result.exit_code == 0, result.output
    assert "imported 3 links (1 of their papers found; 1 link matched by arXiv id)" in result.stderr
    assert "1 of 3 links have no paper" in result.stderr
    stored = query(sqlite_url, "SELECT published, framework, links FROM pwc_link_counts")
    assert sorted(stored, key=str) == [
        ("2020-02-03", "jax", 1),
        ("2020-02-03", "pytorch", 1),
        (None, "jax", 1),
    ]


def test_a_changed_shard_of_a_links_directory_is_imported_again(
    archive, tmp_path, config, sqlite_url
) -> None:
    """The fingerprint that skips an unchanged archive covers a directory's shards."""
    shards = tmp_path / "links"
    shards.mkdir()
    shard = shards / "train-00000-of-00001.parquet"
    shard.write_bytes(archive["links.parquet"].read_bytes())
    args = ("backfill", "pwc", "--links", str(shards), "--papers", str(archive["papers.parquet"]))
    assert run_cli(config, *args).exit_code == 0
    before = stored_links(sqlite_url)
    few = pwc_data.load_fixture_links()[:3]
    pwc_data.write_archive_file(
        shard, [pwc_data.records_batch(few, pwc_data.LINK_SCHEMA)], pwc_data.LINK_SCHEMA
    )
    result = run_cli(config, *args)
    assert result.exit_code == 0, result.output
    assert "unchanged" not in result.stderr
    assert stored_links(sqlite_url) == 3 < before


def test_api_block_page_ends_partial_and_every_response_is_stored(
    tmp_path, sqlite_url, monkeypatch
) -> None:
    """DESIGN §6: an HTML page ends the run partial; raw_responses holds every response the
    collector received, the retried 429 included."""
    monkeypatch.setenv("TRENDS_HTTP_BACKOFF_MAX", "0")
    with FakePwcApi(LINKS, PAPERS) as api:
        config = api_config(tmp_path, sqlite_url, api)
        api.fail_next(status(429), html_page())
        result = run_cli(config, "collect", "pwc-api")
    assert result.exit_code == 1 and "HTML page instead of JSON" in result.stderr
    assert query(sqlite_url, "SELECT status FROM runs") == [("partial",)]
    stored = query(sqlite_url, "SELECT status FROM raw_responses ORDER BY id")
    assert [s for (s,) in stored] == [429, 200]
    assert query(sqlite_url, "SELECT count(*) FROM pwc_api_counts") == [(0,)]


def test_api_shares_count_only_configured_frameworks(tmp_path, sqlite_url, monkeypatch) -> None:
    monkeypatch.setenv("TRENDS_TODAY", "2025-02-15")
    with FakePwcApi(LINKS, PAPERS) as api:
        assert run_cli(api_config(tmp_path, sqlite_url, api), "collect", "pwc-api").exit_code == 0
        frameworks = "".join(
            f'[frameworks.{key}]\nname = "{key}"\npwc = "{code}"\n'
            for key, code in (("pytorch", "pytorch"), ("tensorflow", "tf"))
        )
        extra = f'[pwc]\napi_url = "{api.base_url}"\n[gtrends]\nenabled = false\n{frameworks}'
        smaller = write_config(tmp_path / "two.toml", sqlite_url, extra)
        assert run_cli(smaller, "aggregate").exit_code == 0
    rows = query(
        sqlite_url,
        "SELECT variant, period_start, framework, share FROM framework_share "
        "WHERE source = 'pwc-api'",
    )
    assert {framework for _, _, framework, _ in rows} == {"pytorch", "tensorflow"}
    totals = Counter()
    for variant, period, _, share in rows:
        totals[variant, period] += share
    assert all(total == pytest.approx(1.0) for total in totals.values())
