"""Real pytrends, driven by PytrendsClient, against the fake Google Trends server."""

from __future__ import annotations

import socket
from datetime import date

import pytest
from pytrends.request import TrendReq

from pipeline.http import (
    HttpPolicy,
    HttpResponse,
    HttpSettings,
    SourceBlocked,
    SourceUnavailable,
    TransientError,
)
from pipeline.sources.gtrends.client import CAPTCHA_MESSAGE, PytrendsClient, redirect_pytrends
from pipeline.sources.gtrends.parse import parse_multiline
from pipeline.sources.gtrends.plan import PlannedRequest, build_plan
from tests.fakes.gtrends_server import FakeGoogleTrends, Fault

DAILY = PlannedRequest(("pytorch", "tensorflow", "jax"), date(2024, 1, 1), date(2024, 6, 30))


class Recorder:
    """Collects what the client hands to ``on_response`` and what the policy sleeps."""

    def __init__(self) -> None:
        self.responses: list[tuple[HttpResponse, dict]] = []
        self.sleeps: list[float] = []

    def __call__(self, response: HttpResponse, info: dict) -> None:
        self.responses.append((response, info))

    def paths(self) -> list[str]:
        return [info["url"].split("/trends", 1)[1].split("?")[0] for _, info in self.responses]


@pytest.fixture
def server():
    with FakeGoogleTrends(today=date(2026, 11, 27), lag_days=3) as fake:
        yield fake


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_client(
    base_url: str, recorder: Recorder, max_attempts: int = 4, **kwargs
) -> PytrendsClient:
    settings = HttpSettings(request_delay=0, max_attempts=max_attempts, backoff_base=2.0)
    policy = HttpPolicy(settings, sleep=recorder.sleeps.append)
    return PytrendsClient(base_url, policy, recorder, **kwargs)


def test_redirect_patches_trendreq_itself():
    redirect_pytrends("http://127.0.0.1:9/trends/")
    assert TrendReq.GENERAL_URL == "http://127.0.0.1:9/trends/api/explore"
    assert TrendReq.INTEREST_OVER_TIME_URL == "http://127.0.0.1:9/trends/api/widgetdata/multiline"
    import pytrends.request

    assert pytrends.request.BASE_TRENDS_URL == "http://127.0.0.1:9/trends"


@pytest.mark.parametrize(
    ("start", "end", "resolution", "buckets"),
    [
        (date(2024, 1, 1), date(2024, 6, 30), "day", 182),
        (date(2019, 1, 6), date(2023, 12, 30), "week", 260),
        (date(2010, 1, 1), date(2020, 12, 31), "month", 132),
    ],
)
def test_fetches_daily_weekly_monthly_windows(server, recorder, start, end, resolution, buckets):
    client = make_client(server.base_url, recorder)
    request = PlannedRequest(("pytorch", "mxnet"), start, end, resolution=resolution)
    timeline = parse_multiline(client.fetch(request), request.keywords, resolution)
    assert timeline.resolution == resolution
    assert len(timeline.observations) == 2 * buckets
    assert max(o.value for o in timeline.observations) == 100
    assert server.data_requests[-1].timeframe == request.timeframe


def test_every_response_is_handed_over_raw_without_secrets(server, recorder):
    client = make_client(server.base_url, recorder)
    body = client.fetch(DAILY)
    client.fetch(DAILY)
    # The cookie request happens once: the TrendReq is built lazily and reused.
    assert recorder.paths() == ["/explore/", "/api/explore", "/api/widgetdata/multiline"] + [
        "/api/explore",
        "/api/widgetdata/multiline",
    ]
    response, info = recorder.responses[2]
    assert response.body == body and response.status == 200
    assert body.startswith(b")]}',\n")
    assert info["method"] == "GET" and info["params"]["token"] == "REDACTED"
    assert "token=REDACTED" in info["url"] and "token=REDACTED" in response.url
    cookie_response, cookie_info = recorder.responses[0]
    assert cookie_response.status == 404 and cookie_info["params"] == {"geo": "US"}
    assert not any(k.lower() == "set-cookie" for r, _ in recorder.responses for k in r.headers)
    assert client.policy.requests_sent == 2  # budget counts data requests


def test_more_than_five_keywords_fail_before_any_http(server, recorder):
    client = make_client(server.base_url, recorder)
    request = PlannedRequest(tuple(f"k{i}" for i in range(6)), date(2024, 1, 1), date(2024, 3, 1))
    with pytest.raises(ValueError, match="1 to 5 keywords"):
        client.fetch(request)
    assert server.requests == [] and recorder.responses == []


def test_a_whole_plan_never_sends_more_than_five_keywords(server, recorder):
    client = make_client(server.base_url, recorder)
    keywords = ["pytorch", "tensorflow", "jax", "mxnet", "paddlepaddle", "mindspore", "caffe2"]
    plan = build_plan(keywords, date(2025, 1, 1), date(2025, 12, 31), "day")
    for request in plan:
        client.fetch(request)
    assert len(server.data_requests) == len(plan) == 4
    assert max(len(r.keywords) for r in server.requests_to("explore")) == 5


