"""Credentials in configured URLs (``user:password@``, ``?token=``) never leave the program:
not in raw_responses, runs.error, log lines, `Error:` lines or the download cache's sidecars."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.app import App
from pipeline.http import HttpResponse
from pipeline.rawstore import store_response
from pipeline.redact import host_of, redact_text, redact_url
from tests.conftest import query, write_config
from tests.fakes import pwc_data
from tests.fakes.pwc_server import ArchiveFileServer, FakePwcApi

SECRET = "S3cr3tP4ss"
LINKS = pwc_data.load_fixture_links()
PAPERS = pwc_data.fixture_papers(LINKS)


def test_redact_text_replaces_user_info_and_secret_parameters() -> None:
    line = f"GET http://bob:{SECRET}@h:8080/a?x=1&token={SECRET}&Key={SECRET} failed"
    assert (
        redact_text(line) == "GET http://REDACTED@h:8080/a?x=1&token=REDACTED&Key=REDACTED failed"
    )
    assert redact_text("mail bob@example.com at 10:00") == "mail bob@example.com at 10:00"
    assert (
        redact_url(f"https://{SECRET}@h/p?token={SECRET}")[0]
        == "https://REDACTED@h/p?token=REDACTED"
    )
    assert host_of(f"http://bob:{SECRET}@h:8080/a") == "h:8080"
    # Parameter names are matched whatever their case.
    assert redact_url(f"https://h/p?Token={SECRET}&API_KEY={SECRET}")[1] == {
        "Token": "REDACTED",
        "API_KEY": "REDACTED",
    }


def test_request_parameters_are_stored_redacted(app: App) -> None:
    """A collector passing a secret in ``params`` (not in the URL) still stores it redacted."""
    app.prepare_for_reading()
    response = HttpResponse(url="https://h/api", status=200, headers={}, body=b"{}")
    store_response(app.engine, None, "demo", response, {"params": {"token": SECRET, "q": "x"}})
    (params,) = query(app.settings.database.url, "SELECT params FROM raw_responses")[0]
    assert json.loads(params) == {"token": "REDACTED", "q": "x"}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def trends(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, so its log lines are captured as a user sees them."""
    command = [sys.executable, "-m", "pipeline", "--config", str(config), *args]
    env = {
        **os.environ,
        "TRENDS_HTTP_MAX_ATTEMPTS": "2",
        "TRENDS_HTTP_BACKOFF_MAX": "0",
        "TRENDS_HTTP_REQUEST_DELAY": "0",
    }
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def leaks(sqlite_url: str, result: subprocess.CompletedProcess[str], cache: Path) -> list[str]:
    found = [f"output: {line}" for line in result.stderr.splitlines() if SECRET in line]
    for table, column in (("raw_responses", "url"), ("raw_responses", "params"), ("runs", "error")):
        rows = query(sqlite_url, f"SELECT {column} FROM {table} WHERE {column} LIKE '%{SECRET}%'")
        found += [f"{table}.{column}: {row[0]}" for row in rows]
    found += [f"cache: {p.name}" for p in cache.glob("*.json") if SECRET in p.read_text()]
    return found


@pytest.mark.parametrize("case", ["api ok", "api refused", "archive ok", "archive 404"])
def test_credentials_in_urls_are_redacted_everywhere(
    case: str, tmp_path: Path, sqlite_url: str
) -> None:
    archive = pwc_data.write_fixture_archive(tmp_path / "archive")
    files = {"links.parquet": archive["links.parquet"], "papers.parquet": archive["papers.parquet"]}
    with FakePwcApi(LINKS, PAPERS) as api, ArchiveFileServer(files) as server:
        api_url = api.base_url
        if case == "api refused":
            api_url = f"http://127.0.0.1:{unused_port()}/api/v1"
        api_url = api_url.replace("http://", f"http://user:{SECRET}@")
        links = server.url("missing.parquet" if case == "archive 404" else "links.parquet")
        papers = server.url("papers.parquet").replace("http://", f"http://user:{SECRET}@")
        extra = (
            f'[gtrends]\nenabled = false\n[pwc]\ncache_dir = "{tmp_path / "cache"}"\n'
            f'api_url = "{api_url}"\napi_start = "2025-01-01"\n'
            f'links_url = "{links}?token={SECRET}"\npapers_url = "{papers}"\n'
        )
        config = write_config(tmp_path / "trends.toml", sqlite_url, extra)
        source = "pwc-api" if case.startswith("api") else "pwc-archive"
        result = trends(config, "-v", "collect", source)
    assert result.returncode == (0 if case.endswith("ok") else 1), result.stderr
    if case != "api ok":
        assert "127.0.0.1" in result.stderr  # the URLs were mentioned, without their secrets
    assert leaks(sqlite_url, result, tmp_path / "cache") == []
