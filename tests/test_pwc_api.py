"""The v1-compatible PwC API client against the fake API on loopback."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pipeline.http import HttpResponse, SourceError, SourceUnavailable
from pipeline.sources.pwc.api import (
    FiltersNotApplied,
    FrameworkFilterIgnored,
    PwcApiClient,
    UnexpectedResponse,
)
from tests.fakes import pwc_data as data
from tests.fakes import pwc_server as fake

FRAMEWORKS = ("pytorch", "tf", "jax", "mxnet", "paddle", "mindspore", "caffe2", "torch", "none")
Q2_2020 = (dt.date(2020, 4, 1), dt.date(2020, 6, 30))


@pytest.fixture(scope="module")
def dataset() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    links = data.load_fixture_links()
    return links, data.fixture_papers(links)


class Recorder:
    """The collector's raw-response hook: keeps what it was given, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[HttpResponse, dict[str, Any]]] = []

    def __call__(self, response: HttpResponse, info: dict[str, Any]) -> None:
        self.calls.append((response, info))


def expected_papers(links, papers, framework: str, start: dt.date, end: dt.date) -> int:
    dates = {p["paper_url"]: dt.date.fromisoformat(p["date"]) for p in papers}
    return len(
        {
            link["paper_url"]
            for link in links
            if link["framework"] == framework and start <= dates[link["paper_url"]] <= end
        }
    )


def test_repository_counts_per_framework(dataset) -> None:
    links, papers = dataset
    recorder = Recorder()
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url + "/", fake.FastHttp().client(), on_response=recorder)
        counts = {fw: client.repository_count(fw) for fw in FRAMEWORKS}
        sent = api.requests_to("/api/v1/repositories/")
    assert counts == {
        fw: len({link["repo_url"] for link in links if link["framework"] == fw})
        for fw in FRAMEWORKS
    }
    assert counts["pytorch"] > counts["tf"] > counts["jax"] > 0
    assert [r.query for r in sent][:1] == [{"framework": "pytorch", "items_per_page": "1"}]
    PwcApiClient.check_distinct(counts)  # a filtering server passes
    response, info = recorder.calls[0]
    assert info == {
        "endpoint": "repositories",
        "url": f"{api.base_url}/repositories/",
        "params": {"framework": "pytorch", "items_per_page": "1"},
    }
    assert response.status == 200 and b'"count"' in response.body
    assert len(recorder.calls) == len(FRAMEWORKS)


def test_paper_counts_by_framework_and_quarter(dataset) -> None:
    links, papers = dataset
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp().client())
        counts = {fw: client.paper_count(fw, *Q2_2020) for fw in ("pytorch", "tf", "none")}
        query = api.requests_to("/api/v1/papers/")[0].query
    assert counts == {fw: expected_papers(links, papers, fw, *Q2_2020) for fw in counts}
    assert counts["pytorch"] > 0
    assert query == {
        "framework": "pytorch",
        "start_date": "2020-04-01",
        "end_date": "2020-06-30",
        "page_size": "1",
    }
    with pytest.raises(ValueError, match="before start"):
        client.paper_count("tf", Q2_2020[1], Q2_2020[0])


def test_server_ignoring_filters_is_refused(dataset) -> None:
    links, papers = dataset
    recorder = Recorder()
    with fake.FakePwcApi(links, papers, ignore_filters=True) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp().client(), on_response=recorder)
        with pytest.raises(FiltersNotApplied, match="no applied_filters") as caught:
            client.paper_count("pytorch", *Q2_2020)
    assert isinstance(caught.value, SourceError) and "\n" not in str(caught.value)
    assert len(recorder.calls) == 1  # stored raw although refused


def test_partial_filter_echo_is_refused(dataset) -> None:
    links, papers = dataset
    with fake.FakePwcApi(links, papers, echo_filters={"framework", "start_date"}) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp().client())
        with pytest.raises(FiltersNotApplied, match="end_date=2020-06-30"):
            client.paper_count("pytorch", *Q2_2020)


def test_echo_with_other_value_is_refused_and_object_echo_accepted(dataset) -> None:
    links, papers = dataset
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp().client())
        filters = {"start_date": "2020-04-01", "end_date": "2020-06-30"}
        api.fail_next(
            fake.json_body({"count": 5, "applied_filters": {**filters, "framework": "tf"}}),
            fake.json_body(
                {
                    "total": 7,  # the relaunched API may call it total
                    "applied_filters": {**filters, "framework": {"slug": "pytorch", "id": 3}},
                }
            ),
        )
        with pytest.raises(FiltersNotApplied, match="framework=pytorch"):
            client.paper_count("pytorch", *Q2_2020)
        assert client.paper_count("pytorch", *Q2_2020) == 7


