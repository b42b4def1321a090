"""Tying the daily Google Trends fit to the weekly and monthly windows (gtrends/tie.py)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from pipeline.sources.gtrends.plan import build_plan
from pipeline.sources.gtrends.scale import joint_scale
from pipeline.sources.gtrends.tie import (
    coarse_cells_inside_window,
    daily_period_means,
    period_starts,
    tied_cells,
    tied_joint_scale,
)
from tests.fakes.gtrends_server import FakeGoogleTrends

SUNDAY = date(2023, 1, 1)


def cells(request_id: object, keyword: str, first: date, values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": request_id,
            "keyword": keyword,
            "period_start": [(first + timedelta(days=i)).isoformat() for i in range(len(values))],
            "value": values,
            "below_one": False,
            "is_partial": False,
        }
    )


def weekly(request_id: object, keyword: str, first: date, values: list[float]) -> pd.DataFrame:
    frame = cells(request_id, keyword, first, values)
    frame["period_start"] = [(first + timedelta(weeks=i)).isoformat() for i in range(len(values))]
    return frame


def test_period_starts_are_sundays_and_first_days() -> None:
    days = pd.Series(["2023-01-01", "2023-01-07", "2023-01-08", "2024-02-29"])
    assert period_starts(days, "week").tolist() == [
        "2023-01-01",
        "2023-01-01",
        "2023-01-08",
        "2024-02-25",
    ]
    assert period_starts(days, "month").tolist() == [
        "2023-01-01",
        "2023-01-01",
        "2023-01-01",
        "2024-02-01",
    ]
    with pytest.raises(ValueError):
        period_starts(days, "year")


def test_daily_period_means_keep_complete_final_periods_only() -> None:
    # Tuesday .. the Saturday 12 days later: one complete week (Jan 8-14) and two cut ones.
    day = cells("r1", "k", date(2023, 1, 3), [10.0] * 5 + [0.0] + [20.0] * 6 + [30.0])
    day.loc[5, "below_one"] = True  # "<1" counts as 0.5
    means = daily_period_means(day, "week")
    assert means["period_start"].tolist() == ["week 2023-01-08"]
    assert means["value"].iloc[0] == pytest.approx((0.5 + 6 * 20.0) / 7)
    assert means["request_id"].tolist() == ["r1"]

    day.loc[day["period_start"] == "2023-01-10", "is_partial"] = True
    assert daily_period_means(day, "week").empty


def test_months_cut_by_their_window_are_not_tied() -> None:
    month = pd.DataFrame(
        {
            "request_id": "m",
            "keyword": "k",
            "period_start": ["2023-01-01", "2023-02-01", "2023-03-01"],
            "value": [50, 60, 70],
            "below_one": False,
            "is_partial": False,
            "window_start": "2023-01-01",
            "window_end": "2023-03-15",
        }
    )
    kept = coarse_cells_inside_window(month, "month")
    assert kept["period_start"].tolist() == ["month 2023-01-01", "month 2023-02-01"]


def test_without_weekly_or_monthly_cells_the_fit_is_unchanged() -> None:
    day = pd.concat(
        [cells("a", "k", SUNDAY, [50.0] * 14), cells("b", "k", SUNDAY + timedelta(7), [40.0] * 14)]
    )
    assert tied_cells(day, {}) is day
    pd.testing.assert_frame_equal(
        tied_joint_scale(day, {"week": day.iloc[0:0], "month": day.iloc[0:0]}), joint_scale(day)
    )


def drifting_chain() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A truly flat series in two 16-week daily windows overlapping by one week (the real plan:
    38 weeks, 60 days), and its weekly series. Window b reads 10 % high on the overlap only (an
    unlucky sample), so chaining on the overlap sets b's whole level 10 % too low."""
    a = cells("a", "k", SUNDAY, [50.0] * 112)
    b = cells("b", "k", SUNDAY + timedelta(weeks=15), [55.0] * 7 + [50.0] * 105)
    week = weekly("w", "k", SUNDAY, [50.0] * 31)
    return pd.concat([a, b], ignore_index=True), week


def level_error_after_overlap(series: pd.DataFrame) -> float:
    """|relative level error| of the days after the overlap, against the days before it."""
    values = series.set_index("period_start")["value"]
    before = values[values.index < (SUNDAY + timedelta(weeks=15)).isoformat()].mean()
    after = values[values.index >= (SUNDAY + timedelta(weeks=16)).isoformat()].mean()
    return abs(after / before - 1)


def test_weekly_series_pulls_a_drifted_daily_window_back() -> None:
    day, week = drifting_chain()
    untied = level_error_after_overlap(joint_scale(day))
    tied = tied_joint_scale(day, {"week": week})
    assert untied == pytest.approx(1 - 1 / 1.1, abs=0.005)
    assert level_error_after_overlap(tied) < 0.6 * untied
    # Only daily rows come back, on the usual scale and with the daily observation counts.
    assert len(tied) == 31 * 7 and tied["value"].max() == pytest.approx(100)
    assert tied["observations"].max() == 2


def test_weekly_windows_that_do_not_meet_the_daily_ones_are_ignored() -> None:
    day, _ = drifting_chain()
    elsewhere = weekly("w", "k", date(2020, 1, 5), [50.0] * 20)
    month = weekly("m", "k", date(2023, 1, 1), [50.0])  # no complete month: nothing to tie
    month["period_start"] = "2023-01-01"
    result = tied_joint_scale(day, {"week": elsewhere, "month": month})
    pd.testing.assert_frame_equal(result, joint_scale(day))


def test_tie_reduces_drift_on_the_noisy_fake() -> None:
    """Seeded fake with 5 % sampling noise: 18 daily windows drift; 3 weekly windows do not."""
    keywords = ["pytorch", "tensorflow", "jax"]
    start, end = date(2016, 1, 1), date(2025, 12, 31)
    fake = FakeGoogleTrends(today=date(2026, 1, 10), sample_noise=0.05)

    def fetch(resolution: str) -> pd.DataFrame:
        plan = build_plan(keywords, start, end, resolution)
        return pd.concat(
            [
                fake.answer_cells(f"{resolution}{i}", list(r.keywords), r.start, r.end)
                for i, r in enumerate(plan)
            ],
            ignore_index=True,
        )

    day = fetch("day")
    truth = fake.truth_frame(keywords, start, end)

    def worst_yearly_error(series: pd.DataFrame) -> float:
        estimate = series.pivot(index="period_start", columns="keyword", values="value")
        estimate.index = pd.to_datetime(estimate.index)
        estimate = estimate.reindex(index=truth.index, columns=keywords)
        logs = np.log(estimate.groupby(truth.index.year).mean()) - np.log(
            truth.groupby(truth.index.year).mean()
        )
        logs = logs[logs.index >= 2017]  # pytorch is tiny in 2016
        return float((logs - logs.stack().mean()).abs().max().max())

    untied = worst_yearly_error(joint_scale(day))
    tied = worst_yearly_error(
        tied_joint_scale(day, {"week": fetch("week"), "month": fetch("month")})
    )
    assert tied < 0.75 * untied
