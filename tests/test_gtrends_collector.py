"""Google Trends end to end: the CLI drives real pytrends against the fake server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from pipeline.app import App
from pipeline.collect import blocked_until, due_now
from pipeline.sources import SOURCES
from pipeline.sources.gtrends import aggregate
from tests.conftest import gtrends_config, query, run_cli, write_config
from tests.fakes.gtrends_server import FakeGoogleTrends, Fault

TODAY = datetime.now(UTC).date()
FRAMEWORKS = ["pytorch", "tensorflow", "jax", "mxnet", "paddlepaddle", "mindspore", "caffe2"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleTrends]:
    monkeypatch.setenv("TRENDS_TODAY", TODAY.isoformat())  # one day, even across midnight
    with FakeGoogleTrends(today=TODAY) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str, fake: FakeGoogleTrends) -> Path:
    return gtrends_config(tmp_path / "trends.toml", sqlite_url, fake.base_url)


def data_requests(fake: FakeGoogleTrends) -> int:
    return sum(r.endpoint == "multiline" and r.status == 200 for r in fake.requests)


def series(url: str) -> pd.DataFrame:
    engine = create_engine(url)
    frame = pd.read_sql(
        "SELECT framework, resolution, period_start, value, observations FROM gtrends_series "
        "ORDER BY resolution, framework, period_start",
        engine,
    )
    engine.dispose()
    return frame


def test_backfill_puts_seven_frameworks_on_one_scale(fake, config, sqlite_url) -> None:
    result = run_cli(config, "backfill", "gtrends", "--start", "2023-01-01", "--end", "2023-12-31")
    assert result.exit_code == 0, result.output
    # 2 daily windows (365 days) x 2 batches of <= 5 keywords
    assert data_requests(fake) == 4
    assert max(len(r.keywords) for r in fake.requests) <= 5

    daily = series(sqlite_url).query("resolution == 'day'")
    assert set(daily["framework"]) == set(FRAMEWORKS)
    assert daily["value"].max() == pytest.approx(100)
    # Ratios across batches (pytorch is only in batch 1, caffe2 only in batch 2) match the truth.
    wide = daily.pivot(index="period_start", columns="framework", values="value")
    truth = fake.truth_frame(FRAMEWORKS, date(2023, 1, 1), date(2023, 12, 31))
    truth.index = truth.index.map(lambda d: pd.Timestamp(d).strftime("%Y-%m-%d"))
    measured = (wide["pytorch"] / wide["caffe2"]).median()
    expected = (truth["pytorch"] / truth["caffe2"]).median()
    assert measured == pytest.approx(expected, rel=0.1)

    shares = query(
        sqlite_url,
        "SELECT granularity, period_start, sum(share), count(*) FROM framework_share "
        "WHERE source = 'gtrends' AND variant = 'world' GROUP BY 1, 2",
    )
    assert {g for g, *_ in shares} == {"day", "week", "month"}
    assert all(total == pytest.approx(1.0) and n == 7 for _, _, total, n in shares)
    weeks = [p for g, p, *_ in shares if g == "week"]
    assert all(date.fromisoformat(p).weekday() == 6 for p in weeks)  # Sunday starts

    table = run_cli(config, "shares", "--source", "gtrends", "--granularity", "month")
    assert "gtrends / world / month" in table.stdout


def test_rerun_fetches_nothing_and_dry_run_sends_no_request(fake, config) -> None:
    args = ["backfill", "gtrends", "--start", "2024-01-01", "--end", "2025-06-30"]
    assert run_cli(config, *args).exit_code == 0
    sent = len(fake.requests)
    assert run_cli(config, *args).exit_code == 0
    assert len(fake.requests) == sent
    same = run_cli(config, *args, "--dry-run")
    assert same.stdout.strip().endswith("6 requests in the plan, 0 to fetch (6 already stored)")
    # Extending the end keeps the earlier grid windows: only the new ones are to fetch.
    longer = run_cli(config, *args, "--dry-run", "--end", "2025-12-31")
    assert longer.exit_code == 0
    assert longer.stdout.strip().endswith("8 requests in the plan, 4 to fetch (4 already stored)")
    assert len(fake.requests) == sent


def test_429_storm_ends_partial_with_one_line_and_a_rerun_completes(fake, config, sqlite_url):
    args = ["backfill", "gtrends", "--start", "2024-01-01", "--end", "2024-12-31"]
    fake.start_storm()
    stormy = run_cli(config, *args)
    assert stormy.exit_code == 1
    assert stormy.stderr.count("\n") == 1
    assert "partial" in stormy.stderr and "run the same command again" in stormy.stderr
    status, error = query(sqlite_url, "SELECT status, error FROM runs ORDER BY id DESC LIMIT 1")[0]
    assert status == "partial" and "429" in error
    fake.stop_storm()
    assert run_cli(config, *args).exit_code == 0
    assert query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0] == 4


def test_budget_stop_keeps_what_was_fetched_and_rerun_continues(
    fake, config, sqlite_url, monkeypatch
) -> None:
    args = ["backfill", "gtrends", "--start", "2024-01-01", "--end", "2024-12-31"]
    monkeypatch.setenv("TRENDS_HTTP_REQUEST_BUDGET", "3")
    first = run_cli(config, *args)
    monkeypatch.delenv("TRENDS_HTTP_REQUEST_BUDGET")
    assert first.exit_code == 1 and "request budget of 3 spent" in first.stderr
    assert query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0] == 3
    before = data_requests(fake)
    assert run_cli(config, *args).exit_code == 0
    assert data_requests(fake) - before == 1


def test_transient_faults_are_retried_and_captcha_stops_the_run(
    fake, config, sqlite_url, monkeypatch
) -> None:
    monkeypatch.setenv("TRENDS_HTTP_MAX_ATTEMPTS", "5")
    fake.inject("explore", Fault.too_many_requests(retry_after=0), Fault.server_error(503))
    fake.inject("multiline", Fault.truncated_json())
    args = ["backfill", "gtrends", "--start", "2024-03-01", "--end", "2024-06-30"]
    assert run_cli(config, *args).exit_code == 0
    fake.inject("explore", Fault.html_page())
    blocked = run_cli(config, *args, "--start", "2023-01-01")
    assert blocked.exit_code == 1
    assert "CAPTCHA or block page instead of data" in blocked.stderr
    html = query(
        sqlite_url, "SELECT count(*) FROM raw_responses WHERE content_type LIKE 'text/html%'"
    )
    assert html[0][0] >= 1  # the block page itself was stored raw


def test_a_captcha_redirect_stops_at_once_and_scheduled_runs_wait_a_day(
    fake, config, sqlite_url
) -> None:
    """Google's block (a 302 to /sorry/, which answers 429) is not retried like a 429: the run
    stops, and `collect --due` leaves Google alone for 20 h instead of hitting it every tick."""
    fake.inject("explore", Fault.captcha_redirect())
    blocked = run_cli(config, "collect", "gtrends")
    assert blocked.exit_code == 1 and "CAPTCHA or block page" in blocked.stderr
    assert [r.path for r in fake.requests if r.path.startswith("/sorry/")] == ["/sorry/index"]
    assert query(sqlite_url, "SELECT status FROM runs")[0][0] == "partial"
    sent = len(fake.requests)
    assert run_cli(config, "collect", "--due", "gtrends").exit_code == 0
    assert len(fake.requests) == sent  # still blocked: not due
    app = App.from_config(config)
    try:
        now = datetime.now(UTC)
        source = SOURCES["gtrends"]
        assert not due_now(app, source, now + timedelta(hours=19))
        assert due_now(app, source, now + timedelta(hours=21))  # a daily fire still runs
    finally:
        app.close()
    # A collect run by hand that succeeds ends the block at once.
    assert run_cli(config, "collect", "gtrends").exit_code == 0
    sent = len(fake.requests)
    assert run_cli(config, "collect", "--due", "gtrends").exit_code == 0
    assert len(fake.requests) == sent  # not due: it just succeeded, and no longer blocked
    app = App.from_config(config)
    try:
        assert blocked_until(app, "gtrends", datetime.now(UTC)) is None
    finally:
        app.close()


def test_a_backfill_that_would_leave_a_gap_is_refused_before_any_request(
    fake, config, sqlite_url
) -> None:
    args = ["backfill", "gtrends", "--start", "2024-03-01", "--end", "2024-06-30"]
    assert run_cli(config, *args).exit_code == 0
    sent, runs = len(fake.requests), query(sqlite_url, "SELECT count(*) FROM runs")
    for extra in ([], ["--dry-run"]):
        result = run_cli(
            config, "backfill", "gtrends", "--start", "2020-01-01", "--end", "2020-12-31", *extra
        )
        assert result.exit_code == 2
        assert result.stderr == (
            "Error: 2020-01-01..2020-12-31 shares no day with the stored day windows "
            "(2024-03-01..2024-06-30), so the two could not be put on one scale; extend the "
            "range to reach them (--end 2024-03-01)\n"
        )
    assert len(fake.requests) == sent
    assert query(sqlite_url, "SELECT count(*) FROM runs") == runs
    bridged = ["backfill", "gtrends", "--start", "2023-10-01", "--end", "2024-03-01"]
    assert run_cli(config, *bridged).exit_code == 0
    assert run_cli(config, "aggregate").exit_code == 0


def test_a_daily_range_that_meets_stored_weekly_windows_is_tied_through_them(
    fake, config, sqlite_url
) -> None:
    weekly = ["--resolution", "week", "--start", "2022-01-01", "--end", "2024-06-29"]
    assert run_cli(config, "backfill", "gtrends", *weekly).exit_code == 0
    daily = ["--start", "2024-03-01", "--end", "2024-06-30"]
    assert run_cli(config, "backfill", "gtrends", *daily).exit_code == 0
    apart = ["--start", "2022-06-01", "--end", "2022-09-30"]  # no daily window that year
    assert run_cli(config, "backfill", "gtrends", *apart).exit_code == 0
    assert run_cli(config, "aggregate").exit_code == 0
    # A short weekly range is stretched to a whole weekly window, which meets the stored ones.
    short = ["--resolution", "week", "--start", "2024-05-05", "--end", "2024-06-29"]
    assert run_cli(config, "backfill", "gtrends", *short, "--dry-run").exit_code == 0


def test_a_backfill_starting_earlier_fetches_only_the_new_days(fake, config, sqlite_url) -> None:
    args = ["backfill", "gtrends", "--end", "2024-12-31"]
    assert run_cli(config, *args, "--start", "2022-01-01").exit_code == 0
    before = data_requests(fake)
    dry = run_cli(config, *args, "--start", "2021-06-01", "--dry-run")
    assert dry.stdout.splitlines()[-1] == "12 requests in the plan, 4 to fetch (8 already stored)"
    assert run_cli(config, *args, "--start", "2021-06-01").exit_code == 0
    assert data_requests(fake) - before == 4  # 2 windows reaching 2021 x 2 batches
    first = query(sqlite_url, "SELECT min(period_start) FROM gtrends_series WHERE resolution='day'")
    assert first[0][0] == "2021-06-01"


def test_a_window_is_stored_whole_or_not_at_all(fake, config, sqlite_url) -> None:
    """Its fetch row and its cells are one transaction: a failure between them must not leave
    a fetch without cells, which every rerun would count as stored (a permanent gap)."""
    args = ["backfill", "gtrends", "--start", "2024-03-01", "--end", "2024-06-30"]
    app = App.from_config(config)
    app.prepare_for_reading()  # the schema, so that the trigger can be created
    app.close()
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse_cells BEFORE INSERT ON gtrends_cells "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    assert run_cli(config, *args).exit_code == 1
    assert query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0] == 0
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER refuse_cells")
    engine.dispose()
    before = data_requests(fake)
    assert run_cli(config, *args).exit_code == 0
    assert data_requests(fake) - before == 2  # the window of each batch, asked again
    assert query(sqlite_url, "SELECT count(*) FROM gtrends_cells")[0][0] > 0


def test_a_window_asked_beyond_googles_data_holds_only_the_days_it_got(
    tmp_path, sqlite_url, monkeypatch
) -> None:
    """With [gtrends] data_lag_days shorter than Google's real lag, windows end after Google's
    latest day, and their last days are empty: the next days' collects must still fetch them."""
    day_one = date(2026, 6, 2)
    monkeypatch.setenv("TRENDS_GTRENDS_DATA_LAG_DAYS", "0")  # the fake lags 3 days
    with FakeGoogleTrends(today=day_one) as server:
        config = gtrends_config(tmp_path / "c.toml", sqlite_url, server.base_url)
        monkeypatch.setenv("TRENDS_TODAY", day_one.isoformat())
        args = ["backfill", "gtrends", "--start", "2026-01-01", "--end", "2026-06-02"]
        assert run_cli(config, *args).exit_code == 0
    for today in (date(2026, 6, 3), date(2026, 6, 4)):
        with FakeGoogleTrends(today=today) as server:
            monkeypatch.setenv("TRENDS_GTRENDS_BASE_URL", server.base_url)
            monkeypatch.setenv("TRENDS_TODAY", today.isoformat())
            assert run_cli(config, "collect", "gtrends").exit_code == 0
        latest = query(
            sqlite_url, "SELECT max(period_start) FROM gtrends_series WHERE resolution = 'day'"
        )[0][0]
        assert latest == server.latest_day.isoformat()