def test_same_count_for_every_framework_is_refused(dataset) -> None:
    links, papers = dataset
    with fake.FakePwcApi(links, papers, same_count=True) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp().client())
        repos = {fw: client.repository_count(fw) for fw in ("pytorch", "tf", "jax")}
        quarter = {fw: client.paper_count(fw, *Q2_2020) for fw in ("pytorch", "tf", "jax")}
    for counts in (repos, quarter):
        with pytest.raises(FrameworkFilterIgnored, match="same count"):
            PwcApiClient.check_distinct(counts)
    assert issubclass(FrameworkFilterIgnored, FiltersNotApplied)


def test_check_distinct_edge_cases() -> None:
    PwcApiClient.check_distinct({"pytorch": 0, "tf": 0})  # an empty early quarter is real
    PwcApiClient.check_distinct({"pytorch": 12})  # one framework cannot show anything
    PwcApiClient.check_distinct({"pytorch": 12, "tf": 3, "jax": 3})
    with pytest.raises(FrameworkFilterIgnored):
        PwcApiClient.check_distinct({"pytorch": 3, "tf": 3})


BAD_REPLIES = {
    "html": (fake.html_page(), "HTML page instead of JSON"),
    "html-as-json": (
        fake.Fault(content_type="application/json"),
        "HTML page instead of JSON",
    ),
    "not-json": (fake.Fault(body=b"{count: 1", content_type="application/json"), "invalid JSON"),
    "no-count": (fake.json_body({"results": []}), "no 'count'"),
    "string-count": (fake.json_body({"count": "12"}), "not a count"),
    "bool-count": (fake.json_body({"count": True}), "not a count"),
    "negative": (fake.json_body({"count": -1}), "not a count"),
    "array": (fake.json_body([1, 2]), "expected a JSON object"),
    "404": (fake.json_body({"detail": "Not found."}, code=404), "HTTP 404"),
}


@pytest.mark.parametrize("kind", sorted(BAD_REPLIES))
def test_unexpected_replies_are_stored_then_rejected(dataset, kind: str) -> None:
    links, papers = dataset
    fault, message = BAD_REPLIES[kind]
    recorder = Recorder()
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp().client(), on_response=recorder)
        api.fail_next(fault)
        with pytest.raises(UnexpectedResponse, match=message) as caught:
            client.repository_count("pytorch")
    assert "\n" not in str(caught.value)
    assert [r.body for r, _ in recorder.calls] == [fault.body]  # handed over before parsing


def test_rate_limit_is_retried_with_retry_after(dataset) -> None:
    links, papers = dataset
    http = fake.FastHttp()
    recorder = Recorder()
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url, http.client(), on_response=recorder)
        api.fail_next(fake.status(429, retry_after=3), fake.status(503))
        count = client.repository_count("tf")
        assert [r.status for r in api.requests] == [429, 503, 200]
    assert count == len({link["repo_url"] for link in links if link["framework"] == "tf"})
    assert http.sleeps[0] == 3 and len(http.sleeps) == 2
    # Every response is handed over to be stored raw, the retried ones too (§6: raw_responses
    # holds every response a collector received); only the last one is parsed.
    assert [r.status for r, _ in recorder.calls] == [429, 503, 200]


def test_a_body_cut_off_by_the_connection_is_retried(dataset) -> None:
    links, papers = dataset
    http = fake.FastHttp()
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url, http.client())
        api.fail_next(fake.truncated())  # Content-Length of the whole reply, half of it sent
        count = client.repository_count("tf")
        assert len(api.requests) == 2 and len(http.sleeps) == 1
    assert count == len({link["repo_url"] for link in links if link["framework"] == "tf"})


def test_persistent_503_ends_as_source_unavailable(dataset) -> None:
    links, papers = dataset
    with fake.FakePwcApi(links, papers) as api:
        client = PwcApiClient(api.base_url, fake.FastHttp(max_attempts=2).client())
        api.fail_next(fake.status(503), fake.status(503))
        with pytest.raises(SourceUnavailable, match="gave up after 2 attempts"):
            client.paper_count("tf", *Q2_2020)
