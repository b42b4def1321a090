"""What Google Trends shares are made of: informative periods only, one scale for `value`
across the daily-derived and native weekly/monthly periods, whole periods, and the configured
frameworks only. Checked against the fake's ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.shares import share_rows
from pipeline.sources.gtrends.aggregate import informative_periods, significant
from tests.conftest import gtrends_config, query, run_cli
from tests.fakes.gtrends_server import FakeGoogleTrends

TODAY = date(2026, 11, 27)
FIRST_DAY = date(2004, 1, 1)  # index 0 of GroundTruth.daily
THREE = ("pytorch", "tensorflow", "jax")


@pytest.fixture
def fake() -> Iterator[FakeGoogleTrends]:
    with FakeGoogleTrends(today=TODAY) as server:
        yield server


def frameworks_toml(keys: tuple[str, ...]) -> str:
    return "".join(f'[frameworks.{k}]\nname = "{k}"\ngtrends = "{k}"\n' for k in keys)


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str, fake: FakeGoogleTrends) -> Path:
    path = tmp_path / "trends.toml"
    return gtrends_config(path, sqlite_url, fake.base_url, extra=frameworks_toml(THREE))


def backfill(config: Path, start: str, end: str, resolution: str) -> None:
    args = ["backfill", "gtrends", "--start", start, "--end", end, "--resolution", resolution]
    assert run_cli(config, *args).exit_code == 0


def shares(url: str, granularity: str) -> pd.DataFrame:
    rows = query(
        url,
        "SELECT period_start, framework, value, share FROM framework_share "
        f"WHERE source = 'gtrends' AND granularity = '{granularity}' ORDER BY 1, 2",
    )
    return pd.DataFrame(rows, columns=["period_start", "framework", "value", "share"])


def test_periods_where_every_value_is_below_one_get_no_shares(config, sqlite_url) -> None:
    """Before these frameworks existed every monthly cell is "<1" or 0; a 0.5 for each would
    make up equal shares. Such months keep their series rows but get no shares."""
    backfill(config, "2004-01-01", "2024-12-31", "month")
    month_shares = shares(sqlite_url, "month")
    series_months = query(
        sqlite_url, "SELECT min(period_start) FROM gtrends_series WHERE resolution = 'month'"
    )[0][0]
    assert series_months == "2004-01-01"
    assert month_shares["period_start"].min() > "2010-01-01"
    strong = query(
        sqlite_url,
        "SELECT DISTINCT c.period_start FROM gtrends_cells c JOIN gtrends_fetches f "
        "ON f.id = c.fetch_id WHERE f.resolution = 'month' AND c.value >= 5",
    )
    assert set(month_shares["period_start"]) <= {p for (p,) in strong}


def test_value_keeps_one_scale_where_daily_and_weekly_periods_meet(
    config, sqlite_url, fake
) -> None:
    """Weeks of 2024 come from the daily series, earlier weeks from the weekly one; the
    weekly series is rescaled onto the daily one, so value ÷ truth does not step."""
    backfill(config, "2020-01-05", "2024-12-28", "week")
    backfill(config, "2024-01-01", "2024-12-31", "day")
    weekly = shares(sqlite_url, "week")
    pytorch = weekly[weekly["framework"] == "pytorch"].set_index("period_start")["value"]
    truth = fake.ground_truth.daily("pytorch")

    def true_week(start: str) -> float:
        first = (date.fromisoformat(start) - FIRST_DAY).days
        return float(truth[first : first + 7].mean())

    ratio = pd.Series({p: v / true_week(p) for p, v in pytorch.items()})
    native = ratio[(ratio.index >= "2023-01-01") & (ratio.index < "2023-12-24")]
    derived = ratio[(ratio.index >= "2024-01-07") & (ratio.index < "2024-12-22")]
    assert abs(np.log(native.median() / derived.median())) < 0.03


def test_a_window_cut_mid_month_does_not_store_the_cut_month(config, sqlite_url) -> None:
    backfill(config, "2020-01-01", "2024-06-15", "month")
    months = {p for (p,) in query(sqlite_url, "SELECT period_start FROM gtrends_series")}
    assert "2024-05-01" in months and "2024-06-01" not in months
    assert "2024-06-01" not in set(shares(sqlite_url, "month")["period_start"])


def test_a_framework_removed_from_the_configuration_leaves_the_shares(
    config, sqlite_url, fake, tmp_path
) -> None:
    backfill(config, "2024-01-01", "2024-06-30", "day")
    assert "jax" in set(shares(sqlite_url, "day")["framework"])
    two = frameworks_toml(THREE[:2])
    smaller = gtrends_config(tmp_path / "two.toml", sqlite_url, fake.base_url, extra=two)
    assert run_cli(smaller, "aggregate").exit_code == 0
    for granularity in ("day", "week", "month"):
        table = shares(sqlite_url, granularity)
        assert set(table["framework"]) == {"pytorch", "tensorflow"}
        assert np.allclose(table.groupby("period_start")["share"].sum(), 1.0)


def test_values_keep_three_significant_digits() -> None:
    values = pd.Series([0.0, 100.0, 99.96, 12.345, 0.0012345, 0.5, 1234.5, 7])
    assert significant(values).tolist() == [0.0, 100.0, 100.0, 12.3, 0.00123, 0.5, 1230.0, 7.0]


def test_a_period_whose_largest_value_equals_the_threshold_is_informative() -> None:
    cells = pd.DataFrame(
        {"period_start": ["2024-01-01", "2024-01-01", "2024-01-02"], "value": [5, 0.5, 4.9]}
    )
    assert informative_periods(cells, 5) == {"2024-01-01"}


def test_periods_whose_values_add_up_to_zero_have_no_shares() -> None:
    values = [
        ("2024-01-01", "pytorch", 0),
        ("2024-01-01", "jax", 0),
        ("2024-04-01", "pytorch", 3),
        ("2024-04-01", "jax", 1),
        ("2024-04-01", "mxnet", float("nan")),  # missing: no row
    ]
    rows = share_rows(values, "pwc-api", "papers", "quarter")
    assert [(r["period_start"], r["framework"], r["share"]) for r in rows] == [
        ("2024-04-01", "pytorch", 0.75),
        ("2024-04-01", "jax", 0.25),
    ]