def test_an_end_after_googles_latest_day_backfills_up_to_that_day(
    fake, config, monkeypatch
) -> None:
    """Windows wholly after Google's latest day would be answered 400, thousands of them for a
    far --end: the range stops at the latest day instead."""
    monkeypatch.setenv("TRENDS_TODAY", fake.today.isoformat())
    plan = ["backfill", "gtrends", "--start", "2025-01-01", "--dry-run"]
    far = run_cli(config, *plan, "--end", "2999-01-01")
    assert far.exit_code == 0
    assert "--end 2999-01-01 is after the latest day Google has data for" in far.stderr
    assert far.stdout == run_cli(config, *plan).stdout


def test_raw_responses_are_stored_without_secrets(fake, config, sqlite_url) -> None:
    assert (
        run_cli(
            config, "backfill", "gtrends", "--start", "2024-03-01", "--end", "2024-06-30"
        ).exit_code
        == 0
    )
    rows = query(
        sqlite_url, "SELECT url, params, body FROM raw_responses WHERE url LIKE '%multiline'"
    )
    assert len(rows) == 2
    for _url, params, body in rows:
        assert '"token": "REDACTED"' in params
        assert "timelineData" in body
    cookies = query(sqlite_url, "SELECT count(*) FROM raw_responses WHERE body LIKE '%NID=%'")
    assert cookies[0][0] == 0


