"""`trends sql` is read-only: every kind of write is refused with exit 2 and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from pipeline.app import App
from storage.models import FrameworkShare
from storage.upsert import upsert
from tests.conftest import run_cli, write_config

ROWS = [
    {
        "source": "pwc",
        "variant": "all",
        "granularity": "quarter",
        "period_start": "2024-01-01",
        "framework": f,
        "value": v,
        "share": v / 10,
    }
    for f, v in (("pytorch", 6.0), ("tensorflow", 3.0), ("other", 1.0))
]


@pytest.fixture
def filled(app: App) -> App:
    with app.writing(), app.engine.begin() as connection:
        upsert(
            connection,
            FrameworkShare,
            ROWS,
            ["source", "variant", "granularity", "period_start", "framework"],
        )
    return app


def counts(app: App) -> tuple[int, int, list[str]]:
    with app.engine.connect() as connection:
        shares = connection.execute(text("SELECT count(*) FROM framework_share")).scalar()
        runs = connection.execute(text("SELECT count(*) FROM runs")).scalar()
        tables = sorted(
            connection.execute(
                text("SELECT name FROM sqlite_master WHERE type IN ('table','view')")
            ).scalars()
        )
    return shares, runs, tables


def test_select_prints_rows_in_each_format(filled: App, config_file: Path) -> None:
    query = "SELECT framework, share FROM framework_share ORDER BY share DESC"
    table = run_cli(config_file, "sql", query)
    assert table.exit_code == 0
    assert table.stdout.splitlines()[2].split() == ["pytorch", "0.6"]
    as_json = json.loads(run_cli(config_file, "sql", query, "--format", "json").stdout)
    assert as_json[0] == {"framework": "pytorch", "share": 0.6}
    as_csv = run_cli(config_file, "sql", query, "--format", "csv").stdout
    assert as_csv.splitlines() == ["framework,share", "pytorch,0.6", "tensorflow,0.3", "other,0.1"]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM framework_share",
        "UPDATE framework_share SET share = 0",
        "INSERT INTO runs (command, status, started_at) VALUES ('x', 'ok', 'now')",
        "DROP TABLE framework_share",
        "CREATE TABLE evil (x)",
        "CREATE VIEW evil AS SELECT 1",
        "ALTER TABLE runs ADD COLUMN evil",
        "ATTACH DATABASE 'other.db' AS other",
        "PRAGMA user_version = 7",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA wal_checkpoint",
        "VACUUM",
        "REINDEX",
        "SELECT load_extension('x')",
        "WITH x AS (SELECT 1) DELETE FROM framework_share",
        "SELECT 1; DELETE FROM framework_share",
    ],
)
def test_writes_are_refused_with_exit_2_and_nothing_changes(
    filled: App, config_file: Path, tmp_path: Path, statement: str
) -> None:
    before = counts(filled)
    result = run_cli(config_file, "sql", statement)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: query refused")
    assert result.stderr.count("\n") == 1
    assert counts(filled) == before
    assert not (tmp_path / "other.db").exists()
    with filled.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA user_version").scalar() == 0
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_reading_pragmas_and_views_are_allowed(filled: App, config_file: Path) -> None:
    assert run_cli(config_file, "sql", "PRAGMA table_info(runs)").exit_code == 0
    assert run_cli(config_file, "sql", "PRAGMA user_version").exit_code == 0


def test_sql_error_is_one_line_exit_2(filled: App, config_file: Path) -> None:
    result = run_cli(config_file, "sql", "SELECT nope FROM framework_share")
    assert result.exit_code == 2
    assert result.stderr == "Error: query refused: no such column: nope\n"


def test_sql_is_read_only_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "pg.toml", postgres_url)
    assert run_cli(config, "db", "upgrade").exit_code == 0
    result = run_cli(config, "sql", "DELETE FROM runs")
    assert result.exit_code == 2 and "read-only" in result.stderr
    result = run_cli(config, "sql", "SET TRANSACTION READ WRITE")
    assert result.exit_code == 2
    ok = run_cli(config, "sql", "SELECT count(*) AS n FROM framework_share", "--format", "csv")
    assert ok.stdout.splitlines() == ["n", "0"]
