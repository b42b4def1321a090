"""The PwC test data and fake servers behave like the things they stand in for."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from tests.fakes import pwc_data as data
from tests.fakes import pwc_server as fake

SMALL = data.ArchiveSpec(n_links=4_000, n_papers=6_000, seed=3, batch_size=1_500)


# --- the real fixture -------------------------------------------------------------------------


def test_fixture_repair_gives_the_documented_rows() -> None:
    links = data.load_fixture_links()
    assert len(links) == 2_297
    # SOURCE.md says 2,201 distinct papers; the repaired file has 2,200 distinct paper_url
    # values (2,201 counts the repeated header line as a paper).
    assert len({link["paper_url"] for link in links}) == 2_200
    assert Counter(link["framework"] for link in links) == {
        "pytorch": 961, "none": 909, "tf": 304, "jax": 39, "mindspore": 34,
        "paddle": 32, "mxnet": 8, "caffe2": 6, "torch": 4,
    }  # fmt: skip
    assert Counter(link["is_official"] for link in links) == {True: 1421, False: 876}
    assert list(links[0]) == data.LINK_SCHEMA.names
    assert not any(link["paper_url"] == "paper_url" for link in links)


def test_fixture_row_glued_to_header_is_split() -> None:
    links = {link["paper_url"]: link for link in data.load_fixture_links()}
    glued = links["https://paperswithcode.com/paper/structured-dropconnect-for-uncertainty"]
    assert glued["repo_url"] == "https://github.com/PRIS-CV/Structured-DropConnect"
    after = links["https://paperswithcode.com/paper/yolov3-an-incremental-improvement"]
    assert after["framework"] == "pytorch"


def test_fixture_papers_date_every_paper_from_its_arxiv_month() -> None:
    links = data.load_fixture_links()
    papers = data.fixture_papers(links)
    assert len(papers) == 2_200
    assert set(data.papers_schema().names) <= set(papers[0])
    by_url = {p["paper_url"]: p for p in papers}
    for link in links:
        paper = by_url[link["paper_url"]]
        assert paper["date"] is not None
        arxiv = link["paper_arxiv_id"]
        if arxiv and arxiv[:4].isdigit() and 1 <= int(arxiv[2:4]) <= 12:
            assert paper["date"][2:7] == f"{arxiv[:2]}-{arxiv[2:4]}"
    assert data.fixture_papers(links) == papers  # seeded


# --- the generator ----------------------------------------------------------------------------


def _table(batches) -> pa.Table:
    return pa.Table.from_batches(list(batches))


def test_generator_does_not_depend_on_batch_size() -> None:
    spec_b = data.ArchiveSpec(**{**SMALL.__dict__, "batch_size": 997})
    assert _table(data.synthetic_links(SMALL)).equals(_table(data.synthetic_links(spec_b)))
    assert _table(data.synthetic_papers(SMALL)).equals(_table(data.synthetic_papers(spec_b)))
    other_seed = data.ArchiveSpec(**{**SMALL.__dict__, "seed": 4})
    assert not _table(data.synthetic_links(SMALL)).equals(_table(data.synthetic_links(other_seed)))


def test_generator_has_the_archive_quirks() -> None:
    links = _table(data.synthetic_links(SMALL)).to_pandas()
    papers = _table(data.synthetic_papers(SMALL)).to_pandas()
    assert len(links) == SMALL.n_links and len(papers) == SMALL.n_papers
    assert links.columns.tolist() == data.LINK_SCHEMA.names
    assert papers.columns.tolist() == data.papers_schema().names and len(papers.columns) == 18
    assert papers["paper_url"].is_unique
    orphans = ~links["paper_url"].isin(papers["paper_url"])
    assert 0.003 < orphans.mean() < 0.03
    assert 0.005 < papers["date"].isna().mean() < 0.05
    assert links["paper_arxiv_id"].str.contains(r"v\d+$", na=False).mean() > 0.02
    assert links["paper_arxiv_id"].isna().mean() > 0.05
    messy = links["repo_url"].str.contains(r"/tree/|/blob/|\.git$|/$|http://|www\.|[A-Z]")
    assert 0.05 < messy.mean() < 0.2
    assert set(links["framework"]) == set(data.FRAMEWORKS)
    lengths = papers["abstract"].str.len()
    assert 900 < lengths.mean() < 1100
    assert set(papers["date"].dropna().str[:4].astype(int)) >= set(range(2015, 2026))
    assert papers["date"].dropna().max() <= "2025-07-31"


def test_framework_mix_moves_from_tensorflow_to_pytorch() -> None:
    spec = data.ArchiveSpec(n_links=20_000, n_papers=20_000, seed=5)
    links = _table(data.synthetic_links(spec)).to_pandas()
    papers = _table(data.synthetic_papers(spec)).to_pandas()
    joined = links.merge(papers[["paper_url", "date"]], on="paper_url").dropna(subset=["date"])
    share = pd.crosstab(joined["date"].str[:4], joined["framework"], normalize="index")
    assert share.loc["2016", "tf"] > 3 * share.loc["2016", "pytorch"]
    assert share.loc["2024", "pytorch"] > 6 * share.loc["2024", "tf"]
    assert share.loc["2024", "pytorch"] == pytest.approx(0.6, abs=0.06)
    assert data.framework_mix(2024.0)["pytorch"] == pytest.approx(0.62)


def test_unknown_frameworks_only_on_request() -> None:
    spec = data.ArchiveSpec(**{**SMALL.__dict__, "unknown_framework_fraction": 0.05})
    frameworks = _table(data.synthetic_links(spec)).column("framework").to_pylist()
    assert 0.02 < frameworks.count("tensorflow") / len(frameworks) < 0.08


@pytest.mark.parametrize("encoding", ["timestamp", "epoch_ms", "epoch_s"])
def test_date_encodings_carry_the_same_dates(encoding: str) -> None:
    spec = data.ArchiveSpec(n_links=10, n_papers=500, seed=9, date_encoding=encoding)
    as_strings = _table(data.synthetic_papers(data.ArchiveSpec(n_links=10, n_papers=500, seed=9)))
    encoded = _table(data.synthetic_papers(spec))
    assert encoded.schema.field("date").type == data.DATE_TYPES[encoding]
    values = encoded.column("date").to_pandas()
    if encoding == "epoch_ms":
        values = pd.to_datetime(values, unit="ms")
    elif encoding == "epoch_s":
        values = pd.to_datetime(values, unit="s")
    got = [None if pd.isna(v) else v.strftime("%Y-%m-%d") for v in values]
    assert got == as_strings.column("date").to_pylist()


# --- writers ----------------------------------------------------------------------------------


def test_writers_produce_the_same_rows_in_both_formats(tmp_path: Path) -> None:
    written = data.write_synthetic_archive(tmp_path, SMALL)
    assert sorted(written) == sorted(
        f"{stem}.{fmt}"
        for stem in (data.LINKS_FILE_STEM, data.PAPERS_FILE_STEM)
        for fmt in ("parquet", "json.gz")
    )
    parquet = pq.ParquetFile(written["papers-with-abstracts.parquet"])
    assert parquet.metadata.num_rows == SMALL.n_papers
    assert parquet.metadata.num_row_groups >= SMALL.n_papers // SMALL.batch_size
    with gzip.open(written["papers-with-abstracts.json.gz"], "rt", encoding="utf-8") as file:
        records = json.load(file)  # one top-level array, as the original dump
    assert isinstance(records, list) and len(records) == SMALL.n_papers
    assert records[:50] == parquet.read_row_group(0).slice(0, 50).to_pylist()
    with gzip.open(written["links-between-papers-and-code.json.gz"], "rt") as file:
        links = json.load(file)
    assert links == pq.read_table(written["links-between-papers-and-code.parquet"]).to_pylist()
    assert not list(tmp_path.glob("*.partial"))


def test_fixture_records_write_and_read_back(tmp_path: Path) -> None:
    links = data.load_fixture_links()
    batch = data.records_batch(links, data.LINK_SCHEMA)
    path = data.write_archive_file(tmp_path / "links.json.gz", [batch], data.LINK_SCHEMA)
    with gzip.open(path, "rt", encoding="utf-8") as file:
        assert json.load(file) == links


# --- archive file server ----------------------------------------------------------------------


def test_file_server_validators_conditional_get_and_head() -> None:
    body = b"PAR1" + bytes(range(256)) * 40
    with fake.ArchiveFileServer({"data/links.parquet": body}) as server:
        url = server.url("data/links.parquet")
        first = requests.get(url, timeout=5)
        assert first.status_code == 200 and first.content == body
        assert first.headers["Content-Length"] == str(len(body))
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
        assert requests.get(url, headers={"If-None-Match": etag}, timeout=5).status_code == 304
        not_modified = requests.get(url, headers={"If-Modified-Since": modified}, timeout=5)
        assert not_modified.status_code == 304
        head = requests.head(url, timeout=5)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(body))
        assert server.full_downloads("data/links.parquet") == 1
        assert [r.method for r in server.requests] == ["GET", "GET", "GET", "HEAD"]
        server.put("data/links.parquet", body + b"more")
        changed = requests.get(url, headers={"If-None-Match": etag}, timeout=5)
        assert changed.status_code == 200 and changed.headers["ETag"] != etag
        assert requests.get(server.url("missing"), timeout=5).status_code == 404


def test_file_server_ranges(tmp_path: Path) -> None:
    file = tmp_path / "big.bin"
    file.write_bytes(bytes(range(256)) * 100)
    with fake.ArchiveFileServer({"big.bin": file}) as server:
        url = server.url("big.bin")
        etag = requests.head(url, timeout=5).headers["ETag"]
        part = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=5)
        assert part.status_code == 206 and part.content == file.read_bytes()[1000:]
        assert part.headers["Content-Range"] == "bytes 1000-25599/25600"
        window = requests.get(url, headers={"Range": "bytes=10-19", "If-Range": etag}, timeout=5)
        assert window.status_code == 206 and window.content == file.read_bytes()[10:20]
        stale = requests.get(url, headers={"Range": "bytes=10-", "If-Range": '"old"'}, timeout=5)
        assert stale.status_code == 200 and len(stale.content) == 25_600
        beyond = requests.get(url, headers={"Range": "bytes=99999-"}, timeout=5)
        assert beyond.status_code == 416


def test_file_server_faults() -> None:
    body = b"\x1f\x8b" + b"x" * 10_000
    with fake.ArchiveFileServer({"a.json.gz": body}) as server:
        url = server.url("a.json.gz")
        server.fail_next(fake.html_page(), fake.status(429, retry_after=7), fake.status(503))
        html = requests.get(url, timeout=5)
        assert html.status_code == 200 and html.text.startswith("<!DOCTYPE html>")
        limited = requests.get(url, timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        assert requests.get(url, timeout=5).status_code == 503
        server.fail_next(fake.truncated())
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(url, timeout=5)
        assert requests.get(url, timeout=5).content == body  # faults are used up
        assert [r.status for r in server.requests] == [200, 429, 503, 200, 200]


# --- API server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_dataset() -> tuple[list[dict], list[dict]]:
    links = data.load_fixture_links()
    return links, data.fixture_papers(links)


def test_api_server_counts_from_the_dataset(fixture_dataset) -> None:
    links, papers = fixture_dataset
    dates = {p["paper_url"]: p["date"] for p in papers}
    with fake.FakePwcApi(links, papers) as api:
        reply = requests.get(
            f"{api.base_url}/repositories/",
            params={"framework": "jax", "items_per_page": 1},
            timeout=5,
        ).json()
        jax_repos = {link["repo_url"] for link in links if link["framework"] == "jax"}
        assert reply["count"] == len(jax_repos)
        assert len(reply["results"]) == 1 and reply["results"][0]["framework"] == "jax"
        assert reply["previous"] is None and "page=2" in reply["next"]
        params = {"framework": "tf", "start_date": "2019-01-01", "end_date": "2019-12-31"}
        papers_reply = requests.get(f"{api.base_url}/papers/", params=params, timeout=5).json()
        expected = {
            link["paper_url"]
            for link in links
            if link["framework"] == "tf"
            and "2019-01-01" <= dates[link["paper_url"]] <= "2019-12-31"
        }
        assert papers_reply["count"] == len(expected) > 0
        assert papers_reply["applied_filters"] == params
        bad = requests.get(f"{api.base_url}/papers/", params={"start_date": "2019"}, timeout=5)
        assert bad.status_code == 422


def test_api_server_misbehaving_modes(fixture_dataset) -> None:
    links, papers = fixture_dataset
    params = {"framework": "tf", "start_date": "2019-01-01", "end_date": "2019-12-31"}
    with fake.FakePwcApi(links, papers, ignore_filters=True) as old:
        reply = requests.get(f"{old.base_url}/papers/", params=params, timeout=5).json()
        assert reply["count"] == len(papers) and "applied_filters" not in reply
    with fake.FakePwcApi(links, papers, same_count=True) as same:
        counts = {
            fw: requests.get(
                f"{same.base_url}/repositories/", params={"framework": fw}, timeout=5
            ).json()["count"]
            for fw in ("tf", "jax")
        }
        assert counts["tf"] == counts["jax"] == len({link["repo_url"] for link in links})
    with fake.FakePwcApi(links, papers, echo_filters={"framework"}) as partial:
        reply = requests.get(f"{partial.base_url}/papers/", params=params, timeout=5).json()
        assert reply["applied_filters"] == {"framework": "tf"}
