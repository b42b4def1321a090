"""The writer lock between processes, and the run log (including runs left by a killed process)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from pipeline.app import App
from pipeline.config import load_settings
from pipeline.errors import LockHeld
from pipeline.runlog import STALE_RUN_ERROR, recorded_run, start_run, writer_lock
from storage.models import Run
from tests.conftest import run_cli, write_config

ROOT = Path(__file__).resolve().parent.parent

HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline.runlog import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def lock_holder(app: App):
    """Another process holding the writer lock of ``app``'s database."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(app.settings.lock_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_second_writer_exits_75_at_once_and_does_nothing(
    app: App, config_file: Path, lock_holder
) -> None:
    started = time.monotonic()
    result = run_cli(config_file, "db", "upgrade")
    assert result.exit_code == 75
    assert result.stderr.startswith("Error: another run holds the writer lock")
    assert time.monotonic() - started < 5
    assert not Path(app.settings.database.url.removeprefix("sqlite:///")).exists()


def test_lock_is_free_again_after_the_holder_dies(app: App, lock_holder) -> None:
    with pytest.raises(LockHeld), writer_lock(app.settings.lock_path):
        pass
    lock_holder.kill()
    lock_holder.wait()
    with writer_lock(app.settings.lock_path):
        pass


def test_lock_file_sits_beside_the_sqlite_database(app: App, tmp_path: Path) -> None:
    assert app.settings.lock_path == tmp_path / "trends.db.lock"


def test_recorded_run_ends_ok_or_failed_with_the_error(app: App) -> None:
    with app.writing():
        with recorded_run(app.engine, "collect", "gtrends") as run:
            run.requests, run.rows = 3, 7
        with pytest.raises(ValueError), recorded_run(app.engine, "collect", "pwc-api"):
            raise ValueError("bad payload")
    with app.engine.connect() as connection:
        rows = connection.execute(
            select(
                Run.status, Run.requests, Run.rows, Run.error, Run.started_at, Run.finished_at
            ).order_by(Run.id)
        ).all()
    assert [(r.status, r.requests, r.rows, r.error) for r in rows] == [
        ("ok", 3, 7, None),
        ("failed", 0, 0, "bad payload"),
    ]
    assert all(r.finished_at and r.finished_at >= r.started_at for r in rows)


def test_run_left_running_by_a_killed_process_is_failed_by_the_next_run(app: App) -> None:
    with app.writing():
        orphan = start_run(app.engine, "backfill", "gtrends")  # never finished: "killed"
    with app.writing():
        pass
    with app.engine.connect() as connection:
        run = connection.execute(select(Run.status, Run.error).where(Run.id == orphan.id)).one()
    assert run.status == "failed"
    assert run.error == STALE_RUN_ERROR


def test_runs_command_lists_newest_first(app: App, config_file: Path) -> None:
    with app.writing():
        for source in ("gtrends", "pwc-api"):
            with recorded_run(app.engine, "collect", source):
                pass
    result = run_cli(config_file, "runs", "--format", "csv", "--limit", "1")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("id,command,source,status")
    assert len(lines) == 2 and ",pwc-api,ok," in lines[1]


def test_writers_on_different_hosts_exclude_each_other_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two hosts have different lock files; the PostgreSQL advisory lock still excludes."""
    host_a = App(load_settings(write_config(tmp_path / "a.toml", postgres_url)))
    host_b = App(load_settings(write_config(tmp_path / "b.toml", postgres_url)))
    host_b.settings.database.lock_path = str(tmp_path / "other-host.lock")
    with (
        host_a.writing(),
        pytest.raises(LockHeld, match="writer lock on this database"),
        host_b.writing(),
    ):
        pass
    with host_b.writing():  # released when host A finished
        pass
    host_a.close()
    host_b.close()


@pytest.mark.parametrize(
    "command",
    [
        ["sql", "SELECT count(*) FROM runs"],
        ["shares"],
        ["runs"],
        ["status"],
        ["export", "--table", "runs", "--format", "csv", "-o", "-"],
    ],
)
def test_readers_do_not_wait_for_a_writer(
    app: App, config_file: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A writer's transaction (BEGIN IMMEDIATE, as every collector's) must not hold up reading
    commands: they read through read-only connections, schema check included."""
    app.prepare_for_reading()
    monkeypatch.setattr("storage.db.BUSY_TIMEOUT_MS", 200)  # a wait would fail, not hang
    path = load_settings(config_file).database.url.removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE source_state SET value = value")  # any write: the lock is taken
    try:
        if command[0] == "export":
            command = [*command[:-1], str(config_file.with_name("runs.csv"))]
        result = run_cli(config_file, *command)
        assert result.exit_code in (0, 1), result.output  # status: 1 = never collected
        assert "locked" not in result.stderr
    finally:
        writer.rollback()
        writer.close()


