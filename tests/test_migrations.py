"""Migrations: a fresh database reaches head, an existing one is left alone, models match."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url, text

from pipeline.app import App
from pipeline.config import load_settings
from storage import migrate
from storage.db import make_engine
from storage.models import Base
from tests.conftest import run_cli, write_config

PUBLIC_COLUMNS = {
    "framework_share": [
        "id",
        "source",
        "variant",
        "granularity",
        "period_start",
        "framework",
        "value",
        "share",
    ],
    "gtrends_series": [
        "id",
        "framework",
        "geo",
        "category",
        "property",
        "resolution",
        "period_start",
        "value",
        "observations",
    ],
    "runs": [
        "id",
        "command",
        "source",
        "status",
        "started_at",
        "finished_at",
        "requests",
        "rows",
        "error",
    ],
}


def test_fresh_database_is_migrated_to_head_with_the_public_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    before, after = migrate.upgrade(engine)
    assert before is None
    assert after == migrate.head_revision()
    inspector = inspect(engine)
    for table, columns in PUBLIC_COLUMNS.items():
        assert [c["name"] for c in inspector.get_columns(table)] == columns
    raw = {c["name"] for c in inspector.get_columns("raw_responses")}
    assert {"run_id", "url", "params", "status", "fetched_at", "body"} <= raw
    engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_existing_database_keeps_its_rows_and_upgrade_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (command, status, started_at, requests, rows) "
                "VALUES ('collect', 'ok', '2026-01-01T00:00:00Z', 1, 2)"
            )
        )
    assert migrate.upgrade(engine) == (migrate.head_revision(), migrate.head_revision())
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    engine.dispose()


PWC_LINK_ROWS = [
    (
        "https://paperswithcode.com/paper/a",
        "https://github.com/o/a",
        "1234.5678",
        True,
        "pytorch",
        "2020-01-02",
    ),
    ("https://paperswithcode.com/paper/b", "https://gitlab.com/o/b", None, False, "tf", None),
]
PWC_LINK_COLUMNS = "paper_url, repo_url, arxiv_id, is_official, framework, published"


def _insert_pwc_links(connection, rows: list[tuple]) -> None:
    connection.execute(
        text(f"INSERT INTO pwc_links ({PWC_LINK_COLUMNS}) VALUES (:p, :r, :a, :o, :f, :d)"),
        [dict(zip("praofd", row, strict=True)) for row in rows],
    )


def _pwc_links(engine) -> list[tuple]:
    with engine.connect() as connection:
        query = f"SELECT {PWC_LINK_COLUMNS} FROM pwc_links ORDER BY paper_url"
        return [tuple(row) for row in connection.execute(text(query))]


def _assert_pwc_links_keyed_by_urls(engine) -> None:
    """pwc_links as 0003 made it: keyed by (paper_url, repo_url), WITHOUT ROWID on SQLite."""
    key = inspect(engine).get_pk_constraint("pwc_links")
    assert key["constrained_columns"] == ["paper_url", "repo_url"]
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'pwc_links'"
            ).scalar()
        assert "WITHOUT ROWID" in sql


def test_pwc_links_keep_their_rows_when_keyed_by_urls_and_back(database_url: str) -> None:
    """0003 replaces the surrogate id and unique index by a (paper_url, repo_url) key."""
    engine = make_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0002")
        _insert_pwc_links(connection, PWC_LINK_ROWS)
        command.upgrade(migrate.alembic_config(connection), "0004")  # 0005 drops pwc_links
    assert _pwc_links(engine) == PWC_LINK_ROWS
    _assert_pwc_links_keyed_by_urls(engine)

    with engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "0002")
    assert _pwc_links(engine) == PWC_LINK_ROWS
    assert "id" in [c["name"] for c in inspect(engine).get_columns("pwc_links")]
    assert migrate.upgrade(engine) == ("0002", migrate.head_revision())
    engine.dispose()


def _source_state(engine) -> list[tuple]:
    with engine.connect() as connection:
        query = "SELECT source, key, value FROM source_state ORDER BY source, key"
        return [tuple(row) for row in connection.execute(text(query))]


def test_pwc_links_become_daily_counts_and_back(database_url: str) -> None:
    """0005 replaces the per-link table by counts per (published, framework, is_official);
    downgrade brings back an empty pwc_links. Both ways the archive fingerprint is forgotten,
    so that the next import reads the archive again."""
    paper = "https://paperswithcode.com/paper/"
    links = [
        (f"{paper}a", "https://github.com/o/a1", "2001.00001", False, "pytorch", "2020-01-02"),
        (f"{paper}a", "https://github.com/o/a2", "2001.00001", False, "pytorch", "2020-01-02"),
        (f"{paper}b", "https://github.com/o/b", None, False, "pytorch", "2020-01-02"),
        (f"{paper}c", "https://github.com/o/c", None, True, "pytorch", "2020-01-02"),
        (f"{paper}d", "https://github.com/o/d", None, False, "tf", "2020-01-02"),
        (f"{paper}e", "https://github.com/o/e", None, False, "pytorch", "2020-01-03"),
        (f"{paper}f", "https://gitlab.com/o/f", None, False, "tf", None),
        (f"{paper}g", "https://gitlab.com/o/g", None, False, "tf", None),
    ]
    state = [
        ("pwc-archive", "archive_fingerprint", "links:1:2|papers:3:4", "2026-01-01T00:00:00Z"),
        ("pwc-archive", "other", "kept", "2026-01-01T00:00:00Z"),
    ]
    engine = make_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0004")
        _insert_pwc_links(connection, links)
        connection.execute(
            text(
                "INSERT INTO source_state (source, key, value, updated_at) VALUES (:s, :k, :v, :u)"
            ),
            [dict(zip("skvu", row, strict=True)) for row in state],
        )
    assert migrate.upgrade(engine) == ("0004", migrate.head_revision())
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT published, framework, is_official, links FROM pwc_link_counts")
        )
        rows = [tuple(row) for row in counts]
    # One row per group; compared as a set since SQLite returns the flag as 0/1 (== False/True).
    assert len(rows) == 5
    assert set(rows) == {
        ("2020-01-02", "pytorch", False, 3),
        ("2020-01-02", "pytorch", True, 1),
        ("2020-01-02", "tf", False, 1),
        ("2020-01-03", "pytorch", False, 1),
        (None, "tf", False, 2),
    }
    assert "pwc_links" not in inspect(engine).get_table_names()
    assert _source_state(engine) == [state[1][:3]]
    with engine.begin() as connection:  # as an import would record it
        connection.execute(
            text(
                "INSERT INTO source_state (source, key, value, updated_at) VALUES (:s, :k, :v, :u)"
            ),
            dict(zip("skvu", state[0], strict=True)),
        )

    with engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "0004")
    tables = inspect(engine).get_table_names()
    assert "pwc_links" in tables and "pwc_link_counts" not in tables
    assert _pwc_links(engine) == []
    assert inspect(engine).get_pk_constraint("pwc_links")["name"] == "pk_pwc_links"
    _assert_pwc_links_keyed_by_urls(engine)
    assert _source_state(engine) == [("pwc-archive", "other", "kept")]

    with engine.begin() as connection:
        _insert_pwc_links(connection, links[:2])
    assert migrate.upgrade(engine) == ("0004", migrate.head_revision())
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT published, framework, is_official, links FROM pwc_link_counts")
        )
        assert [tuple(row) for row in rows] == [("2020-01-02", "pytorch", False, 2)]
    engine.dispose()


def test_db_upgrade_command_on_fresh_and_existing_database(tmp_path, sqlite_url) -> None:
    config = write_config(tmp_path / "c.toml", sqlite_url)
    first = run_cli(config, "db", "upgrade")
    second = run_cli(config, "db", "upgrade")
    assert first.exit_code == second.exit_code == 0
    assert f"revision {migrate.head_revision()}" in second.stdout


def test_other_commands_apply_pending_migrations_themselves(config_file) -> None:
    assert run_cli(config_file, "runs").exit_code == 0
    app = App(load_settings(config_file))
    assert not migrate.pending(app.engine)
    app.close()


@pytest.mark.parametrize("command", [["runs"], ["aggregate"], ["db", "upgrade"]])
def test_a_database_of_a_newer_version_is_refused_and_left_alone(
    database_url: str, tmp_path, command: list[str]
) -> None:
    config = write_config(tmp_path / "c.toml", database_url)
    assert run_cli(config, "db", "upgrade").exit_code == 0
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    result = run_cli(config, *command)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: the database is at schema revision '9999_future', which this version of "
        "framework-trends does not know"
    )
    assert result.stderr.count("\n") == 1
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    engine.dispose()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # The WAL is cut back after checkpoints instead of keeping its largest size.
        assert connection.exec_driver_sql("PRAGMA journal_size_limit").scalar() == 8 * 2**20
    engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_when_they_begin(sqlite_url: str) -> None:
    """BEGIN IMMEDIATE: a transaction that reads before it writes cannot fail half-way with
    "database is locked" when another writer got in between its read and its write."""
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("SELECT 1")  # no write yet
        other = sqlite3.connect(make_url(sqlite_url).database, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    engine.dispose()


HOLD_LOCK_BRIEFLY = """
import sys, time
from pathlib import Path
from pipeline.runlog import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(1.5)
"""


def test_a_reader_waits_for_a_migration_in_progress(config_file, tmp_path) -> None:
    """While another process holds the lock and the schema is behind, it is migrating: a
    reading command waits for it instead of exiting 75 (a monitoring alarm)."""
    app = App(load_settings(config_file))
    migrate.upgrade(app.engine)
    with app.engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "0002")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK_BRIEFLY, str(app.settings.lock_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = run_cli(config_file, "runs")
    finally:
        holder.wait(timeout=30)
    app.close()
    assert result.exit_code == 0, result.output
    assert not migrate.pending(App(load_settings(config_file)).engine)


def test_sqlite_ddl_is_transactional(sqlite_url: str) -> None:
    """The pysqlite fix: DDL inside a rolled-back transaction leaves no table behind."""
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        transaction.rollback()
    assert "scratch" not in inspect(engine).get_table_names()
    engine.dispose()
