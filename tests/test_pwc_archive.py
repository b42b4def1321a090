"""Reading and fetching the frozen PwC archive."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.http import SourceUnavailable
from pipeline.sources.pwc import archive, reader
from pipeline.sources.pwc.archive import (
    ArchiveError,
    ReadStats,
    fetch_archive,
    fetch_archive_file,
    normalize_arxiv_id,
    normalize_framework,
    normalize_repo_url,
    parse_date,
    parse_is_official,
)
from pipeline.sources.pwc.reader import read_links, read_papers
from tests.fakes import pwc_data as data
from tests.fakes import pwc_server as fake

SMALL = data.ArchiveSpec(n_links=3_000, n_papers=5_000, seed=21, batch_size=1_000)


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://github.com/Owner/Repo", "https://github.com/owner/repo"),
        ("http://github.com/owner/repo", "https://github.com/owner/repo"),
        ("https://www.github.com/owner/repo/", "https://github.com/owner/repo"),
        ("https://github.com/owner/repo.git", "https://github.com/owner/repo"),
        ("https://github.com/owner/repo.git/", "https://github.com/owner/repo"),
        ("https://github.com/o/r/tree/master/projects/DensePose/", "https://github.com/o/r"),
        ("https://github.com/o/r/blob/main/attention/psa.py", "https://github.com/o/r"),
        ("https://github.com/o/r/issues/3?x=1#top", "https://github.com/o/r"),
        ("https://GitLab.com/Group/Sub/Repo/-/tree/main/src", "https://gitlab.com/group/sub/repo"),
        ("git@github.com:Owner/Repo.git", "https://github.com/owner/repo"),
        ("github.com/owner/repo", "https://github.com/owner/repo"),
        ("  https://github.com/rinikerlab/dash-tree  ", "https://github.com/rinikerlab/dash-tree"),
        ("", None),
        ("   ", None),
        (None, None),
        (float("nan"), None),
        ("https://github.com/", None),
    ],
)
def test_normalize_repo_url(raw: object, expected: str | None) -> None:
    assert normalize_repo_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1805.07499", "1805.07499"),
        ("1706.03762v7", "1706.03762"),
        ("1706.03762V2", "1706.03762"),
        ("arXiv:2101.00001v1", "2101.00001"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        (" 2012.03084 ", "2012.03084"),
        ("", None),
        ("None", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_normalize_arxiv_id(raw: object, expected: str | None) -> None:
    assert normalize_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        (" TRUE ", True),
        ("False", False),
        ("1", True),
        (0, False),
        (None, None),
        ("", None),
    ],
)
def test_parse_is_official(raw: object, expected: bool | None) -> None:
    assert parse_is_official(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2, 1.5, "официально"])
def test_parse_is_official_rejects_garbage(raw: object) -> None:
    with pytest.raises(ValueError, match="is_official"):
        parse_is_official(raw)


def test_normalize_framework_keeps_unknown_codes_visible() -> None:
    assert normalize_framework(" PyTorch ") == "pytorch"
    assert normalize_framework("none") == "none"  # PwC's "other languages and frameworks"
    assert normalize_framework("tensorflow") == "tensorflow"
    assert "tensorflow" not in archive.KNOWN_FRAMEWORKS
    assert "tf" in archive.KNOWN_FRAMEWORKS
    assert normalize_framework("") is None
    assert normalize_framework(None) is None


MAY_28 = dt.date(2018, 5, 28)


@pytest.mark.parametrize(
    "raw",
    [
        "2018-05-28",
        " 2018-05-28 ",
        "2018-05-28T00:00:00",
        "2018-05-28T23:59:59Z",
        "2018-05-28T01:00:00+09:00",  # the date as written, in its own zone
        dt.date(2018, 5, 28),
        dt.datetime(2018, 5, 28, 13, 0),
        pd.Timestamp("2018-05-28 13:00"),
        pd.Timestamp("2018-05-28 13:00", tz="UTC"),
        1527465600,  # epoch seconds
        1527465600.0,
        1527465600000,  # epoch milliseconds
        1527465600000.0,
        1527509000000,  # ms, later that day
        "1527465600000",
        1527465600000000,  # microseconds
    ],
)
def test_parse_date_forms(raw: object) -> None:
    assert parse_date(raw) == MAY_28


@pytest.mark.parametrize("raw", [None, "", "  ", float("nan"), "null", "None", " N/A "])
def test_parse_date_nulls(raw: object) -> None:
    assert parse_date(raw) is None


@pytest.mark.parametrize("raw", ["28/05/2018", "2018-13-01", "soon", True, [2018]])
def test_parse_date_rejects_garbage(raw: object) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_date(raw)


def test_parse_date_before_1970() -> None:
    assert parse_date(-86_400) == dt.date(1969, 12, 31)
    assert parse_date("1958-07-01") == dt.date(1958, 7, 1)


# --- reading: the real fixture in both formats ------------------------------------------------


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return data.write_fixture_archive(tmp_path_factory.mktemp("fixture"))


@pytest.mark.parametrize("fmt", ["parquet", "json.gz"])
def test_read_fixture_links(fixture_files: dict[str, Path], fmt: str) -> None:
    stats = ReadStats()
    links = pd.DataFrame(read_links(fixture_files[f"links.{fmt}"], stats=stats))
    assert links.columns.tolist() == [
        "paper_url",
        "arxiv_id",
        "repo_url",
        "is_official",
        "framework",
    ]
    assert len(links) == stats.rows == 2_297
    raw = data.load_fixture_links()
    assert links["paper_url"].tolist() == [link["paper_url"] for link in raw]  # file order
    assert links["paper_url"].nunique() == 2_200
    assert links["framework"].value_counts().to_dict() == {
        "pytorch": 961, "none": 909, "tf": 304, "jax": 39, "mindspore": 34,
        "paddle": 32, "mxnet": 8, "caffe2": 6, "torch": 4,
    }  # fmt: skip
    assert links["is_official"].sum() == 1_421 and links["is_official"].notna().all()
    assert links["arxiv_id"].isna().sum() == 133
    assert not links["repo_url"].str.contains(r"/tree/|/blob/|[A-Z]|\.git$|/$").any()
    assert links["repo_url"].str.fullmatch(r"https://github\.com/[^/]+/[^/]+").all()
    # Links whose raw URLs differed only by case or sub-path now name one repository.
    assert links["repo_url"].nunique() < len({link["repo_url"] for link in raw})
    assert stats.problems() == []


@pytest.mark.parametrize("fmt", ["parquet", "json.gz"])
def test_read_fixture_papers(fixture_files: dict[str, Path], fmt: str) -> None:
    papers = read_papers(fixture_files[f"papers.{fmt}"])
    assert list(papers[0]) == ["paper_url", "arxiv_id", "date"]
    expected = {p["paper_url"]: p["date"] for p in data.fixture_papers(data.load_fixture_links())}
    got = {paper["paper_url"]: paper["date"].isoformat() for paper in papers}
    assert got == expected


def test_fixture_csv_strings_read_from_json(tmp_path: Path) -> None:
    """CSV-style values ("true"/"false", vN ids, blank ids) are normalised on the way in."""
    records = [
        {**link, "is_official": "true" if link["is_official"] else "false", "paper_arxiv_id": aid}
        for link, aid in zip(
            data.load_fixture_links()[:4], ["1810.10559v3", "", None, "1711.10485"], strict=True
        )
    ]
    path = tmp_path / "links.json.gz"
    with gzip.open(path, "wt") as file:
        json.dump(records, file)
    links = pd.DataFrame(read_links(path))
    assert links["is_official"].tolist() == [r["is_official"] == "true" for r in records]
    assert links["arxiv_id"].tolist()[:1] == ["1810.10559"]
    assert links["arxiv_id"].isna().tolist() == [False, True, True, False]


# --- reading: generated archives --------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("synthetic")
    data.write_synthetic_archive(directory, SMALL)
    return directory


def test_both_formats_read_the_same(synthetic_dir: Path) -> None:
    links_pq = read_links(synthetic_dir / "links-between-papers-and-code.parquet")
    links_js = read_links(synthetic_dir / "links-between-papers-and-code.json.gz")
    assert links_pq == links_js
    papers_pq = read_papers(synthetic_dir / "papers-with-abstracts.parquet")
    papers_js = read_papers(synthetic_dir / "papers-with-abstracts.json.gz")
    assert papers_pq == papers_js
    assert len(links_pq) == SMALL.n_links and len(papers_pq) == SMALL.n_papers


@pytest.mark.parametrize("fmt", ["parquet", "json.gz"])
def test_rows_keep_file_order_across_row_groups_and_threads(tmp_path: Path, fmt: str) -> None:
    """Which duplicate wins depends on file order, so the parallel scan must keep it."""
    spec = data.ArchiveSpec(n_links=20, n_papers=60_000, seed=9, batch_size=7_000)
    files = data.write_synthetic_archive(tmp_path, spec, formats=(fmt,))
    path = next(p for name, p in files.items() if name.startswith("papers"))
    got = [paper["paper_url"] for paper in read_papers(path)]
    assert got == [data.paper_url(i) for i in range(spec.n_papers)]


def test_generated_links_are_normalised(synthetic_dir: Path) -> None:
    raw = pq.read_table(synthetic_dir / "links-between-papers-and-code.parquet").to_pandas()
    links = pd.DataFrame(read_links(synthetic_dir / "links-between-papers-and-code.parquet"))
    assert raw["paper_arxiv_id"].str.contains("v", na=False).any()
    assert not links["arxiv_id"].str.contains("v", na=False).any()
    assert links["arxiv_id"].fillna("-").tolist() == [
        "-" if pd.isna(a) else a.split("v")[0] for a in raw["paper_arxiv_id"]
    ]
    messy = raw["repo_url"] != links["repo_url"]
    assert messy.mean() > 0.05
    # Every messy URL maps back to the generator's canonical form of some repository.
    assert links["repo_url"].str.fullmatch(r"https://git(hub|lab)\.com/lab\d+/project-\d+").all()
    assert (links["framework"] == raw["framework"]).all()
    assert (links["is_official"] == raw["is_official"]).all()


@pytest.mark.parametrize("encoding", ["timestamp", "epoch_ms", "epoch_s"])
def test_papers_dates_in_any_encoding(tmp_path: Path, encoding: str) -> None:
    spec = data.ArchiveSpec(n_links=10, n_papers=2_000, seed=2, date_encoding=encoding)
    reference = data.ArchiveSpec(n_links=10, n_papers=2_000, seed=2)
    paths = {}
    for name, s in (("encoded", spec), ("strings", reference)):
        paths[name] = data.write_parquet(
            tmp_path / f"{name}.parquet",
            data.synthetic_papers(s),
            data.papers_schema(s.date_encoding),
        )
    stats = ReadStats()
    encoded = read_papers(paths["encoded"], stats=stats)
    strings = read_papers(paths["strings"])
    assert encoded == strings
    assert stats.null_dates == sum(paper["date"] is None for paper in strings) > 0
    assert stats.invalid_dates == 0


def test_unknown_frameworks_are_kept_and_counted(tmp_path: Path) -> None:
    spec = data.ArchiveSpec(n_links=2_000, n_papers=2_000, seed=8, unknown_framework_fraction=0.05)
    path = data.write_parquet(tmp_path / "l.parquet", data.synthetic_links(spec), data.LINK_SCHEMA)
    stats = ReadStats()
    links = pd.DataFrame(read_links(path, stats=stats))
    assert len(links) == 2_000
    unknown = int((links["framework"] == "tensorflow").sum())
    assert unknown > 0 and stats.unknown_frameworks == Counter({"tensorflow": unknown})
    assert "'tensorflow'" in stats.summary()


def test_invalid_values_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "odd.json.gz"
    links = [
        {"paper_url": "https://paperswithcode.com/paper/a", "paper_arxiv_id": None,
         "repo_url": "", "is_official": "perhaps", "framework": None},
        {"paper_url": "https://paperswithcode.com/paper/b", "paper_arxiv_id": "1.2",
         "repo_url": "https://github.com/a/b", "is_official": True, "framework": "tf"},
    ]  # fmt: skip
    with gzip.open(path, "wt") as file:
        json.dump(links, file)
    stats = ReadStats()
    assert len(read_links(path, stats=stats)) == 2
    assert (stats.invalid_is_official, stats.missing_frameworks, stats.missing_repo_urls) == (
        1,
        1,
        1,
    )
    papers_path = tmp_path / "papers.json.gz"
    with gzip.open(papers_path, "wt") as file:
        json.dump([{"paper_url": "a", "date": "someday"}, {"paper_url": "b", "date": None}], file)
    stats = ReadStats()
    papers = read_papers(papers_path, stats=stats)
    assert [paper["date"] for paper in papers] == [None, None]
    assert (stats.invalid_dates, stats.null_dates) == (1, 1)


def test_directory_of_shards_is_read_in_order(tmp_path: Path) -> None:
    spec = data.ArchiveSpec(n_links=10, n_papers=3_000, seed=4)
    batches = list(
        data.synthetic_papers(data.ArchiveSpec(**{**spec.__dict__, "batch_size": 1_000}))
    )
    shards = tmp_path / "data"
    shards.mkdir()
    for i, batch in enumerate(batches):
        data.write_parquet(shards / f"train-{i:05d}-of-00003.parquet", [batch], batch.schema)
    papers = read_papers(shards)
    whole = data.write_parquet(tmp_path / "all.parquet", batches, batches[0].schema)
    assert papers == read_papers(whole) and len(papers) == 3_000


# --- projection: abstracts are never read -----------------------------------------------------


def _bytes_read() -> int:
    """Bytes this process has read through read(2)/pread(2) so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_parquet_reader_reads_only_the_needed_columns(synthetic_dir: Path) -> None:
    path = synthetic_dir / "papers-with-abstracts.parquet"
    metadata = pq.ParquetFile(path).metadata
    abstract_bytes = sum(
        metadata.row_group(g).column(c).total_compressed_size
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
        if metadata.row_group(g).column(c).path_in_schema in ("abstract", "short_abstract")
    )
    before = _bytes_read()
    papers = read_papers(path)
    read = _bytes_read() - before
    assert len(papers) == SMALL.n_papers
    assert abstract_bytes > 1_000_000
    # Everything read is a fraction of the abstracts alone.
    assert 0 < read < abstract_bytes / 4