OTHER_PROGRAM_READS = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])  # read-write, as the sqlite3 shell or a notebook
print(",".join(row[0] for row in connection.execute("SELECT command FROM runs ORDER BY id")))
connection.close()
"""


def _other_program_reads(database: str) -> list[str]:
    command = [sys.executable, "-c", OTHER_PROGRAM_READS, database]
    return (
        subprocess.run(command, check=True, capture_output=True, text=True)
        .stdout.strip()
        .split(",")
    )


def test_another_program_closing_the_database_loses_nothing_we_commit(app: App) -> None:
    """`collect --due` and the scheduler check the database file while their write connection
    is open. Checking it with open()/close() dropped that connection's POSIX locks, so another
    program closing its connection deleted the WAL still in use: what was committed after that
    was invisible to every other process (and lost when they wrote, or we crashed)."""
    database = app.settings.database.url.removeprefix("sqlite:///")
    with app.writing():
        start_run(app.engine, "before", "")
        app.prepare_for_reading()  # the check, with the write connection open
        assert _other_program_reads(database) == ["before"]
        start_run(app.engine, "after", "")
        assert _other_program_reads(database) == ["before", "after"]
    app.close()


def test_ctrl_c_inside_a_driver_call_records_the_run_at_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while fetching inside a write transaction, the connection keeps its write
    lock until the statement the traceback references is freed; recording the run must not
    wait the busy timeout for it (then fail with "database is locked")."""
    monkeypatch.setattr("storage.db.BUSY_TIMEOUT_MS", 2000)
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n"

    def fetch_until_interrupted() -> None:
        with app.engine.begin() as connection:
            connection.execute(text("UPDATE source_state SET value = value"))  # write lock
            result = connection.execute(text(endless))
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            while True:
                result.fetchone()

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    try:
        with (
            app.writing(),
            pytest.raises(KeyboardInterrupt),
            recorded_run(app.engine, "aggregate"),
        ):
            fetch_until_interrupted()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 1.5
    with app.engine.connect() as connection:
        assert connection.execute(select(Run.status, Run.error)).one() == ("failed", "interrupted")


def test_a_lock_file_that_cannot_be_created_is_not_reported_as_held(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TRENDS_DATABASE_LOCK_PATH", str(blocker / "trends.lock"))
    result = run_cli(config_file, "aggregate")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot create the writer lock file ")
    assert result.stderr.count("\n") == 1


def test_sigterm_ends_a_command_like_ctrl_c(config_file: Path, app: App) -> None:
    """A service stop or `kill` mid-run: one Error line, the run recorded as interrupted (not
    left `running` for the next writer to find)."""
    app.prepare_for_reading()
    command = [sys.executable, "-m", "tests.demo_source", "--config", str(config_file)]
    process = subprocess.Popen(
        [*command, "collect", "demo"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DEMO_SOURCE_DELAY": "30", "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 20
    while not runs(app) and time.monotonic() < deadline:  # the run has started
        time.sleep(0.1)
    process.terminate()
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 1
    assert stderr.splitlines()[-1] == "Error: interrupted"
    assert runs(app) == [("failed", "interrupted")]


def runs(app: App) -> list[tuple]:
    with app.readonly_engine.connect() as connection:  # never holds up the writer
        return [tuple(row) for row in connection.execute(select(Run.status, Run.error))]