def test_retry_after_is_honoured(server, recorder):
    server.inject("explore", Fault.too_many_requests(retry_after=7))
    server.inject("multiline", Fault.too_many_requests(retry_after=11))
    client = make_client(server.base_url, recorder)
    client.fetch(DAILY)
    assert recorder.sleeps == [7.0, 11.0]
    assert len(server.data_requests) == 1
    assert [r.status for r, _ in recorder.responses].count(429) == 2  # stored raw as well


def test_a_long_retry_after_is_capped_at_backoff_max(recorder):
    """`Retry-After: 86400` must not put the run to sleep for a day."""
    policy = HttpPolicy(HttpSettings(backoff_max=0.05), sleep=recorder.sleeps.append)
    answers = iter([TransientError("429", status=429, retry_after=3600), None])

    def attempt() -> str:
        error = next(answers)
        if error:
            raise error
        return "ok"

    assert policy.call(attempt, what="GET x") == "ok"
    assert recorder.sleeps == [0.05]


def test_429_without_retry_after_backs_off_with_jitter(server, recorder):
    server.inject("explore", Fault.too_many_requests(), Fault.too_many_requests())
    make_client(server.base_url, recorder).fetch(DAILY)
    first, second = recorder.sleeps
    assert 1.0 <= first <= 2.0 and 2.0 <= second <= 4.0


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(server, recorder, status):
    server.inject("multiline", Fault.server_error(status))
    body = make_client(server.base_url, recorder).fetch(DAILY)
    assert parse_multiline(body, DAILY.keywords).observations
    assert len(recorder.sleeps) == 1


def test_truncated_explore_json_is_retried(server, recorder):
    server.inject("explore", Fault.truncated_json())
    make_client(server.base_url, recorder).fetch(DAILY)
    assert len(recorder.sleeps) == 1 and len(server.data_requests) == 1


@pytest.mark.parametrize("fault", [Fault.html_page(), Fault.captcha_redirect()])
def test_html_page_means_source_unavailable_without_retry(server, recorder, fault):
    server.inject("explore", fault)
    client = make_client(server.base_url, recorder)
    with pytest.raises(SourceBlocked) as error:
        client.fetch(DAILY)
    assert str(error.value) == CAPTCHA_MESSAGE
    assert recorder.sleeps == [] and server.data_requests == []  # one try: no retry
    assert recorder.responses[-1][0].headers["Content-Type"].startswith("text/html")


def test_429_storm_ends_as_source_unavailable_after_max_attempts(server, recorder):
    server.start_storm()
    client = make_client(server.base_url, recorder, max_attempts=3)
    with pytest.raises(SourceUnavailable, match="gave up after 3 attempts") as error:
        client.fetch(DAILY)
    assert isinstance(error.value.__cause__, TransientError)
    assert error.value.__cause__.status == 429
    assert len(server.requests_to("explore")) == 3 and len(recorder.sleeps) == 2
    server.stop_storm()
    assert client.fetch(DAILY)  # the same client recovers once Google does


def test_connection_refused_is_transient(recorder):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}/trends", recorder, max_attempts=2)
    with pytest.raises(SourceUnavailable, match="connection"):
        client.fetch(DAILY)
    assert len(recorder.sleeps) == 1


def test_read_timeout_is_transient(server, recorder):
    server.inject("multiline", Fault.slow(0.5))
    client = make_client(server.base_url, recorder, timeout=(1.0, 0.1))
    assert client.fetch(DAILY)
    assert len(recorder.sleeps) == 1
    # The timed-out answer never reached the client; the retried one did.
    assert recorder.paths().count("/api/widgetdata/multiline") == 1
    assert recorder.paths().count("/api/explore") == 2


def test_malformed_data_is_returned_for_parse_to_reject(server, recorder):
    server.inject("multiline", Fault.truncated_json())
    client = make_client(server.base_url, recorder, max_attempts=1)
    with pytest.raises(SourceUnavailable, match="invalid JSON"):
        client.fetch(DAILY)
    # The cut-short body still reached on_response, to be stored raw.
    assert recorder.responses[-1][0].status == 200


def test_a_body_cut_off_by_the_connection_is_retried(server, recorder):
    """requests reads the body inside ``get``: a cut-off body is a ChunkedEncodingError, not a
    ConnectionError, and must be retried like one."""
    server.inject("multiline", Fault.broken_body())
    client = make_client(server.base_url, recorder)
    assert client.fetch(DAILY)
    assert len(recorder.sleeps) == 1
    assert recorder.paths().count("/api/widgetdata/multiline") == 1  # the whole, second answer


def test_retries_spend_budget_and_keep_the_polite_delay(server, recorder):
    """A 429 with "Retry-After: 0" is retried no faster than [http] request_delay, and each
    attempt counts against the request budget."""
    server.inject("multiline", Fault.too_many_requests(0), Fault.too_many_requests(0))
    settings = HttpSettings(request_delay=5.0, max_attempts=4, request_budget=10)
    policy = HttpPolicy(settings, sleep=recorder.sleeps.append)  # recorded, not slept
    client = PytrendsClient(server.base_url, policy, recorder)
    assert client.fetch(DAILY)
    assert policy.requests_sent == 3
    polite = [s for s in recorder.sleeps if s > 4]  # the Retry-After waits are 0
    assert len(polite) == 2
