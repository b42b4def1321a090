"""parse_multiline on real recorded Google bodies and on every malformed kind we know."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from pipeline.sources.gtrends.parse import Observation, UnexpectedResponse, parse_multiline
from tests.fakes.cassettes import find_interaction, load_cassette


def recorded_body(cassette: str) -> bytes:
    return find_interaction(cassette, "/widgetdata/multiline").body


def test_cassette_loader_decodes_gzip_bodies():
    cookie, explore, data = load_cassette("test_interest_over_time_ok")
    assert (cookie.status, explore.method, data.status) == (404, "POST", 200)
    assert data.body.startswith(b")]}',\n{")
    assert "NID=" in cookie.headers["Set-Cookie"]


def test_daily_pizza_bagel():
    timeline = parse_multiline(recorded_body("test_interest_over_time_ok"), ["pizza", "bagel"])
    assert timeline.resolution == "day"
    assert len(timeline.observations) == 10
    assert timeline.observations[0] == Observation(
        "pizza", date(2021, 1, 1), 100, has_data=True, below_one=False, is_partial=False
    )
    bagel = [o.value for o in timeline.observations if o.keyword == "bagel"]
    assert bagel == [2, 2, 2, 1, 1]


def test_weekly_with_partial_last_week_and_axis_note():
    body = recorded_body("test_interest_over_time_partial")
    timeline = parse_multiline(body, ["pizza", "bagel"], requested_resolution="week")
    assert timeline.resolution == "week"
    starts = sorted({o.period_start for o in timeline.observations})
    assert (len(starts), starts[0], starts[-1]) == (260, date(2018, 4, 1), date(2023, 3, 19))
    assert all(day.weekday() == 6 for day in starts)  # Sundays
    partial = [o for o in timeline.observations if o.is_partial]
    assert [(o.keyword, o.period_start, o.value) for o in partial] == [
        ("pizza", date(2023, 3, 19), 58),
        ("bagel", date(2023, 3, 19), 2),
    ]


def test_four_series_multiple_regions():
    body = recorded_body("test_interest_over_time_multiple_regions")
    names = ["pizza NY", "pizza IL", "bagel NY", "bagel IL"]
    timeline = parse_multiline(body, names)
    assert timeline.resolution == "week"
    assert [o.value for o in timeline.observations[:4]] == [67, 69, 5, 2]


def row(seconds: int, values: list, **extra) -> dict:
    return {
        "time": str(seconds),
        "formattedTime": "x",
        "value": values,
        "hasData": [True] * len(values),
        "formattedValue": [str(v) for v in values],
        **extra,
    }


def body_of(rows: list[dict], prefix: bytes = b")]}',\n") -> bytes:
    return prefix + json.dumps({"default": {"timelineData": rows, "averages": []}}).encode()


JAN_1 = 1609459200  # 2021-01-01 00:00 UTC


def test_below_one_and_no_data_are_told_apart():
    first = row(JAN_1, [100, 0, 0])
    first["formattedValue"] = ["100", "<1", "0"]
    first["hasData"] = [True, True, False]
    timeline = parse_multiline(body_of([first]), ["a", "b", "c"], requested_resolution="day")
    assert [(o.below_one, o.has_data) for o in timeline.observations] == [
        (False, True),
        (True, True),
        (False, False),
    ]


@pytest.mark.parametrize("prefix", [b")]}'\n", b")]}',\n", b")]}',", b""])
def test_any_xssi_prefix_form_is_accepted(prefix):
    body = body_of([row(JAN_1, [1]), row(JAN_1 + 86400, [100])], prefix)
    assert len(parse_multiline(body, ["a"]).observations) == 2


def test_month_spacing_and_single_row_resolution():
    months = [row(1609459200, [5]), row(1612137600, [100]), row(1614556800, [7])]
    assert parse_multiline(body_of(months), ["a"]).resolution == "month"
    single = parse_multiline(body_of([row(JAN_1, [100])]), ["a"], requested_resolution="week")
    assert single.resolution == "week"
    empty = parse_multiline(body_of([]), ["a"], requested_resolution="day")
    assert (empty.observations, empty.resolution) == ([], "day")


GOOD = body_of([row(JAN_1, [100, 3]), row(JAN_1 + 86400, [90, 4])])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<!DOCTYPE html><html><title>Sorry...</title></html>", "HTML"),
        (GOOD[: len(GOOD) // 2], "not valid JSON"),
        (b")]}',\n[1, 2]", "timelineData"),
        (b')]}\',\n{"default": {}}', "timelineData"),
        (body_of([row(JAN_1, [100])]), "list of 2"),
        (body_of([{"time": str(JAN_1), "value": [1, 2]}]), "hasData"),
        (body_of([row(JAN_1, [100, "7"])]), "value[1]"),
        (body_of([row(JAN_1, [100, 101])]), "value[1]"),
        (body_of([{**row(JAN_1, [1, 2]), "time": "Jan 1"}]), "epoch"),
        (body_of([row(JAN_1, [1, 2]), row(JAN_1 + 3 * 86400, [3, 4])]), "spacing"),
        (body_of([row(JAN_1 + 86400, [1, 2]), row(JAN_1, [3, 4])]), "strictly increasing"),
        (body_of([row(JAN_1, [1, 2], isPartial=True), row(JAN_1 + 86400, [3, 4])]), "isPartial"),
        (body_of([row(JAN_1, [1, 2])]), "cannot tell the resolution"),
        (b"\xff\xfe garbage", "UTF-8"),
    ],
)
def test_malformed_bodies_raise_one_line_errors(body, message):
    with pytest.raises(UnexpectedResponse, match=re.escape(message)) as error:
        parse_multiline(body, ["a", "b"])
    assert "\n" not in str(error.value)


def test_resolution_other_than_requested_is_rejected():
    with pytest.raises(UnexpectedResponse, match="asked for week data, got day data"):
        parse_multiline(GOOD, ["a", "b"], requested_resolution="week")
