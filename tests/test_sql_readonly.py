"""`trends sql` is read-only: every kind of write is refused with exit 2 and changes nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from pipeline.app import App
from pipeline.output import FORMATS
from storage.models import FrameworkShare
from storage.upsert import upsert
from tests.conftest import query, run_cli, write_config

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
        "PRAGMA optimize",
        "PRAGMA wal_checkpoint(TRUNCATE)",
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
    assert result.exit_code == 2 and "one SELECT" in result.stderr
    result = run_cli(config, "sql", "WITH gone AS (DELETE FROM runs RETURNING id) SELECT 1")
    assert result.exit_code == 2 and result.stderr.startswith("Error: query refused")
    result = run_cli(config, "sql", "SET TRANSACTION READ WRITE")
    assert result.exit_code == 2
    ok = run_cli(config, "sql", "SELECT count(*) AS n FROM framework_share", "--format", "csv")
    assert ok.stdout.splitlines() == ["n", "0"]


def test_postgresql_runs_one_select_only(postgres_url: str, tmp_path: Path) -> None:
    """psycopg sends a parameterless string as a simple query, which may hold several
    statements: a COMMIT would end the read-only transaction. Each must be refused before it
    runs, for `sql` and for `export --query`."""
    config = write_config(tmp_path / "pg.toml", postgres_url)
    assert run_cli(config, "db", "upgrade").exit_code == 0
    insert = "INSERT INTO runs (command, status, started_at) VALUES ('x', 'ok', now())"
    program = tmp_path / "from_program.txt"
    escapes = [
        f"COMMIT; BEGIN READ WRITE; {insert}; COMMIT; SELECT 1",
        f"SELECT 1; COMMIT; BEGIN READ WRITE; {insert}; COMMIT",
        f"COPY (SELECT 1) TO PROGRAM 'touch {program}'",
        f"COPY (SELECT 1) TO '{tmp_path / 'server_file.csv'}'",
    ]
    for statement in escapes:
        for command in (["sql", statement], ["export", "--query", statement, "-o", "x.csv"]):
            result = run_cli(config, *command, "--format", "csv")
            assert result.exit_code == 2, (command, result.output)
            assert result.stderr.startswith("Error: query refused: ")
            assert "one SELECT, WITH … SELECT, VALUES or TABLE query is allowed" in result.stderr
            assert result.stderr.count("\n") == 1
    assert query(postgres_url, "SELECT count(*) FROM runs") == [(0,)]
    assert not program.exists() and not (tmp_path / "server_file.csv").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_error_part_way_is_one_line_exit_2(
    backend: str, sqlite_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    config = write_config(tmp_path / "db.toml", url)
    assert run_cli(config, "db", "upgrade").exit_code == 0
    # The error comes with row 20,001, after the first chunk of rows was read.
    failing = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
        "SELECT i, 1 / (20001 - i) AS x FROM n"
    )
    if backend == "sqlite":  # SQLite's 1/0 is NULL; an integer overflow is an error
        failing = failing.replace("1 / (20001 - i)", "abs(-9223372036854775807 - (i = 20001))")
    out = tmp_path / "out.csv"
    result = run_cli(config, "export", "--query", failing, "--format", "csv", "-o", str(out))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: query failed: ")
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_a_reader_that_stops_early_ends_the_output_quietly(filled: App, config_file: Path) -> None:
    """`trends sql … | head -1`: the pipe closes mid-output; no error line, exit 0."""
    many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
    command = [sys.executable, "-m", "pipeline", "--config", str(config_file), "sql"]
    process = subprocess.Popen(
        [*command, many + "SELECT i FROM n", "--format", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"i\n"
    process.stdout.close()  # what `head -1` does after its line
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None and process.stderr.read() == b""


def test_ctrl_c_stops_a_long_query_with_one_line(filled: App, config_file: Path) -> None:
    """SQLite runs a query inside one C call; without a progress callback SIGINT would wait
    for it to end (forever, for this one)."""
    endless = (
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"
    )
    command = [sys.executable, "-m", "pipeline", "--config", str(config_file), "sql", endless]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # start-up and into the query
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 1
    assert stderr == "Error: interrupted\n"


def test_the_same_query_prints_the_same_on_both_backends(database_url: str, tmp_path: Path) -> None:
    """PostgreSQL's booleans and NUMERIC are printed as SQLite's 1/0 and floats; binary values
    as hex on both."""
    config = write_config(tmp_path / "db.toml", database_url)
    assert run_cli(config, "db", "upgrade").exit_code == 0
    sql = (
        "SELECT 1 = 1 AS yes, 1 = 2 AS no, ROUND(CAST(18 AS NUMERIC), 1) AS percent, "
        + ("x'ff00'" if database_url.startswith("sqlite") else "'\\xff00'::bytea")
        + " AS raw"
    )
    shown = {fmt: run_cli(config, "sql", sql, "--format", fmt).stdout for fmt in FORMATS}
    assert shown["csv"] == "yes,no,percent,raw\n1,0,18.0,ff00\n"
    assert json.loads(shown["json"]) == [{"yes": 1, "no": 0, "percent": 18.0, "raw": "ff00"}]
    assert shown["table"].splitlines()[-1].split() == ["1", "0", "18", "ff00"]