def test_aggregate_rebuilds_the_same_series_without_network(fake, config, sqlite_url) -> None:
    assert (
        run_cli(
            config, "backfill", "gtrends", "--start", "2024-01-01", "--end", "2024-04-30"
        ).exit_code
        == 0
    )
    before = series(sqlite_url)
    fake.stop()
    assert run_cli(config, "aggregate").exit_code == 0
    pd.testing.assert_frame_equal(series(sqlite_url), before)


def test_collect_twice_adds_nothing_and_covers_day_week_month(fake, config, sqlite_url) -> None:
    first = run_cli(config, "collect", "gtrends")
    assert first.exit_code == 0, first.output
    resolutions = query(sqlite_url, "SELECT DISTINCT resolution FROM gtrends_fetches ORDER BY 1")
    assert [r for (r,) in resolutions] == ["day", "month", "week"]
    latest = query(
        sqlite_url, "SELECT max(period_start) FROM gtrends_series WHERE resolution='day'"
    )
    assert latest[0][0] == fake.latest_day.isoformat()
    sent = len(fake.requests)
    rows = query(sqlite_url, "SELECT count(*) FROM gtrends_cells")
    assert run_cli(config, "collect", "gtrends").exit_code == 0
    assert len(fake.requests) == sent
    assert query(sqlite_url, "SELECT count(*) FROM gtrends_cells") == rows


