"""When a source is due (`trends collect --due`): missed fires, DST changes, crontab semantics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from pipeline.app import App
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.runlog import last_success, recorded_run, writer_lock
from pipeline.schedule import crontab_days, first_fire_after, is_due, next_due
from storage.models import FrameworkShare, Run
from tests.conftest import run_cli, write_config
from tests.demo_source import DEMO, only_demo_source

ZURICH = "Europe/Zurich"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def settings_in(tmp_path: Path, timezone: str) -> Settings:
    config = write_config(
        tmp_path / f"{timezone.replace('/', '_')}.toml",
        f"sqlite:///{tmp_path / 'x.db'}",
        f'[scheduler]\ntimezone = "{timezone}"\n',
    )
    return load_settings(config)


@pytest.fixture
def zurich(tmp_path: Path) -> Settings:
    return settings_in(tmp_path, ZURICH)


@pytest.fixture
def daily_at(monkeypatch: pytest.MonkeyPatch):
    def set_schedule(expression: str) -> None:
        monkeypatch.setenv("DEMO_SOURCE_SCHEDULE", expression)

    set_schedule("0 6 * * *")
    return set_schedule


def test_a_source_that_never_succeeded_is_due(zurich: Settings, daily_at) -> None:
    assert next_due(zurich, DEMO, None) is None
    assert is_due(zurich, DEMO, None, utc("2026-01-01T00:00:00"))


def test_due_exactly_at_the_next_fire_and_not_a_second_before(tmp_path: Path, daily_at) -> None:
    settings = settings_in(tmp_path, "UTC")
    last_ok = utc("2026-11-20T06:00:05")
    assert not is_due(settings, DEMO, last_ok, utc("2026-11-21T05:59:59"))
    assert is_due(settings, DEMO, last_ok, utc("2026-11-21T06:00:00"))


def test_a_run_started_on_the_fire_time_covers_it(tmp_path: Path, daily_at) -> None:
    settings = settings_in(tmp_path, "UTC")
    assert next_due(settings, DEMO, utc("2026-11-20T06:00:00")) == utc("2026-11-21T06:00:00")


def test_many_missed_fires_are_one_catch_up_run(tmp_path: Path, daily_at) -> None:
    settings = settings_in(tmp_path, "UTC")
    last_ok = utc("2026-11-01T06:00:10")  # 26 daily fires missed by 2026-11-27 12:00
    now = utc("2026-11-27T12:00:00")
    assert is_due(settings, DEMO, last_ok, now)
    # The catch-up run started at `now` covers every missed fire: next due is tomorrow's.
    assert next_due(settings, DEMO, now) == utc("2026-11-28T06:00:00")
    assert not is_due(settings, DEMO, now, utc("2026-11-28T05:59:00"))


def test_schedule_is_read_in_the_configured_zone_across_spring_forward(
    zurich: Settings, daily_at
) -> None:
    # Saturday 06:10 CET (UTC+1); on Sunday 2026-03-29 Zurich moves to CEST (UTC+2).
    last_ok = utc("2026-03-28T05:10:00")
    assert next_due(zurich, DEMO, last_ok) == utc("2026-03-29T04:00:00")  # 06:00 CEST
    assert not is_due(zurich, DEMO, last_ok, utc("2026-03-29T03:59:59"))
    assert is_due(zurich, DEMO, last_ok, utc("2026-03-29T04:00:00"))


def test_schedule_is_read_in_the_configured_zone_across_fall_back(
    zurich: Settings, daily_at
) -> None:
    # Saturday 06:10 CEST (UTC+2); on Sunday 2026-10-25 Zurich goes back to CET (UTC+1).
    last_ok = utc("2026-10-24T04:10:00")
    assert next_due(zurich, DEMO, last_ok) == utc("2026-10-25T05:00:00")  # 06:00 CET
    assert not is_due(zurich, DEMO, last_ok, utc("2026-10-25T04:30:00"))
    assert is_due(zurich, DEMO, last_ok, utc("2026-10-25T05:00:00"))


@pytest.mark.parametrize(
    ("last_ok", "now", "first_missed"),
    [
        # last success before the March switch, cron silent for two weeks across it
        ("2026-03-20T05:00:00", "2026-04-02T09:00:00", "2026-03-21T05:00:00"),
        # last success before the October switch, caught up days later
        ("2026-10-20T04:30:00", "2026-10-28T07:00:00", "2026-10-21T04:00:00"),
    ],
)
def test_missed_fires_across_a_dst_change_are_one_catch_up_run(
    zurich: Settings, daily_at, last_ok: str, now: str, first_missed: str
) -> None:
    assert is_due(zurich, DEMO, utc(last_ok), utc(now))
    assert next_due(zurich, DEMO, utc(last_ok)) == utc(first_missed)
    assert not is_due(zurich, DEMO, utc(now), utc(now).replace(hour=utc(now).hour + 1))


def test_the_repeated_hour_in_october_does_not_fire_twice(zurich: Settings, daily_at) -> None:
    daily_at("30 2 * * *")  # 02:30 happens twice on 2026-10-25: 00:30 and 01:30 UTC
    assert next_due(zurich, DEMO, utc("2026-10-24T12:00:00")) == utc("2026-10-25T00:30:00")
    ran_at_first = utc("2026-10-25T00:30:05")
    assert not is_due(zurich, DEMO, ran_at_first, utc("2026-10-25T01:30:00"))
    assert next_due(zurich, DEMO, ran_at_first) == utc("2026-10-26T01:30:00")


def test_the_skipped_hour_in_march_fires_once_after_the_jump(zurich: Settings, daily_at) -> None:
    daily_at("30 2 * * *")  # 02:30 does not exist on 2026-03-29 (02:00 CET -> 03:00 CEST)
    fire = next_due(zurich, DEMO, utc("2026-03-28T12:00:00"))
    assert fire == utc("2026-03-29T01:30:00")  # 03:30 CEST, right after the jump
    assert next_due(zurich, DEMO, fire) == utc("2026-03-30T00:30:00")  # 02:30 CEST


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1", "mon"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("7-7", "sun"),
        ("*/2", "sun,tue,thu,sat"),
        ("sat,SUN", "sun,sat"),
        ("*", "*"),
    ],
)
def test_day_of_week_numbers_are_read_the_crontab_way(field: str, days: str) -> None:
    assert crontab_days(field) == days


def test_weekly_schedule_runs_on_the_crontab_weekday() -> None:
    friday = utc("2026-11-27T00:00:00")
    assert first_fire_after("0 4 * * 1", friday).strftime("%A %H:%M") == "Monday 04:00"
    assert first_fire_after("0 4 * * 0", friday).strftime("%A") == "Sunday"
    assert first_fire_after("0 4 * * 1-5", utc("2026-11-28T00:00:00")).strftime("%A") == "Monday"


def test_day_of_month_and_weekday_together_mean_either_as_in_crontab() -> None:
    fire = first_fire_after("0 0 1 * 1", utc("2026-11-27T00:00:00"))
    assert fire == utc("2026-11-30T00:00:00")  # a Monday before the 1st


@pytest.mark.parametrize("expression", ["0 4 * * 8", "0 4 * * mon-xyz", "0 4 * *", "61 * * * *"])
def test_bad_schedules_are_configuration_errors(tmp_path: Path, expression: str) -> None:
    config = write_config(
        tmp_path / "c.toml", "sqlite:///x.db", f'[gtrends]\nschedule = "{expression}"\n'
    )
    with pytest.raises(ConfigError, match=r"\[gtrends\] schedule: not a cron expression"):
        load_settings(config)


def test_last_success_is_the_start_of_the_last_ok_collect_run(app: App) -> None:
    with app.writing():
        for command, status in [("collect", "ok"), ("backfill", "ok"), ("collect", "failed")]:
            with recorded_run(app.engine, command, "demo") as run:
                if status != "ok":
                    run.failed("boom")
        with app.engine.begin() as connection:
            for run_id, started in [(1, "2026-11-01T06:00:01Z"), (2, "2026-11-02T06:00:01Z")]:
                connection.execute(update(Run).where(Run.id == run_id).values(started_at=started))
            connection.execute(update(Run).where(Run.id == 3).values(started_at="2026-11-03"))
    with app.engine.connect() as connection:
        demo = last_success(connection, "demo")
        assert demo is not None and demo.started == utc("2026-11-01T06:00:01")
        assert last_success(connection, "nosuch") is None


# --- `trends collect --due` end to end ----------------------------------------------------


@pytest.fixture
def demo(daily_at) -> Iterator[None]:
    with only_demo_source():
        yield


def count_runs(app: App) -> int:
    with app.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Run)).scalar_one()


def test_collect_due_runs_when_due_and_then_nothing(app: App, config_file: Path, demo) -> None:
    first = run_cli(config_file, "collect", "--due")
    assert first.exit_code == 0, first.output
    assert "nothing due" not in first.stderr
    with app.engine.connect() as connection:
        run = connection.execute(select(Run.command, Run.source, Run.status, Run.rows)).one()
        shares = connection.execute(select(func.count()).select_from(FrameworkShare)).scalar()
    assert tuple(run) == ("collect", "demo", "ok", 4)  # 1 response + 3 share rows
    assert shares == 3

    second = run_cli(config_file, "collect", "--due")
    assert second.exit_code == 0
    assert "nothing due" in second.stderr
    assert count_runs(app) == 1

    # Two days later (the last success moved back), the daily schedule has fired: due again.
    with app.engine.begin() as connection:
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        connection.execute(update(Run).values(started_at=f"{two_days_ago:%Y-%m-%dT%H:%M:%SZ}"))
    third = run_cli(config_file, "collect", "--due")
    assert third.exit_code == 0 and "nothing due" not in third.stderr
    assert count_runs(app) == 2
    assert "nothing due" in run_cli(config_file, "collect", "--due").stderr


def test_a_source_named_twice_is_collected_once(app: App, config_file: Path, demo) -> None:
    assert run_cli(config_file, "collect", "demo", "demo").exit_code == 0
    assert count_runs(app) == 1


def test_collect_due_after_a_failure_tries_again(
    app: App, config_file: Path, demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_SOURCE_FAIL", "server said no")
    failed = run_cli(config_file, "collect", "--due")
    assert failed.exit_code == 1
    assert failed.stderr.strip().endswith("Error: demo: server said no")
    monkeypatch.delenv("DEMO_SOURCE_FAIL")
    assert run_cli(config_file, "collect", "--due").exit_code == 0  # still due: no success yet
    assert "nothing due" in run_cli(config_file, "collect", "--due").stderr


def test_collect_due_while_another_run_holds_the_lock_exits_75(
    app: App, config_file: Path, demo
) -> None:
    app.prepare_for_reading()
    with writer_lock(app.settings.lock_path):
        result = run_cli(config_file, "collect", "--due")
    assert result.exit_code == 75
    assert count_runs(app) == 0
