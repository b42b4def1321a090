"""Request plans: ≤5 keywords, full coverage, overlaps, anchors, determinism."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipeline.sources.gtrends.plan import (
    PlannedRequest,
    build_plan,
    date_windows,
    incremental_requests,
    keyword_batches,
    minimum_requests,
    series_of,
    unanswered,
)

FRAMEWORKS = ["pytorch", "tensorflow", "jax", "mxnet", "paddlepaddle", "mindspore", "caffe2"]
START, END = date(2016, 1, 1), date(2025, 12, 31)


def days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def span(window: tuple[date, date]) -> int:
    return (window[1] - window[0]).days + 1


@pytest.mark.parametrize("count", range(1, 15))
def test_batches_never_exceed_five_and_chain_through_one_anchor(count):
    keywords = [f"k{i}" for i in range(count)]
    batches = keyword_batches(keywords)
    assert all(1 <= len(batch) <= 5 for batch in batches)
    assert {k for batch in batches for k in batch} == set(keywords)
    for previous, batch in zip(batches, batches[1:], strict=False):
        assert set(previous) & set(batch) == {previous[-1]} == {batch[0]}
    if count > 5:
        assert len(batches) == minimum_requests(keywords, START, START, "day")


def test_anchor_is_the_smallest_of_the_previous_batch_by_volume_hint():
    hint = dict(zip(FRAMEWORKS, [100, 90, 40, 8, 12, 2, 3], strict=True))
    first, second = keyword_batches(FRAMEWORKS, hint)
    assert first == ("pytorch", "tensorflow", "jax", "paddlepaddle", "mxnet")
    assert second == ("mxnet", "caffe2", "mindspore")
    with pytest.raises(ValueError, match="caffe2"):
        keyword_batches(FRAMEWORKS, {k: 1 for k in FRAMEWORKS[:-1]})


def test_no_volume_hint_keeps_the_configured_order():
    assert keyword_batches(FRAMEWORKS) == [tuple(FRAMEWORKS[:5]), tuple(FRAMEWORKS[4:])]
    assert keyword_batches(["b", "a"]) == [("b", "a")]


@pytest.mark.parametrize(
    ("start", "end"),
    [(START, END), (date(2020, 1, 1), date(2020, 9, 25)), (date(2020, 1, 1), date(2020, 9, 26))]
    + [(date(2019, 3, 1), date(2019, 3, 1) + timedelta(days=n)) for n in (300, 478, 479, 900)],
)
def test_daily_windows_cover_every_day_with_overlaps_and_limits(start, end):
    windows = date_windows(start, end, "day")
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(span(w) <= 269 for w in windows)
    covered = set().union(*(days(*w) for w in windows))
    assert covered == days(start, end)
    for (_, previous_end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert (previous_end - next_start).days + 1 >= 60
    assert len(windows) == minimum_requests(["x"], start, end, "day")


def test_plan_is_deterministic_and_every_request_is_small():
    plan = build_plan(FRAMEWORKS, START, END, "day")
    assert plan == build_plan(FRAMEWORKS, START, END, "day")
    assert len({r.key for r in plan}) == len(plan) == 36
    assert len(plan) == minimum_requests(FRAMEWORKS, START, END, "day")
    assert all(len(r.keywords) <= 5 and (r.end - r.start).days < 269 for r in plan)
    assert plan[0].key == "gtrends|day|world|0|web|2016-01-01 2016-09-25|" + ",".join(
        FRAMEWORKS[:5]
    )


def test_extending_the_end_keeps_earlier_windows():
    earlier = date_windows(START, date(2024, 6, 30), "day")
    later = date_windows(START, END, "day")
    assert earlier[:-1] == later[: len(earlier) - 1]


def test_weekly_windows_are_whole_weeks_of_at_most_1800_days_overlapping_a_year():
    windows = date_windows(START, END, "week")
    assert windows[0][0] <= START and windows[-1][1] >= END
    for first, last in windows:
        assert first.weekday() == 6 and last.weekday() == 5  # Sunday .. Saturday
        assert 270 <= span((first, last)) <= 1800
    for (_, previous_end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert (previous_end - next_start).days + 1 >= 365
    short = date_windows(date(2024, 1, 1), date(2024, 2, 1), "week")
    assert len(short) == 1 and span(short[0]) > 269  # widened so Google answers weekly


def test_monthly_is_one_long_window():
    assert date_windows(START, END, "month") == [(START, END)]
    (short,) = date_windows(date(2024, 1, 15), date(2024, 6, 30), "month")
    assert span(short) > 1883 and short[0].day == 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="before start"):
        build_plan(["a"], END, START, "day")
    with pytest.raises(ValueError, match="resolution"):
        build_plan(["a"], START, END, "hour")
    with pytest.raises(ValueError, match="duplicates"):
        build_plan(["a", "a"], START, END, "day")


def test_incremental_is_one_window_per_batch_overlapping_the_stored_series():
    latest = date(2026, 11, 24)
    plan = incremental_requests(FRAMEWORKS, date(2026, 10, 1), latest, geo="US")
    assert [r.keywords for r in plan] == keyword_batches(FRAMEWORKS)
    for request in plan:
        assert request.end == latest and request.geo == "US" and request.resolution == "day"
        assert (request.end - request.start).days + 1 <= 269
        assert (date(2026, 10, 1) - request.start).days + 1 >= 60
    assert plan == incremental_requests(FRAMEWORKS, date(2026, 10, 1), latest, geo="US")


def test_incremental_after_a_long_gap_falls_back_to_overlapping_windows():
    stored, latest = date(2025, 1, 31), date(2026, 11, 24)
    plan = incremental_requests(["pytorch", "jax"], stored, latest)
    assert len(plan) > 1 and plan[-1].end == latest
    assert min(r.start for r in plan) <= stored - timedelta(days=59)
    covered = set().union(*(days(r.start, r.end) for r in plan))
    assert days(stored, latest) <= covered


def test_planned_request_timeframe():
    request = PlannedRequest(("a",), date(2021, 1, 1), date(2021, 1, 5))
    assert request.timeframe == "2021-01-01 2021-01-05"


def test_daily_cron_window_is_the_overlap_plus_the_new_days():
    """Every fetched window stays in the joint fit, so the incremental one is only as long as
    the 60-day overlap plus the days not final yet (62 for a daily cron), not 269."""
    latest = date(2026, 11, 24)
    for stored in (date(2026, 11, 22), date(2026, 9, 1)):  # yesterday's run; a missed summer
        plan = incremental_requests(FRAMEWORKS, stored, latest)
        assert [r.keywords for r in plan] == keyword_batches(FRAMEWORKS)
        for request in plan:
            assert (request.start, request.end) == (stored - timedelta(days=59), latest)


def test_a_second_run_on_the_same_day_finds_its_window_answered():
    """Today's window made the series final up to yesterday; a rerun plans a window inside it
    (same keywords, same last day, later start), which counts as stored."""
    latest = date(2026, 11, 24)
    first = incremental_requests(FRAMEWORKS, latest - timedelta(days=2), latest)
    fetched = [r.key for r in first]
    rerun = incremental_requests(FRAMEWORKS, latest - timedelta(days=1), latest)
    assert rerun != first and unanswered(rerun, fetched) == []
    assert incremental_requests(FRAMEWORKS, latest, latest) == []

    tomorrow = incremental_requests(FRAMEWORKS, latest - timedelta(days=1), latest + timedelta(1))
    assert unanswered(tomorrow, fetched) == tomorrow  # a newer last day
    longer = incremental_requests(FRAMEWORKS, latest - timedelta(days=30), latest)
    assert unanswered(longer, fetched) == longer  # starts earlier than anything fetched
    other_geo = incremental_requests(FRAMEWORKS, latest - timedelta(days=1), latest, geo="US")
    assert unanswered(other_geo, fetched) == other_geo


def test_an_empty_database_starts_at_history_start():
    """Nothing stored: the regular daily plan from [gtrends] history_start to the latest day;
    without one, the latest 269 days."""
    latest = date(2026, 11, 24)
    plan = incremental_requests(["pytorch", "jax"], None, latest, history_start=date(2024, 1, 1))
    starts = sorted({r.start for r in plan})
    assert starts[0] == date(2024, 1, 1) and max(r.end for r in plan) == latest
    assert len(starts) == len(date_windows(date(2024, 1, 1), latest, "day")) > 1
    default = incremental_requests(["pytorch", "jax"], None, latest)
    assert [(r.start, r.end) for r in default] == [(latest - timedelta(days=268), latest)]
    later = incremental_requests(["pytorch"], None, latest, history_start=latest + timedelta(1))
    assert [(r.start, r.end) for r in later] == [(latest, latest)]


def test_windows_whose_days_are_all_stored_final_are_answered():
    """A backfill starting earlier than the stored history lies on another grid; only its
    windows that reach unstored days are asked (and they overlap the stored ones)."""
    stored = build_plan(FRAMEWORKS, date(2016, 1, 1), date(2020, 12, 31), "day")
    final = {}
    for request in stored:
        final.setdefault(series_of(request.key), []).append(
            (request.key, request.start, request.end)
        )
    earlier = build_plan(FRAMEWORKS, date(2015, 1, 1), date(2020, 12, 31), "day")
    todo = unanswered(earlier, [r.key for r in stored], final)
    # The two windows reaching 2015, and the one before the shared last window: that window is
    # in both plans, so it answers itself (same key) but never holds days for the others.
    assert {r.start for r in todo} == {date(2015, 1, 1), date(2015, 7, 29), date(2020, 2, 25)}
    assert (len(todo), len(earlier)) == (6, 22)  # 3 windows x 2 batches instead of 22
    # A day that was not final in its window (partial, or beyond Google's data) is not held.
    short = {s: [(k, a, b - timedelta(days=1)) for k, a, b in w] for s, w in final.items()}
    again = build_plan(FRAMEWORKS, date(2020, 6, 1), date(2020, 12, 31), "day")
    assert unanswered(again, [], final) == []
    assert unanswered(again, [], short) == again
    # Other keywords or another region hold nothing for these requests.
    other = build_plan(FRAMEWORKS, date(2017, 1, 1), date(2017, 6, 30), "day", geo="US")
    assert unanswered(other, [], final) == other


def test_windows_of_the_plan_itself_never_answer_its_other_windows():
    """Resumed after a stop, a plan asks what it would have asked without the stop: its own
    first window, fetched before the stop, does not make its second one look stored."""
    history = build_plan(FRAMEWORKS, date(2024, 1, 1), date(2024, 12, 31), "day")
    plan = build_plan(FRAMEWORKS, date(2023, 6, 1), date(2024, 12, 31), "day")
    final: dict = {}
    for request in history:
        final.setdefault(series_of(request.key), []).append(
            (request.key, request.start, request.end)
        )
    uninterrupted = unanswered(plan, [r.key for r in history], final)
    for request in uninterrupted[:2]:  # the first window of each batch, then a stop
        final[series_of(request.key)].append((request.key, request.start, request.end))
    fetched = [r.key for r in history] + [r.key for r in uninterrupted[:2]]
    assert unanswered(plan, fetched, final) == uninterrupted[2:]