def test_incremental_window_overlaps_the_backfill_and_replaces_the_partial_day(
    tmp_path, sqlite_url
) -> None:
    """Day 1: collect (its last day is partial). Day 2: the new window makes that day final."""
    day_one = date(2026, 6, 2)
    with FakeGoogleTrends(today=day_one) as server:
        extra = f'[gtrends]\nbase_url = "{server.base_url}"\n'
        config = write_config(tmp_path / "c.toml", sqlite_url, extra)
        os.environ["TRENDS_TODAY"] = day_one.isoformat()
        try:
            assert run_cli(config, "collect", "gtrends").exit_code == 0
        finally:
            del os.environ["TRENDS_TODAY"]
    with FakeGoogleTrends(today=date(2026, 6, 3)) as server:
        os.environ["TRENDS_GTRENDS_BASE_URL"] = server.base_url
        os.environ["TRENDS_TODAY"] = "2026-06-03"
        try:
            assert run_cli(config, "collect", "gtrends").exit_code == 0
        finally:
            del os.environ["TRENDS_GTRENDS_BASE_URL"], os.environ["TRENDS_TODAY"]
        daily_requests = [r for r in server.requests if r.endpoint == "multiline"]
    # Only the new daily window per batch was fetched (weekly/monthly windows had not moved).
    assert len(daily_requests) == 2
    latest = query(
        sqlite_url,
        "SELECT max(c.period_start) FROM gtrends_cells c "
        "JOIN gtrends_fetches f ON f.id = c.fetch_id "
        "WHERE f.resolution = 'day' AND NOT c.is_partial",
    )[0][0]
    assert latest == "2026-05-30"  # day one's partial last day is final now


