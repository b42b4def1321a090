"""PostgreSQL runs give up instead of hanging: a connect timeout and a lock timeout, as the
busy timeout does for SQLite; both can be set in the database URL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage.db import BUSY_TIMEOUT_MS, CONNECT_TIMEOUT_S, make_engine, postgres_connect_args
from tests.conftest import query, run_cli, write_config


def test_defaults_and_url_settings() -> None:
    plain = postgres_connect_args("postgresql+psycopg://u@db.example/trends")
    assert plain == {
        "options": f"-c lock_timeout={BUSY_TIMEOUT_MS}",
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    readonly = postgres_connect_args("postgresql+psycopg://u@db/trends", readonly=True)
    assert readonly["options"] == (
        f"-c lock_timeout={BUSY_TIMEOUT_MS} -c default_transaction_read_only=on"
    )
    given = postgres_connect_args(
        "postgresql+psycopg://u@db/trends?connect_timeout=3&options=-c%20lock_timeout%3D5s"
    )
    assert "connect_timeout" not in given  # the URL's own reaches libpq unchanged
    assert given["options"].endswith("-c lock_timeout=5s")  # last one wins in libpq


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers, like a hung server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_server_that_never_answers_ends_the_command(silent_server: int, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://trends@127.0.0.1:{silent_server}/trends?connect_timeout=1"
    config = write_config(tmp_path / "pg.toml", url)
    started = time.monotonic()
    result = run_cli(config, "aggregate")
    assert time.monotonic() - started < 15  # libpq may try twice (IPv4 and a retry)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: database error: connection timeout expired")
    assert "Traceback" not in result.stderr


def test_server_settings_reach_the_session(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(text("SHOW lock_timeout")).scalar() == "30s"
    engine.dispose()


def test_a_table_lock_held_elsewhere_fails_the_step_instead_of_waiting(
    postgres_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pg.toml", postgres_url)
    assert run_cli(config, "aggregate").exit_code == 0  # schema in place
    quick = write_config(tmp_path / "quick.toml", postgres_url + "?options=-c%20lock_timeout%3D200")
    other = create_engine(postgres_url)
    with other.begin() as connection:  # someone's long transaction holding the table
        connection.execute(text("LOCK TABLE framework_share IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        result = run_cli(quick, "aggregate")
        waited = time.monotonic() - started
    other.dispose()
    assert waited < 20
    assert result.exit_code == 1
    assert (
        "Error: pwc-archive: database error: canceling statement due to lock timeout "
        "(LockNotAvailable)" in result.stderr.splitlines()
    )
    assert "Traceback" not in result.stderr
    assert query(postgres_url, "SELECT count(*) FROM framework_share") == [(0,)]
