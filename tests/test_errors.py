"""Unforeseen failures still end as one `Error:` line and exit 1, never a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from pipeline import reports
from pipeline.sources import SOURCES
from tests.conftest import run_cli, write_config


def test_unexpected_error_in_a_command_is_one_line(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("something odd\nSELECT … (driver detail on more lines)")

    monkeypatch.setattr(reports, "recent_runs", broken)
    result = run_cli(config_file, "runs")
    assert result.exit_code == 1
    assert result.stderr == "Error: ValueError: something odd (run with -v for details)\n"


def test_aggregate_names_the_failing_source_and_rebuilds_the_others(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilt = []

    def broken(app: object) -> int:
        raise RuntimeError("no such column: x\n[SQL: SELECT x]")

    monkeypatch.setattr(
        type(SOURCES["pwc-archive"]),
        "aggregate",
        lambda self, app: (
            broken(app) if self.name == "pwc-archive" else rebuilt.append(self.name) or 0
        ),
    )
    result = run_cli(config_file, "aggregate")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: pwc-archive: RuntimeError: no such column: x"
    )
    assert rebuilt == ["gtrends", "pwc-api"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shares", "--format", "xml"], "Invalid value for '--format'"),
        (["runs", "--limit", "0"], "Invalid value for '--limit'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["export", "--table", "runs", "--format", "csv"], "Missing option '-o'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(config_file: Path, args: list[str], message) -> None:
    """Click's own errors too: not its four lines of usage, hint, blank and error."""
    result = run_cli(config_file, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1
    assert "--help')" in result.stderr  # where to look


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2003-06-01", "--end", "2003-07-01"], "Google Trends data begins on 2004"),
        (["--start", "2999-01-01"], "--start 2999-01-01 is after the latest day Google has"),
        (["--start", "2024-05-01", "--end", "2024-01-01"], "--end 2024-01-01 is before --start"),
    ],
)
def test_backfill_gtrends_checks_its_range_before_any_request(
    config_file: Path, args: list[str], message: str
) -> None:
    result = run_cli(config_file, "backfill", "gtrends", *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["status"], ["sql", "SELECT 1"], ["aggregate"]])
def test_a_database_file_that_is_not_sqlite_is_named(tmp_path: Path, command: list[str]) -> None:
    database = tmp_path / "notes.db"
    database.write_text("my notes, not a database\n")
    config = write_config(tmp_path / "c.toml", f"sqlite:///{database}")
    result = run_cli(config, *command)
    assert result.exit_code == 2
    assert result.stderr == f"Error: [database] url: {database} is not a SQLite database\n"
    assert database.read_text() == "my notes, not a database\n"


def test_an_archive_url_of_another_scheme_is_refused(config_file: Path) -> None:
    result = run_cli(config_file, "backfill", "pwc", "--links", "ftp://x/y.parquet")
    assert result.exit_code == 1
    assert "ftp://x/y.parquet: unsupported URL scheme" in result.stderr


def test_a_database_error_is_named_with_the_drivers_message(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT …", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(reports, "recent_runs", locked)
    result = run_cli(config_file, "runs")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: database error: database is locked (OperationalError) (run with -v for details)\n"
    )


def test_a_closed_standard_output_is_treated_as_no_reader(config_file: Path) -> None:
    """`trends runs >&-`: nothing to write to, as with `| head`: quietly done, exit 0."""
    trends = Path(sys.executable).with_name("trends")
    result = subprocess.run(
        [str(trends), "--config", str(config_file), "runs"],
        preexec_fn=lambda: os.close(1),  # noqa: PLW1509 - no threads in the child yet
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")
