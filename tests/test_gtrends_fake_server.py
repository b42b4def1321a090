"""The fake Google Trends server speaks the recorded wire format and keeps its promises."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
import requests

from tests.fakes.cassettes import find_interaction
from tests.fakes.gtrends_server import FakeGoogleTrends, Fault, KeywordProfile


@pytest.fixture
def server():
    with FakeGoogleTrends(today=date(2023, 3, 26), lag_days=3) as fake:
        yield fake


def explore(server: FakeGoogleTrends, keywords: list[str], timeframe: str) -> requests.Response:
    req = {
        "comparisonItem": [{"keyword": k, "time": timeframe, "geo": ""} for k in keywords],
        "category": 0,
        "property": "",
    }
    return requests.post(
        f"{server.base_url}/api/explore",
        params={"hl": "en-US", "tz": "360", "req": json.dumps(req)},
        timeout=5,
    )


def widget(response: requests.Response) -> dict:
    assert response.text.startswith(")]}'\n")
    widgets = json.loads(response.text[5:])["widgets"]
    return next(w for w in widgets if w["id"] == "TIMESERIES")


def multiline(server: FakeGoogleTrends, timeseries: dict, **override) -> requests.Response:
    params = {"req": json.dumps(timeseries["request"]), "token": timeseries["token"], "tz": "360"}
    params.update(override)
    return requests.get(f"{server.base_url}/api/widgetdata/multiline", params=params, timeout=5)


def timeline(server: FakeGoogleTrends, keywords: list[str], timeframe: str) -> list[dict]:
    response = multiline(server, widget(explore(server, keywords, timeframe)))
    assert response.status_code == 200
    assert response.text.startswith(")]}',\n")
    return json.loads(response.text[6:])["default"]["timelineData"]


def day_of(row: dict) -> date:
    return datetime.fromtimestamp(int(row["time"]), tz=UTC).date()


def test_cookie_endpoint_answers_404_with_nid_cookie(server):
    response = requests.get(f"{server.base_url}/explore/", params={"geo": "US"}, timeout=5)
    assert response.status_code == 404
    assert "NID" in response.cookies
    assert server.requests_to("cookie")[0].status == 404


def test_explore_widgets_match_the_recorded_shape(server):
    recorded = json.loads(find_interaction("test_interest_over_time_ok", "/api/explore").body[5:])
    ours = json.loads(explore(server, ["pizza", "bagel"], "2021-01-01 2021-01-05").text[5:])
    assert [w["id"] for w in ours["widgets"]] == [w["id"] for w in recorded["widgets"]]
    recorded_ts = next(w for w in recorded["widgets"] if w["id"] == "TIMESERIES")
    assert widget_request_keys(ours) == set(recorded_ts["request"])
    assert (
        next(w for w in ours["widgets"] if w["id"] == "TIMESERIES")["request"]
        == (recorded_ts["request"])
    )


def widget_request_keys(document: dict) -> set[str]:
    return set(next(w for w in document["widgets"] if w["id"] == "TIMESERIES")["request"])


def test_six_keywords_are_refused_and_logged(server):
    response = explore(server, [f"k{i}" for i in range(6)], "2021-01-01 2021-03-01")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert server.requests_to("explore")[-1].keywords == tuple(f"k{i}" for i in range(6))


@pytest.mark.parametrize("timeframe", ["2021-03-01 2021-01-01", "1999-01-01 2000-01-01", "now 7-d"])
def test_bad_time_ranges_are_refused(server, timeframe):
    assert explore(server, ["pizza"], timeframe).status_code == 400


@pytest.mark.parametrize(
    ("days", "resolution"),
    [(1, "DAY"), (269, "DAY"), (270, "WEEK"), (1883, "WEEK"), (1884, "MONTH")],
)
def test_resolution_follows_the_window_length(server, days, resolution):
    start = date(2015, 1, 1)
    timeframe = f"{start} {start + timedelta(days=days - 1)}"
    assert widget(explore(server, ["pizza"], timeframe))["request"]["resolution"] == resolution


def test_relative_timeframe_is_resolved_like_google(server):
    # Recorded: "today 5-y" on 2023-03-26 became "2018-03-26 2023-03-26", weekly.
    request = widget(explore(server, ["pizza", "bagel"], "today 5-y"))["request"]
    assert (request["time"], request["resolution"]) == ("2018-03-26 2023-03-26", "WEEK")


def test_weekly_buckets_are_whole_sundays_inside_the_window_with_partial_last(server):
    rows = timeline(server, ["pizza", "bagel"], "today 5-y")
    recorded = json.loads(
        find_interaction("test_interest_over_time_partial", "/multiline").body[6:]
    )["default"]["timelineData"]
    assert [r["time"] for r in rows] == [r["time"] for r in recorded]  # 260 Sundays
    assert rows[-1]["isPartial"] is True
    assert not any("isPartial" in r for r in rows[:-1])
    assert rows[-1]["formattedTime"] == recorded[-1]["formattedTime"]
    assert [r["formattedTime"] for r in rows if "axisNote" in r] == [
        r["formattedTime"] for r in recorded if "axisNote" in r
    ]


def test_values_are_jointly_max_normalised_and_rounded_from_truth(server):
    rows = timeline(server, ["pytorch", "mxnet"], "2020-01-01 2020-06-30")
    values = np.array([r["value"] for r in rows])
    truth = server.truth_frame(["pytorch", "mxnet"], date(2020, 1, 1), date(2020, 6, 30))
    assert values.max() == 100
    expected = np.floor(100 * truth.to_numpy() / truth.to_numpy().max() + 0.5)
    assert (values == expected).all()
    assert server.truth("pytorch", date(2020, 1, 1)) == truth["pytorch"].iloc[0]


def test_tiny_terms_show_below_one_and_missing_terms_have_no_data():
    profiles = {
        "big": KeywordProfile({2015: 1.0, 2025: 1.0}, noise=0.0),
        "tiny": KeywordProfile({2015: 0.004, 2025: 0.004}, noise=0.0),
        "later": KeywordProfile({2015: 0.5, 2025: 0.5}, launch=date(2020, 2, 1)),
    }
    with FakeGoogleTrends(profiles=profiles) as fake:
        rows = timeline(fake, ["big", "tiny", "later"], "2020-01-01 2020-03-31")
    first = rows[0]
    assert first["value"][1:] == [0, 0]
    assert first["formattedValue"][1:] == ["<1", "0"]
    assert first["hasData"] == [True, True, False]
    assert rows[-1]["hasData"][2] is True


def test_days_after_the_data_lag_are_absent_and_the_latest_is_partial(server):
    rows = timeline(server, ["pizza"], "2023-01-01 2023-03-26")
    assert day_of(rows[-1]) == server.latest_day == date(2023, 3, 23)
    assert rows[-1]["isPartial"] is True
    complete = timeline(server, ["pizza"], "2023-01-01 2023-03-01")
    assert not any("isPartial" in r for r in complete)


def test_tampered_request_is_rejected_with_401(server):
    timeseries = widget(explore(server, ["pizza"], "2021-01-01 2021-02-01"))
    timeseries["request"]["time"] = "2021-01-01 2021-03-01"
    assert multiline(server, timeseries).status_code == 401
    assert server.data_requests == []


def test_sample_noise_differs_per_fetch_but_is_reproducible():
    def two_fetches() -> tuple[list[int], list[int]]:
        with FakeGoogleTrends(sample_noise=0.1) as fake:
            first = timeline(fake, ["pizza", "bagel"], "2021-01-01 2021-03-01")
            second = timeline(fake, ["pizza", "bagel"], "2021-01-01 2021-03-01")
        return [r["value"][1] for r in first], [r["value"][1] for r in second]

    first, second = two_fetches()
    assert first != second
    assert two_fetches() == (first, second)


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (Fault.too_many_requests(), 429, "text/html"),
        (Fault.server_error(503), 503, "text/html"),
        (Fault.html_page(), 200, "text/html"),
        (Fault.captcha_redirect(), 429, "text/html"),  # after following the 302
    ],
)
def test_faults_are_applied_once_to_their_endpoint(server, fault, status, content_type):
    server.inject("explore", fault)
    response = explore(server, ["pizza"], "2021-01-01 2021-02-01")
    assert (response.status_code, response.headers["Content-Type"][:9]) == (status, content_type)
    assert server.pending_faults("explore") == 0
    assert explore(server, ["pizza"], "2021-01-01 2021-02-01").status_code == 200


def test_retry_after_header_and_truncated_json(server):
    server.inject("explore", Fault.too_many_requests(retry_after=30))
    assert explore(server, ["pizza"], "2021-01-01 2021-02-01").headers["Retry-After"] == "30"
    timeseries = widget(explore(server, ["pizza"], "2021-01-01 2021-02-01"))
    server.inject("multiline", Fault.truncated_json())
    body = multiline(server, timeseries).text
    with pytest.raises(json.JSONDecodeError):
        json.loads(body[6:])


def test_storm_refuses_everything_until_stopped(server):
    server.start_storm()
    assert [explore(server, ["pizza"], "2021-01-01 2021-02-01").status_code for _ in range(3)] == [
        429
    ] * 3
    server.stop_storm()
    assert explore(server, ["pizza"], "2021-01-01 2021-02-01").status_code == 200


def test_monthly_buckets_start_on_the_first(server):
    rows = timeline(server, ["pizza"], "all")
    starts = [day_of(r) for r in rows]
    assert starts[0] == date(2004, 1, 1) and all(d.day == 1 for d in starts)
    assert rows[-1]["isPartial"] is True