def test_a_daily_collect_rewrites_little_of_the_stored_history(tmp_path, sqlite_url) -> None:
    """Values keep 3 significant digits, so the next day's window does not move every stored
    daily value by noise in its 5th digit (without the rounding: all of them, every day)."""
    gtrends = 'history_start = "2022-01-01"\n'
    snapshots = []
    for today in (date(2026, 6, 2), date(2026, 6, 3)):
        with FakeGoogleTrends(today=today, sample_noise=0.02) as server:
            config = gtrends_config(tmp_path / "c.toml", sqlite_url, server.base_url, gtrends)
            os.environ["TRENDS_TODAY"] = today.isoformat()
            try:
                assert run_cli(config, "collect", "gtrends").exit_code == 0
            finally:
                del os.environ["TRENDS_TODAY"]
        snapshots.append(series(sqlite_url))
    both = snapshots[0].merge(
        snapshots[1], on=["resolution", "framework", "period_start"], suffixes=("", "_after")
    )
    daily = both[both["resolution"] == "day"]
    assert len(daily) > 10_000
    moved = (daily["value"] != daily["value_after"]).mean()
    assert moved < 0.15, f"{moved:.0%} of the stored daily values changed"
    assert (both["value_after"] == aggregate.significant(both["value_after"])).all()


