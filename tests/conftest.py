"""Shared fixtures: a configuration per test (temporary SQLite file, no delays) and a
PostgreSQL lane that runs when TRENDS_TEST_POSTGRES_URL points at a server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipeline.app import App
from pipeline.cli import main
from pipeline.errors import one_line

POSTGRES_ENV = "TRENDS_TEST_POSTGRES_URL"


def write_config(path: Path, database_url: str, extra: str = "") -> Path:
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        "[http]\nrequest_delay = 0.0\nmax_attempts = 3\nbackoff_base = 0.01\nbackoff_max = 0.05\n"
        f"\n{extra}",
        encoding="utf-8",
    )
    return path


def gtrends_config(
    path: Path, database_url: str, base_url: str, gtrends: str = "", extra: str = ""
) -> Path:
    """A configuration with Google Trends at ``base_url`` (a fake) and the PwC sources off;
    ``gtrends`` adds [gtrends] keys, ``extra`` more sections."""
    pwc_off = "[pwc]\narchive_enabled = false\napi_enabled = false\n"
    text = f'[gtrends]\nbase_url = "{base_url}"\n{gtrends}{pwc_off}{extra}'
    return write_config(path, database_url, text)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's TRENDS_* variables or writes into the work tree."""
    for name in list(os.environ):
        if name.startswith("TRENDS_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trends.db'}"


@pytest.fixture
def config_file(tmp_path: Path, sqlite_url: str) -> Path:
    return write_config(tmp_path / "trends.toml", sqlite_url)


@pytest.fixture
def app(config_file: Path) -> Iterator[App]:
    application = App.from_config(config_file)
    yield application
    application.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL lane skipped: set {POSTGRES_ENV} (the CI script starts a server)")
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "no server reachable"
        # Set but unreachable is a broken setup, not an absent lane: a green run must mean the
        # PostgreSQL tests ran.
        pytest.fail(f"{POSTGRES_ENV} is set but not reachable: {one_line(error)}")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"trends_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Both backends: storage tests run once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


def query(url: str, sql: str) -> list[tuple]:
    """Rows of ``sql`` on the database at ``url``, through a short-lived engine."""
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql))]
    engine.dispose()
    return rows


def run_cli(config: Path | None, *args: str, input: str | None = None) -> Result:
    prefix = ["--config", str(config)] if config else []
    return CliRunner().invoke(main, [*prefix, *args], input=input, catch_exceptions=False)
