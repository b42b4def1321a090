"""Google Trends variants: each (geo, category, property) has its own shares, and changing the
configuration never deletes what was computed for another combination."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.config import GtrendsSettings
from tests.conftest import gtrends_config, query, run_cli
from tests.fakes.gtrends_server import FakeGoogleTrends

BACKFILL = ["backfill", "gtrends", "--start", "2024-01-01", "--end", "2024-04-30"]
SHARES = (
    "SELECT id, source, variant, granularity, period_start, framework, value, share "
    "FROM framework_share WHERE source = 'gtrends' AND variant = '{}' ORDER BY id"
)
SERIES = "SELECT * FROM gtrends_series ORDER BY id"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleTrends]:
    today = datetime.now(UTC).date()
    monkeypatch.setenv("TRENDS_TODAY", today.isoformat())  # one day, even across midnight
    with FakeGoogleTrends(today=today) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str, fake: FakeGoogleTrends) -> Path:
    return gtrends_config(tmp_path / "trends.toml", sqlite_url, fake.base_url)


def variants(url: str) -> set[str]:
    rows = query(url, "SELECT DISTINCT variant FROM framework_share WHERE source = 'gtrends'")
    return {variant for (variant,) in rows}


@pytest.mark.parametrize(
    ("geo", "category", "prop", "expected"),
    [
        ("", 0, "", "world"),
        ("US", 0, "", "US"),
        ("", 0, "news", "world/news"),
        ("US", 5, "", "US/cat5"),
        ("DE", 5, "youtube", "DE/youtube/cat5"),
    ],
)
def test_variant_names_the_geo_and_any_non_default_property_or_category(
    geo: str, category: int, prop: str, expected: str
) -> None:
    assert GtrendsSettings(geo=geo, category=category, property=prop).variant == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRENDS_GTRENDS_PROPERTY", "news"),
        ("TRENDS_GTRENDS_CATEGORY", "5"),
        ("TRENDS_GTRENDS_GEO", "US"),
    ],
)
def test_aggregate_of_an_unfetched_combination_deletes_nothing(
    config, sqlite_url, monkeypatch, caplog, variable: str, value: str
) -> None:
    assert run_cli(config, *BACKFILL).exit_code == 0
    shares, series = query(sqlite_url, SHARES.format("world")), query(sqlite_url, SERIES)
    assert shares

    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.INFO, logger="pipeline.sources.gtrends.aggregate"):
        result = run_cli(config, "aggregate")
    assert result.exit_code == 0, result.output
    assert query(sqlite_url, SHARES.format("world")) == shares  # row for row, ids included
    assert query(sqlite_url, SERIES) == series
    assert variants(sqlite_url) == {"world"}
    assert "nothing stored" in caplog.text


def test_web_and_news_shares_live_side_by_side(config, sqlite_url, monkeypatch) -> None:
    assert run_cli(config, *BACKFILL).exit_code == 0
    web = query(sqlite_url, SHARES.format("world"))

    monkeypatch.setenv("TRENDS_GTRENDS_PROPERTY", "news")
    result = run_cli(config, *BACKFILL)
    assert result.exit_code == 0, result.output
    fetched = query(sqlite_url, "SELECT DISTINCT property FROM gtrends_fetches ORDER BY 1")
    assert fetched == [("",), ("news",)]
    assert variants(sqlite_url) == {"world", "world/news"}
    assert query(sqlite_url, SHARES.format("world")) == web
    news = query(sqlite_url, SHARES.format("world/news"))
    assert {row[3] for row in news} == {"day", "week", "month"}
    properties = query(sqlite_url, "SELECT DISTINCT property FROM gtrends_series ORDER BY 1")
    assert properties == [("",), ("news",)]

    # Back to the default configuration: its variant is still `world`, and news stays.
    monkeypatch.delenv("TRENDS_GTRENDS_PROPERTY")
    assert run_cli(config, "aggregate").exit_code == 0
    assert query(sqlite_url, SHARES.format("world")) == web
    assert query(sqlite_url, SHARES.format("world/news")) == news
    table = run_cli(config, "shares", "--source", "gtrends", "--granularity", "month")
    assert "gtrends / world / month" in table.stdout
    assert "gtrends / world/news / month" in table.stdout