KILLABLE_BACKFILL = """
import sys
from pipeline.cli import main
main(["--config", sys.argv[1], "backfill", "gtrends", "--start", "2019-01-01",
      "--end", "2021-12-31"], prog_name="trends")
"""


def test_sigkill_during_backfill_then_rerun_gives_the_uninterrupted_series(
    fake, config, sqlite_url, tmp_path
) -> None:
    # Every data request is slow, so the child is killed in the middle of the plan.
    fake.inject("multiline", *[Fault.slow(0.3) for _ in range(40)])
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_BACKFILL, str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            if query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0] >= 3:
                break
        except Exception:  # noqa: BLE001 - the schema may not exist yet
            continue
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    stored = query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0]
    assert 3 <= stored < 10  # 5 windows x 2 batches planned

    resumed = run_cli(config, "backfill", "gtrends", "--start", "2019-01-01", "--end", "2021-12-31")
    assert resumed.exit_code == 0, resumed.output
    statuses = query(sqlite_url, "SELECT status, error FROM runs ORDER BY id")
    assert statuses[0][0] == "failed" and "killed" in statuses[0][1]
    assert query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0] == 10

    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    clean = write_config(
        tmp_path / "clean.toml", clean_url, f'[gtrends]\nbase_url = "{fake.base_url}"\n'
    )
    assert (
        run_cli(
            clean, "backfill", "gtrends", "--start", "2019-01-01", "--end", "2021-12-31"
        ).exit_code
        == 0
    )
    pd.testing.assert_frame_equal(series(sqlite_url), series(clean_url))


def test_a_first_collect_stopped_before_the_second_batch_still_gets_its_whole_history(
    fake, tmp_path, sqlite_url, monkeypatch
) -> None:
    """Stopped after the first window of the first batch, the rerun must not resume from that
    batch's last day: the second batch has no history yet."""
    gtrends = 'history_start = "2023-06-01"\n'
    config = gtrends_config(tmp_path / "history.toml", sqlite_url, fake.base_url, gtrends)
    monkeypatch.setenv("TRENDS_HTTP_REQUEST_BUDGET", "1")
    assert run_cli(config, "collect", "gtrends").exit_code == 1  # partial: budget spent
    monkeypatch.delenv("TRENDS_HTTP_REQUEST_BUDGET")
    assert run_cli(config, "collect", "gtrends").exit_code == 0
    firsts = query(
        sqlite_url,
        "SELECT framework, min(period_start) FROM gtrends_series WHERE resolution = 'day' "
        "GROUP BY framework",
    )
    assert len(firsts) == 7 and {first for _, first in firsts} == {"2023-06-01"}
    assert run_cli(config, "collect", "gtrends").exit_code == 0  # and nothing is asked twice
    assert data_requests(fake) == query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0]


def test_first_collect_fetches_history_and_a_stopped_one_continues(
    fake, tmp_path, sqlite_url, monkeypatch
) -> None:
    """An empty database: collect fetches the daily history from [gtrends] history_start. Cut
    short (here by the request budget), the next collect fetches only what is missing."""
    config = gtrends_config(
        tmp_path / "history.toml", sqlite_url, fake.base_url, 'history_start = "2024-06-01"\n'
    )
    monkeypatch.setenv("TRENDS_HTTP_REQUEST_BUDGET", "3")
    assert run_cli(config, "collect", "gtrends").exit_code == 1  # partial: budget spent
    stopped_after = data_requests(fake)
    monkeypatch.delenv("TRENDS_HTTP_REQUEST_BUDGET")
    assert run_cli(config, "collect", "gtrends").exit_code == 0
    first_day = query(
        sqlite_url, "SELECT min(window_start) FROM gtrends_fetches WHERE resolution = 'day'"
    )[0][0]
    assert first_day == "2024-06-01"
    windows = query(sqlite_url, "SELECT count(*) FROM gtrends_fetches")[0][0]
    assert data_requests(fake) == windows >= stopped_after > 0  # nothing fetched twice
