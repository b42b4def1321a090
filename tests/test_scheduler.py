"""`trends schedule`: jobs per enabled source, lock handling, clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from pipeline.app import App
from pipeline.http import STOPPED_MESSAGE
from pipeline.runlog import recorded_run, writer_lock
from pipeline.schedule import CrontabTrigger
from pipeline.scheduler import build_scheduler, run_job
from storage.models import FrameworkShare, Run
from tests.conftest import run_cli, write_config
from tests.demo_source import only_demo_source

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DEMO_SOURCE_SCHEDULE", "0 6 * * *")
    with only_demo_source():
        yield


def test_one_job_per_enabled_source_with_the_configured_defaults(
    tmp_path: Path, sqlite_url: str, demo
) -> None:
    config = write_config(
        tmp_path / "c.toml",
        sqlite_url,
        '[scheduler]\ntimezone = "Europe/Zurich"\nmisfire_grace_hours = 2.5\n',
    )
    app = App.from_config(config)
    scheduler = build_scheduler(app, threading.Event())
    (job,) = scheduler.get_jobs()
    assert job.id == "collect-demo"
    assert isinstance(job.trigger, CrontabTrigger)
    assert job.trigger.expression == "0 6 * * *"
    assert str(scheduler.timezone) == "Europe/Zurich"
    # Jobs get the defaults when the scheduler starts; until then they sit in _job_defaults.
    assert scheduler._job_defaults == {
        "misfire_grace_time": 9000,
        "coalesce": True,
        "max_instances": 1,
    }
    app.close()


def test_no_enabled_source_is_a_usage_error(config_file: Path) -> None:
    with only_demo_source():
        from pipeline.sources import SOURCES

        SOURCES.clear()
        result = run_cli(config_file, "schedule")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no enabled sources to schedule")


def test_a_job_finding_the_lock_held_logs_and_skips(
    app: App, demo, caplog: pytest.LogCaptureFixture
) -> None:
    app.prepare_for_reading()
    with caplog.at_level(logging.INFO, "pipeline"), writer_lock(app.settings.lock_path):
        assert run_job(app, "demo", threading.Event()) == "locked"
    assert "demo: skipped, another run holds the writer lock" in caplog.text
    with app.engine.connect() as connection:
        assert connection.execute(select(Run.id)).all() == []


def test_a_job_leaves_a_source_that_blocked_us_alone_for_a_day(
    app: App, demo, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_SOURCE_BLOCKED", "1")
    assert run_job(app, "demo", threading.Event()) == "partial"
    monkeypatch.delenv("DEMO_SOURCE_BLOCKED")
    with caplog.at_level(logging.INFO, "pipeline"):
        assert run_job(app, "demo", threading.Event()) == "blocked"
    assert "demo: skipped, it blocked us; waiting until " in caplog.text
    with app.engine.connect() as connection:
        assert connection.execute(select(Run.status)).scalars().all() == ["partial"]


def test_a_job_logs_start_end_and_status(
    app: App, demo, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with caplog.at_level(logging.INFO, "pipeline"):
        assert run_job(app, "demo", threading.Event()) == "ok"
        monkeypatch.setenv("DEMO_SOURCE_FAIL", "quota exceeded")
        assert run_job(app, "demo", threading.Event()) == "failed"
        stopping = threading.Event()
        stopping.set()
        assert run_job(app, "demo", stopping) == "skipped"
    messages = [r.getMessage() for r in caplog.records if r.name == "pipeline.scheduler"]
    assert messages == [
        "demo: run started",
        "demo: run 1 ended ok (1 requests, 4 rows)",
        "demo: run started",
        "demo: run 2 ended failed (0 requests, 3 rows): quota exceeded",
        "demo: skipped, the scheduler is stopping",
    ]


# --- the real process ---------------------------------------------------------------------


class Scheduler:
    """`trends schedule` in a subprocess (demo source only), its log lines read as they come."""

    def __init__(self, config: Path, *args: str, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.demo_source", "--config", str(config), "schedule", *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.log.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} in the log:\n{''.join(self.log)}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=20)
        time.sleep(0.1)  # let the reader drain the pipe
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return code


@pytest.fixture
def scheduler_config(tmp_path: Path, sqlite_url: str) -> Path:
    return write_config(tmp_path / "c.toml", sqlite_url)


def test_sigterm_during_a_run_lets_it_finish_then_exits_0(scheduler_config: Path, app: App) -> None:
    running = Scheduler(
        scheduler_config,
        "--run-now",
        env={"DEMO_SOURCE_SCHEDULE": "* * * * *", "DEMO_SOURCE_DELAY": "1.5"},
    )
    try:
        running.wait_for("demo: run started")
        code = running.stop(signal.SIGTERM)  # while the demo fetch is still sleeping
    finally:
        running.process.kill()
    log = "".join(running.log)
    assert code == 0, log
    assert "SIGTERM: stopping the running job at its next request" in log
    assert "demo: run 1 ended ok" in log
    assert "scheduler stopped" in log
    with app.engine.connect() as connection:
        runs = connection.execute(select(Run.command, Run.status, Run.finished_at)).all()
        shares = connection.execute(select(FrameworkShare.framework)).scalars().all()
    assert [(r.command, r.status) for r in runs] == [("collect", "ok")]
    assert runs[0].finished_at is not None
    assert sorted(shares) == ["jax", "pytorch", "tensorflow"]


def test_sigterm_during_a_backoff_wait_stops_the_run_at_once(
    scheduler_config: Path, app: App
) -> None:
    """A 429 with Retry-After: 600 (capped at backoff_max, 300 s by default) must not hold a
    service stop for minutes: the wait ends on SIGTERM, the run ends partial, exit 0."""
    running = Scheduler(
        scheduler_config,
        "--run-now",
        env={"DEMO_SOURCE_SCHEDULE": "* * * * *", "DEMO_SOURCE_RETRY_AFTER": "600"},
    )
    try:
        running.wait_for("retry 1/")
        started = time.monotonic()
        code = running.stop(signal.SIGTERM)
        stopped_in = time.monotonic() - started
    finally:
        running.process.kill()
    log = "".join(running.log)
    assert code == 0 and stopped_in < 10, log
    assert "demo: run 1 ended partial" in log and STOPPED_MESSAGE in log
    with app.engine.connect() as connection:
        runs = connection.execute(select(Run.status, Run.error)).all()
    assert [status for status, _ in runs] == ["partial"]


def successful_collect(app: App, started: datetime) -> None:
    """A successful `collect` of the demo source in the run log, started at ``started``."""
    app.prepare_for_reading()
    with recorded_run(app.engine, "collect", "demo") as run:
        run.rows = 0
    with app.engine.begin() as connection:
        connection.execute(update(Run).values(started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ")))


def test_sigint_while_idle_exits_0_without_running_anything(
    scheduler_config: Path, app: App
) -> None:
    successful_collect(app, datetime.now(UTC))  # collected just now: not due
    running = Scheduler(scheduler_config, env={"DEMO_SOURCE_SCHEDULE": "0 6 * * *"})
    try:
        running.wait_for("scheduler running")
        code = running.stop(signal.SIGINT)
    finally:
        running.process.kill()
    log = "".join(running.log)
    assert code == 0, log
    assert "collect-demo: cron[0 6 * * *] UTC, next run" in log
    assert "run started" not in log
    with app.engine.connect() as connection:
        assert len(connection.execute(select(Run.id)).all()) == 1


def test_a_source_due_at_start_runs_at_once(scheduler_config: Path, app: App) -> None:
    """A fire missed while the scheduler was down (the last success is two days old) is caught
    up at start, as `collect --due` would, not a day (or a week) later."""
    successful_collect(app, datetime.now(UTC) - timedelta(days=2))
    running = Scheduler(scheduler_config, env={"DEMO_SOURCE_SCHEDULE": "0 6 * * *"})
    try:
        running.wait_for("demo: run 2 ended ok")
        code = running.stop(signal.SIGTERM)
    finally:
        running.process.kill()
    assert code == 0, "".join(running.log)


# --- deployment files ---------------------------------------------------------------------


def unit(name: str) -> dict[str, str]:
    """Key=value lines of a systemd unit (comments and section headers dropped)."""
    lines = (ROOT / "docs" / "systemd" / name).read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def test_systemd_units_run_the_documented_commands() -> None:
    collect = unit("trends-collect.service")
    assert collect["Type"] == "oneshot"
    assert collect["ExecStart"].endswith("/bin/trends collect --due")
    assert collect["SuccessExitStatus"] == "75"
    timer = unit("trends-collect.timer")
    assert timer["OnCalendar"] == "*:0/30" and timer["Persistent"] == "true"
    daemon = unit("trends-scheduler.service")
    assert daemon["ExecStart"].endswith("/bin/trends schedule")
    assert daemon["KillSignal"] == "SIGTERM"


def test_readme_has_the_crontab_line() -> None:
    readme = (ROOT / "README.md").read_text()
    line = "*/30 * * * * cd /srv/trends && mkdir -p data && .venv/bin/trends collect --due"
    assert line in readme
    assert "exits 75" in readme