def _peak_rss_reading_papers(path: Path, papers: int) -> int:
    """Peak RSS (bytes) of a fresh process that reads the papers file ``path``."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork/exec.
    code = (
        "import re, sys\n"
        "from pipeline.sources.pwc.reader import read_papers\n"
        "assert len(read_papers(sys.argv[1])) == int(sys.argv[2])\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', status)[1])\n"
    )
    command = [sys.executable, "-c", code, str(path), str(papers)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=os.getcwd())
    return int(result.stdout) * 1024


def test_json_reader_memory_does_not_grow_with_the_abstracts(tmp_path: Path) -> None:
    """Four times the papers, with 20,000-character abstracts (40 MB against 160 MB of JSON),
    cost the reader next to no memory more: only paper_url, arxiv_id and date are kept."""
    abstract = 20_000
    peaks = {}
    for papers in (2_000, 8_000):
        spec = data.ArchiveSpec(n_links=10, n_papers=papers, seed=6, abstract_chars=abstract)
        path = data.write_json_gz(tmp_path / f"{papers}.json.gz", data.synthetic_papers(spec))
        peaks[papers] = _peak_rss_reading_papers(path, papers)
    assert peaks[8_000] - peaks[2_000] < 6_000 * abstract / 4


# --- bad archives -----------------------------------------------------------------------------


def _bad_file(tmp_path: Path, kind: str, synthetic_dir: Path) -> Path:
    links_gz = (synthetic_dir / "links-between-papers-and-code.json.gz").read_bytes()
    links_pq = (synthetic_dir / "links-between-papers-and-code.parquet").read_bytes()
    path = tmp_path / {"truncated-parquet": "x.parquet", "wrong-columns": "x.parquet"}.get(
        kind, "x.json.gz"
    )
    if kind == "truncated-gzip":
        path.write_bytes(links_gz[: len(links_gz) // 2])
    elif kind == "truncated-json":
        path.write_bytes(gzip.compress(gzip.decompress(links_gz)[:50_000]))
    elif kind == "not-an-array":
        path.write_bytes(gzip.compress(b'{"paper_url": "x"}'))
    elif kind == "not-json":
        path.write_bytes(gzip.compress(b"paper_url,repo_url\nx,y\n"))
    elif kind == "wrong-json-fields":
        path.write_bytes(gzip.compress(json.dumps([{"paper_url": "x", "date": None}]).encode()))
    elif kind == "truncated-parquet":
        path.write_bytes(links_pq[: len(links_pq) // 2])
    elif kind == "wrong-columns":
        pq.write_table(pa.table({"paper_url": ["x"], "date": ["2020-01-01"]}), path)
    elif kind == "html":
        path.write_bytes(fake.HTML_PAGE)
    elif kind == "garbage":
        path.write_bytes(b"paper_url,repo_url\n" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "missing":
        pass
    return path


BAD_KINDS = {
    "truncated-gzip": "damaged gzip",
    "truncated-json": "damaged JSON",
    "not-an-array": "not a JSON array (starts with '{",
    "not-json": "not a JSON array",
    "wrong-json-fields": "lack field(s) paper_arxiv_id, repo_url, is_official, framework",
    "truncated-parquet": "damaged Parquet",
    "wrong-columns": "lacks column(s) paper_arxiv_id, repo_url, is_official, framework",
    "html": "HTML page",
    "garbage": "neither Parquet nor gzip",
    "empty": "empty",
    "missing": "not found",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_archives_raise_one_line_archive_errors(
    tmp_path: Path, synthetic_dir: Path, kind: str
) -> None:
    path = _bad_file(tmp_path, kind, synthetic_dir)
    with pytest.raises(ArchiveError) as caught:
        read_links(path)
    message = str(caught.value)
    assert BAD_KINDS[kind] in message
    assert message.startswith(str(path)) and "\n" not in message


def test_empty_directory_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no .parquet or .json.gz"):
        list(read_papers(tmp_path))


# --- fetching ---------------------------------------------------------------------------------

PARQUET_BYTES = b"PAR1" + bytes(range(256)) * 400 + b"PAR1"
GZIP_BYTES = gzip.compress(json.dumps([{"a": i} for i in range(3000)]).encode())


def test_local_paths_are_used_directly(tmp_path: Path) -> None:
    local = tmp_path / "links.parquet"
    local.write_bytes(PARQUET_BYTES)
    http = fake.FastHttp().client()
    result = fetch_archive(str(local), tmp_path / "cache", http)
    assert result.path == local and not result.downloaded
    assert fetch_archive_file(f"file://{local}", tmp_path / "cache", http) == local
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ArchiveError, match="not found"):
        fetch_archive_file(str(tmp_path / "nope.parquet"), tmp_path / "cache", http)


def test_download_then_conditional_get_skips(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with fake.ArchiveFileServer({"data/train.parquet": PARQUET_BYTES}) as server:
        http = fake.FastHttp().client()
        url = server.url("data/train.parquet")
        first = fetch_archive(url, cache, http)
        assert first.downloaded and first.path.read_bytes() == PARQUET_BYTES
        assert first.path.parent == cache and first.path.name.endswith("train.parquet")
        sidecar = json.loads(first.path.with_name(first.path.name + ".meta.json").read_text())
        assert sidecar["size"] == len(PARQUET_BYTES) and sidecar["etag"].startswith('"')
        assert sidecar["last_modified"] and sidecar["url"] == url
        mtime = first.path.stat().st_mtime_ns

        second = fetch_archive(url, cache, http)
        assert not second.downloaded and second.status == 304 and second.path == first.path
        assert first.path.stat().st_mtime_ns == mtime
        assert server.full_downloads("data/train.parquet") == 1
        conditional = server.requests_to("/data/train.parquet")[-1].headers
        assert conditional["If-None-Match"] == sidecar["etag"]
        assert conditional["If-Modified-Since"] == sidecar["last_modified"]

        server.put("data/train.parquet", GZIP_BYTES)  # a new version on the server
        third = fetch_archive(url, cache, http)
        assert third.downloaded and third.path.read_bytes() == GZIP_BYTES
        assert server.full_downloads("data/train.parquet") == 2
    assert sorted(p.name.split("-", 1)[1] for p in cache.iterdir()) == [
        "train.parquet",
        "train.parquet.meta.json",
    ]


def test_matching_validators_skip_when_server_ignores_conditionals(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.parquet": PARQUET_BYTES}, conditional=False) as server:
        http = fake.FastHttp().client()
        first = fetch_archive(server.url("f.parquet"), tmp_path, http)
        mtime = first.path.stat().st_mtime_ns
        second = fetch_archive(server.url("f.parquet"), tmp_path, http)
        assert first.downloaded and not second.downloaded and second.status == 200
        assert first.path.stat().st_mtime_ns == mtime


def test_a_changed_file_of_the_same_size_is_downloaded(tmp_path: Path) -> None:
    """A server that ignores conditional GETs answers 200 with the whole file; it is the cached
    one only when its ETag matches too, not merely its size."""
    payload = json.dumps([{"a": i} for i in range(3000)]).encode()
    old, new = gzip.compress(payload, mtime=1), gzip.compress(payload, mtime=2)
    assert len(old) == len(new) and old != new
    with fake.ArchiveFileServer({"f.json.gz": old}, conditional=False) as server:
        http = fake.FastHttp().client()
        fetch_archive(server.url("f.json.gz"), tmp_path, http)
        server.put("f.json.gz", new)
        again = fetch_archive(server.url("f.json.gz"), tmp_path, http)
        assert again.downloaded and again.path.read_bytes() == new


def test_without_validators_every_fetch_downloads(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.parquet": PARQUET_BYTES}, validators=False) as server:
        http = fake.FastHttp().client()
        assert fetch_archive(server.url("f.parquet"), tmp_path, http).downloaded
        assert fetch_archive(server.url("f.parquet"), tmp_path, http).downloaded


def test_damaged_cached_copy_is_fetched_again(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.parquet": PARQUET_BYTES}) as server:
        http = fake.FastHttp().client()
        path = fetch_archive_file(server.url("f.parquet"), tmp_path, http)
        path.write_bytes(PARQUET_BYTES[:100])
        again = fetch_archive(server.url("f.parquet"), tmp_path, http)
        assert again.downloaded and again.path.read_bytes() == PARQUET_BYTES


def test_html_page_instead_of_file(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.parquet": PARQUET_BYTES}) as server:
        http = fake.FastHttp().client()
        server.fail_next(fake.html_page())
        with pytest.raises(ArchiveError, match="HTML page instead of the archive") as caught:
            fetch_archive(server.url("f.parquet"), tmp_path, http)
        assert "\n" not in str(caught.value)
        assert list(tmp_path.iterdir()) == []  # nothing half-written stays behind
        # An HTML body with a binary content type is caught by sniffing.
        server.fail_next(fake.Fault(content_type="application/octet-stream"))
        with pytest.raises(ArchiveError, match="HTML page"):
            fetch_archive(server.url("f.parquet"), tmp_path, http)
        good = fetch_archive(server.url("f.parquet"), tmp_path, http)
        server.fail_next(fake.html_page())  # CDN error page on the revalidation: copy survives
        with pytest.raises(ArchiveError):
            fetch_archive(server.url("f.parquet"), tmp_path, http)
        assert good.path.read_bytes() == PARQUET_BYTES


def test_body_that_is_neither_parquet_nor_gzip(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.parquet": b"id,name\n1,x\n" * 50}) as server:
        with pytest.raises(ArchiveError, match="neither Parquet nor gzip"):
            fetch_archive(server.url("f.parquet"), tmp_path, fake.FastHttp().client())
        assert list(tmp_path.iterdir()) == []


def test_missing_remote_file(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({}) as server, pytest.raises(ArchiveError, match="HTTP 404"):
        fetch_archive(server.url("gone.parquet"), tmp_path, fake.FastHttp().client())


def test_truncated_download_and_503_are_retried(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.json.gz": GZIP_BYTES}) as server:
        client = fake.FastHttp()
        server.fail_next(fake.truncated(), fake.status(503))
        result = fetch_archive(server.url("f.json.gz"), tmp_path, client.client())
        assert result.downloaded and result.path.read_bytes() == GZIP_BYTES
        # The retry after the cut body resumes it in the same run instead of starting over.
        assert [r.status for r in server.requests] == [200, 503, 206]
        resumed = server.requests[-1]
        offset = int(resumed.headers["Range"].removeprefix("bytes=").removesuffix("-"))
        assert 0 < offset < len(GZIP_BYTES)  # where the cut body stopped
        assert len(client.sleeps) == 2


def test_persistent_failures_end_as_source_unavailable(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.json.gz": GZIP_BYTES}) as server:
        server.fail_next(fake.status(429, retry_after=30), fake.truncated(), fake.status(503))
        client = fake.FastHttp(max_attempts=3)
        with pytest.raises(SourceUnavailable, match="gave up after 3 attempts"):
            fetch_archive(server.url("f.json.gz"), tmp_path, client.client())
        assert client.sleeps[0] == 30  # Retry-After honoured
        assert not (tmp_path / archive._cache_name(server.url("f.json.gz"))).exists()


def test_interrupted_download_resumes_with_range(tmp_path: Path) -> None:
    with fake.ArchiveFileServer({"f.json.gz": GZIP_BYTES}) as server:
        url = server.url("f.json.gz")
        server.fail_next(fake.truncated())
        with pytest.raises(SourceUnavailable):
            fetch_archive(url, tmp_path, fake.FastHttp(max_attempts=1).client())
        part = tmp_path / (archive._cache_name(url) + ".part")
        assert 0 < part.stat().st_size < len(GZIP_BYTES)
        result = fetch_archive(url, tmp_path, fake.FastHttp().client())
        assert result.downloaded and result.path.read_bytes() == GZIP_BYTES
        resumed = server.requests[-1]
        assert resumed.status == 206 and resumed.headers["Range"] == f"bytes={part_size(server)}-"
        assert resumed.body_bytes < len(GZIP_BYTES)
        assert not part.exists()


def test_a_whole_part_file_left_by_a_kill_is_finished_without_a_request(tmp_path: Path) -> None:
    """Killed between the last byte and the rename: the .part holds the whole file (its size
    is the one the server announced), so it is checked and kept, not downloaded again."""
    with fake.ArchiveFileServer({"f.json.gz": GZIP_BYTES}) as server:
        url = server.url("f.json.gz")
        target = fetch_archive(url, tmp_path, fake.FastHttp().client()).path
        part = target.with_name(target.name + ".part")
        sidecar = target.with_name(target.name + ".meta.json")
        meta = json.loads(sidecar.read_text())
        part.with_name(part.name + ".json").write_text(
            json.dumps({k: meta[k] for k in ("etag", "last_modified", "size")})
        )
        target.replace(part)
        sidecar.unlink()
        sent = len(server.requests)
        result = fetch_archive(url, tmp_path, fake.FastHttp().client())
        assert result.path.read_bytes() == GZIP_BYTES and not part.exists()
        assert len(server.requests) == sent
        assert fetch_archive(url, tmp_path, fake.FastHttp().client()).downloaded is False


def part_size(server: fake.ArchiveFileServer) -> int:
    return server.requests[0].body_bytes


@pytest.mark.parametrize(
    ("if_range", "statuses"),
    [
        (True, [200]),  # If-Range did not match: the whole file at once
        (False, [206, 200]),  # a server ignoring If-Range: its 206 is refused, then whole
    ],
)
def test_resume_restarts_when_the_file_changed(
    tmp_path: Path, if_range: bool, statuses: list[int]
) -> None:
    """A resumed download never splices two versions of the file."""
    with fake.ArchiveFileServer({"f.json.gz": GZIP_BYTES}, if_range=if_range) as server:
        url = server.url("f.json.gz")
        server.fail_next(fake.truncated())
        with pytest.raises(SourceUnavailable):
            fetch_archive(url, tmp_path, fake.FastHttp(max_attempts=1).client())
        cut = len(server.requests)
        new = gzip.compress(b"[" + b",".join(b"%d" % i for i in range(5000)) + b"]")
        server.put("f.json.gz", new)
        result = fetch_archive(url, tmp_path, fake.FastHttp().client())
        assert result.path.read_bytes() == new
        assert [r.status for r in server.requests[cut:]] == statuses


@pytest.mark.parametrize("column_type", [pa.float64(), pa.int64(), pa.string()])
def test_typed_dates_agree_with_parse_date(tmp_path: Path, column_type: pa.DataType) -> None:
    numbers = [1527465600000, 1527509000000, None, -86400, 1527465600, 1527465600000000]
    values = numbers
    if column_type == pa.string():
        values = [None if v is None else str(v) for v in numbers]
    path = tmp_path / "dates.parquet"
    urls = [f"u{i}" for i in range(len(values))]
    pq.write_table(pa.table({"paper_url": urls, "date": pa.array(values, column_type)}), path)
    got = [paper["date"] for paper in read_papers(path)]
    assert got == [parse_date(v) for v in numbers]
    assert got[:2] == [MAY_28, MAY_28] and got[3] == dt.date(1969, 12, 31)


def test_parquet_with_csv_style_strings(tmp_path: Path) -> None:
    table = pa.table(
        {
            "paper_url": ["p1", "p2", "p3"],
            "paper_arxiv_id": ["2101.00001v2", "", None],
            "repo_url": ["https://github.com/A/B/", "https://github.com/a/b.git", None],
            "is_official": ["true", "false", "maybe"],
            "framework": ["tf", "PyTorch", "tensorflow"],
        }
    )
    path = tmp_path / "links.parquet"
    pq.write_table(table, path)
    stats = ReadStats()
    links = pd.DataFrame(read_links(path, stats=stats))
    assert links["repo_url"].tolist()[:2] == ["https://github.com/a/b"] * 2
    assert links["is_official"].tolist()[:2] == [True, False] and pd.isna(links["is_official"][2])
    assert links["framework"].tolist() == ["tf", "pytorch", "tensorflow"]
    assert stats.invalid_is_official == 1 and stats.missing_repo_urls == 1
    assert stats.unknown_frameworks == Counter({"tensorflow": 1})


# --- SQL normalisation agrees with the scalar functions -----------------------------------

TRICKY_URLS = [
    "https://github.com/Owner/Repo", "HTTP://GitHub.com/A/B", "https://github.com",
    "https://github.com/", "https://github.com/a", "https://github.com//a/b",
    "https://user@github.com/a/b", "https://github.com:443/a/b", "https://github.com/a%20b/c",
    "https://GitLab.com/g/s/r/-/tree/x", "https://github.com/a/b/tree",
    "https://github.com/a/treehouse", "https://github.com/a/b.git.git", "https://github.com/a/b//",
    "https://github.com/a/b/.git", "https://github.com/a/b/blob", "ftp://github.com/a/b",
    "github.com/a/b", "git@github.com:a/b.git", "https://github.com/a/.git/.git",
    "https://github.com/a/b.git/.git//",
    "none", "N/A", " null ", "https://www.www.github.com/a/b", "https://github.com/a/b?x=/tree/y",
    "https://github.com/a/b#frag", "https://github.com?x", "https://bitbucket.org/a/b/src/master/",
    "https://github.com/ä/b", "\thttps://github.com/a/b\n", "https://sourceforge.net/projects/x/",
    "https://github.com/a b/c", "https://[::1]/a/b", "https://github.com/a/b/tree/master/x/blob/y",
    "https://gitee.com/a/b.git/", "https:///a/b", "https://github.com/a/b/issues/3?x=1#top",
    "https://[::1/x", "http://[bad]/a/b",
]  # fmt: skip


def _fuzz_urls(n: int, seed: int = 5) -> list[str]:
    """Mostly plain http(s) URLs (the vectorised path) with sub-paths, suffixes and case."""
    schemes = ["https://", "http://", "HTTPS://", "https://www.", "ftp://", ""]
    hosts = ["github.com", "GitHub.com", "gitlab.com", "x.org", "", "www.github.com"]
    pieces = ["/", "//", "owner", "Repo", ".git", "/tree", "/blob", "/-/", "tree", "blob", "-",
              ".", "?q=/tree/1", "#f", "/x", "/Y.GIT", "%41", ":22", "@", " ", "ü"]  # fmt: skip
    weights = np.array([4.0] * 16 + [0.3] * 5)
    rng = np.random.default_rng(seed)
    return [
        rng.choice(schemes, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1])
        + rng.choice(hosts)
        + "".join(rng.choice(pieces, size=rng.integers(0, 8), p=weights / weights.sum()))
        for _ in range(n)
    ]


def _links_with(tmp_path: Path, column: str, values: list) -> list[dict]:
    """read_links of a Parquet links file whose ``column`` holds ``values`` (strings or
    None); the other columns hold ordinary values."""
    n = len(values)
    columns = {
        "paper_url": [f"https://paperswithcode.com/paper/p{i}" for i in range(n)],
        "paper_arxiv_id": ["1805.07499"] * n,
        "repo_url": ["https://github.com/a/b"] * n,
        "is_official": ["true"] * n,
        "framework": ["pytorch"] * n,
        column: values,
    }
    path = tmp_path / f"{column}.parquet"
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), path)
    return read_links(path)


def test_sql_repo_urls_match_the_scalar_function(tmp_path: Path) -> None:
    values = [*TRICKY_URLS, *_fuzz_urls(5_000), None, ""]
    got = [link["repo_url"] for link in _links_with(tmp_path, "repo_url", values)]
    assert got == [normalize_repo_url(v) for v in values]


def test_json_values_of_other_types_are_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json.gz"
    records = [
        {"paper_url": "p", "paper_arxiv_id": 1805.07499, "repo_url": repo, "is_official": official,
         "framework": framework}
        for repo, official, framework in (
            ("https://github.com/A/B", True, "PyTorch"), (3, 1, None), ("3/x", 0, True),
            (None, 1.5, 7),
        )
    ]  # fmt: skip
    with gzip.open(path, "wt") as file:
        json.dump(records, file)
    stats = ReadStats()
    links = read_links(path, stats)
    assert [link["repo_url"] for link in links] == [
        "https://github.com/a/b",
        None,
        "https://3/x",
        None,
    ]
    assert [link["is_official"] for link in links] == [True, True, False, None]
    assert [link["framework"] for link in links] == ["pytorch", None, "true", "7"]
    assert [link["arxiv_id"] for link in links] == ["1805.07499"] * 4
    assert stats.invalid_is_official == 1


def test_sql_ids_frameworks_and_paper_urls_match_the_scalar_functions(tmp_path: Path) -> None:
    ids = ["1805.07499", "1706.03762v7", "arXiv:1706.03762V2", " ARXIV: 2101.1 ", "v3", "",
           "none", "N/A", None, "hep-th/9901001v1", "2101.00001v", "arxiv:",
           "\u3000arXiv:1.2v1"]  # fmt: skip
    got = [link["arxiv_id"] for link in _links_with(tmp_path, "paper_arxiv_id", ids)]
    assert got == [normalize_arxiv_id(v) for v in ids]
    codes = ["PyTorch", " tf ", "none", "None", "", "null", "NaN", "n/a", None, "tensorflow",
             "\tJAX\u00a0"]  # fmt: skip
    got = [link["framework"] for link in _links_with(tmp_path, "framework", codes)]
    assert got == [normalize_framework(v) for v in codes]
    urls = [" https://paperswithcode.com/paper/x ", "", "  ", None, "\u2003x\n"]
    got = [link["paper_url"] for link in _links_with(tmp_path, "paper_url", urls)]
    assert got == ["https://paperswithcode.com/paper/x", None, None, None, "x"]
    flags = ["true", " FALSE ", "t", "No", "1", "0", "", "none", None, "maybe", "\u00a0yes"]
    got = [link["is_official"] for link in _links_with(tmp_path, "is_official", flags)]
    expected = []
    for flag in flags:
        try:
            expected.append(parse_is_official(flag))
        except ValueError:
            expected.append(None)
    assert got == expected


def test_sql_string_dates_match_parse_date(tmp_path: Path) -> None:
    values = ["2018-05-28", " 2018-05-28 ", "2020-02-29", "2021-02-29", "2020-13-01", "0000-01-01",
              "2018-05-28T23:59:00", "2018-05-28T23:00:00+05:00", "1527465600000", "20180528",
              "someday", "", "null", None, "1969-12-31", "-86400", "1e400", "99999999999999999999",
              "\u3000 2018-05-28"]  # fmt: skip
    path = tmp_path / "dates.parquet"
    urls = [f"u{i}" for i in range(len(values))]
    pq.write_table(pa.table({"paper_url": urls, "date": pa.array(values, pa.string())}), path)
    stats = ReadStats()
    got = [paper["date"] for paper in read_papers(path, stats)]
    expected = []
    rejected = 0
    for value in values:
        try:
            expected.append(parse_date(value))
        except ValueError:
            expected.append(None)
            rejected += 1
    assert got == expected
    assert stats.invalid_dates == rejected == 4
    assert stats.null_dates == sum(day is None for day in expected) - rejected


# --- reading: what the audit of the DuckDB reader found ----------------------------------------


def test_a_signal_during_a_duckdb_query_is_a_keyboard_interrupt() -> None:
    """DuckDB answers Ctrl-C with RuntimeError("Query interrupted") when the running query
    ends; the run must see an interrupt (recorded as such), not a failed source."""
    # Python's own Ctrl-C handler, whatever an earlier test left installed; the query takes
    # about 1.5 s here, so the signal (at 0.3 s) lands while DuckDB runs it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.closing(reader.connect()) as db:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt), reader.interruptible():
                db.execute("SELECT count(*) FROM range(500000000) t(i) WHERE i % 7 = 3")
        finally:
            timer.cancel()
            signal.signal(signal.SIGINT, previous)


def test_typed_dates_outside_python_dates_are_invalid(tmp_path: Path) -> None:
    days = pa.array([18262, 2_932_897, 2**31 - 1, -(2**31) + 1, None], pa.int32())
    for name, column in (
        ("date32", days.cast(pa.date32())),
        ("timestamp", pa.array([1577836800, 253402300800, 2**62 // 10**6, None, None],
                               pa.int64()).cast(pa.timestamp("s"))),
    ):  # fmt: skip
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"paper_url": [f"u{i}" for i in range(5)], "date": column}), path)
        stats = ReadStats()
        got = [paper["date"] for paper in read_papers(path, stats)]
        assert got == [dt.date(2020, 1, 1), None, None, None, None], name
        assert stats.invalid_dates == 3 - (name == "timestamp"), name


@pytest.mark.parametrize(
    ("name", "decoy"),
    [("g[1].parquet", "g1.parquet"), ("a*.parquet", "ab.parquet"), ("q?.parquet", "qx.parquet")],
)
def test_file_names_are_not_glob_patterns(tmp_path: Path, name: str, decoy: str) -> None:
    links = data.load_fixture_links()
    wanted = data.write_archive_file(
        tmp_path / name, [data.records_batch(links[:5], data.LINK_SCHEMA)], data.LINK_SCHEMA
    )
    data.write_archive_file(
        tmp_path / decoy, [data.records_batch(links[5:7], data.LINK_SCHEMA)], data.LINK_SCHEMA
    )
    got = [link["paper_url"] for link in read_links(wanted)]
    assert got == [link["paper_url"] for link in links[:5]]


def test_columns_named_seq_or_file_row_number_are_ignored(tmp_path: Path) -> None:
    links = data.load_fixture_links()[:6]
    table = pa.Table.from_batches([data.records_batch(links, data.LINK_SCHEMA)])
    table = table.append_column("seq", pa.array([str(9 - i) for i in range(6)]))
    table = table.append_column("file_row_number", pa.array([5, 4, 3, 2, 1, 0], pa.int64()))
    path = tmp_path / "links.parquet"
    pq.write_table(table, path, row_group_size=2)
    got = [(link["paper_url"], link["framework"]) for link in read_links(path)]
    assert got == [(link["paper_url"], link["framework"]) for link in links]


def test_nested_values_in_a_needed_column_are_refused(tmp_path: Path) -> None:
    table = pa.table(
        {
            "paper_url": ["p"],
            "paper_arxiv_id": ["1.2"],
            "repo_url": ["https://github.com/a/b"],
            "is_official": [True],
            "framework": pa.array([{"code": "pytorch"}]),
        }
    )
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path)
    with pytest.raises(ArchiveError, match="column framework holds STRUCT"):
        read_links(path)


def test_zoned_timestamps_give_the_utc_day_whatever_the_host_zone(tmp_path: Path) -> None:
    instants = [dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2020, 6, 30, 23, tzinfo=dt.UTC)]
    path = tmp_path / "zoned.parquet"
    column = pa.array(instants, pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"paper_url": ["a", "b"], "date": column}), path)
    code = (
        "import sys\n"
        "from pipeline.sources.pwc.reader import read_papers\n"
        "print([p['date'].isoformat() for p in read_papers(sys.argv[1])])\n"
    )
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        env = {**os.environ, "TZ": zone}
        result = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env
        )
        assert result.stdout.strip() == "['2020-01-01', '2020-06-30']", (zone, result.stderr)


def test_json_fields_are_found_beyond_the_first_record(tmp_path: Path) -> None:
    link = {**data.load_fixture_links()[0], "framework": "jax"}
    first = {k: v for k, v in link.items() if k != "paper_arxiv_id"}
    links_path = tmp_path / "links.json.gz"
    with gzip.open(links_path, "wt") as file:
        json.dump([first, {**link, "paper_url": "https://paperswithcode.com/paper/b"}], file)
    assert [row["arxiv_id"] for row in read_links(links_path)] == [None, link["paper_arxiv_id"]]
    papers_path = tmp_path / "papers.json.gz"
    with gzip.open(papers_path, "wt") as file:
        papers = [
            {"paper_url": "a", "date": "2020-01-02"},
            {"paper_url": "b", "date": "2021-03-04", "arxiv_id": "2103.00001v2"},
        ]
        json.dump(papers, file)
    assert [row["arxiv_id"] for row in read_papers(papers_path)] == [None, "2103.00001"]


def test_json_numbers_in_exponent_form_are_epoch_dates(tmp_path: Path) -> None:
    path = tmp_path / "papers.json.gz"
    values = [1.527465600e18, 1527465600000, 1.5274656e9, 5e-324, None]
    with gzip.open(path, "wt") as file:
        json.dump([{"paper_url": f"u{i}", "date": v} for i, v in enumerate(values)], file)
    got = [paper["date"] for paper in read_papers(path)]
    assert got == [MAY_28, MAY_28, MAY_28, dt.date(1970, 1, 1), None]
    assert got == [parse_date(v) for v in values]


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "links.parquet"
    os.mkfifo(fifo)
    with pytest.raises(ArchiveError, match="not a regular file"):
        read_links(fifo)


def test_a_json_record_over_16_mib_is_named(tmp_path: Path) -> None:
    path = tmp_path / "links.json.gz"
    link = {**data.load_fixture_links()[0], "repo_url": "https://github.com/a/" + "b" * (40 << 20)}
    with gzip.open(path, "wt", compresslevel=1) as file:
        json.dump([link], file)
    with pytest.raises(ArchiveError, match="a JSON record is over 16 MiB"):
        read_links(path)
