"""`trends status`: per enabled source health, freshness against the schedule, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from pipeline.app import App
from pipeline.reports import source_status
from storage.models import Run
from tests.conftest import run_cli
from tests.demo_source import DEMO, only_demo_source


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DEMO_SOURCE_SCHEDULE", "0 6 * * *")
    with only_demo_source():
        yield


def stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def status_rows(config: Path) -> tuple[int, list[dict]]:
    result = run_cli(config, "status", "--format", "json")
    return result.exit_code, json.loads(result.stdout)


def test_fresh_source_exits_0_with_success_failure_and_rows(
    app: App, config_file: Path, demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_SOURCE_FAIL", "HTTP 429 three times")
    assert run_cli(config_file, "collect", "demo").exit_code == 1
    monkeypatch.delenv("DEMO_SOURCE_FAIL")
    assert run_cli(config_file, "collect", "demo").exit_code == 0

    code, (row,) = status_rows(config_file)
    assert code == 0
    assert row["source"] == "demo"
    assert row["schedule"] == "0 6 * * * (UTC)"
    assert row["freshness"] == "ok"
    assert row["last_success"] and row["last_failure"]
    assert row["last_error"] == "HTTP 429 three times"
    assert row["next_due"] > row["last_success"]
    assert row["share_rows"] == 3
    assert row["latest_period"] is not None
    assert row["stored_rows"] == "raw_responses=1"


def test_overdue_source_exits_1_and_says_since_when(app: App, config_file: Path, demo) -> None:
    assert run_cli(config_file, "collect", "demo").exit_code == 0
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    with app.engine.begin() as connection:
        connection.execute(update(Run).values(started_at=stamp(three_days_ago)))
    result = run_cli(config_file, "status")
    assert result.exit_code == 1
    assert "overdue" in result.stdout  # the table is printed before the error line
    assert result.stderr.startswith("Error: overdue: demo (due 20")


def test_never_collected_source_is_overdue(app: App, config_file: Path, demo) -> None:
    code, (row,) = status_rows(config_file)
    assert code == 1
    assert row["freshness"] == "never" and row["next_due"] is None
    assert run_cli(config_file, "status").stderr == "Error: overdue: demo (never collected)\n"


def test_freshness_within_and_beyond_the_misfire_grace(app: App, demo) -> None:
    app.prepare_for_reading()
    with app.engine.begin() as connection:
        connection.execute(
            Run.__table__.insert().values(
                command="collect",
                source="demo",
                status="ok",
                started_at="2026-11-20T06:00:01Z",
                finished_at="2026-11-20T06:01:00Z",
            )
        )

    def freshness(now: str) -> str:
        (status,) = source_status(app.engine, app.settings, [DEMO], datetime.fromisoformat(now))
        assert status.next_due == "2026-11-21T06:00:00Z"
        return status.freshness

    # misfire_grace_hours defaults to 6
    assert freshness("2026-11-21T05:59:59+00:00") == "ok"
    assert freshness("2026-11-21T06:00:00+00:00") == "due"
    assert freshness("2026-11-21T12:00:00+00:00") == "due"
    assert freshness("2026-11-21T12:00:01+00:00") == "overdue"


def test_status_lists_only_enabled_sources(app: App, config_file: Path, demo) -> None:
    from dataclasses import replace

    from pipeline.sources import SOURCES

    SOURCES["off"] = replace(DEMO, name="off", enabled=lambda settings: False)
    assert run_cli(config_file, "collect", "demo").exit_code == 0
    code, rows = status_rows(config_file)
    assert code == 0
    assert [row["source"] for row in rows] == ["demo"]
