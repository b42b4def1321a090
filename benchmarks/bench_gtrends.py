"""Benchmark: Google Trends backfill through the real pipeline against the fake with seeded truth.

For each scenario (the 7 default frameworks = two batches sharing an anchor, and a 5-framework
set = one batch; the fake's per-fetch sampling noise at 0, 2 and 5 %) it starts
``FakeGoogleTrends``, writes a temporary config pointing ``[gtrends] base_url`` at it and runs
``collector.backfill`` (what ``trends backfill gtrends`` calls) for 2016-01-01..2025-12-31 at
day, week and month resolution into a fresh SQLite file. It then reads back what the pipeline
stored and compares it with the truth:

- data requests (the fake's log) against ``plan.minimum_requests`` for the daily plan; the
  weekly and monthly requests are reported separately;
- median and p90 absolute % error of the daily series (``gtrends_series``, resolution day)
  after one global least-squares scale factor, over days whose truth is ≥ 1 % of the set's peak;
- the worst yearly mean level error (the slow drift the median hides);
- mean absolute error of the weekly shares (``framework_share``, source gtrends, granularity
  week) in share points, over complete Sunday weeks.

Same run, same stored daily cells (``aggregate.load_cells``): the joint fit without the tie to
the weekly/monthly series, and the baseline that chains windows by the ratio of their overlap
sums (then batches through the anchor). Prints a markdown table with wall time and peak RSS.

    .venv/bin/python benchmarks/bench_gtrends.py      (or `make bench`, which runs all benchmarks)
"""

from __future__ import annotations

import logging
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake server lives in tests/fakes

from pipeline.app import App  # noqa: E402
from pipeline.sources.gtrends import collector  # noqa: E402
from pipeline.sources.gtrends.aggregate import load_cells  # noqa: E402
from pipeline.sources.gtrends.plan import minimum_requests  # noqa: E402
from pipeline.sources.gtrends.scale import chain_by_overlap_ratio, joint_scale  # noqa: E402
from tests.fakes.gtrends_server import FakeGoogleTrends  # noqa: E402

START, END = date(2016, 1, 1), date(2025, 12, 31)
SEED = 2024  # the fake's seed: truth and sampling-noise draws
TODAY = date(2026, 1, 10)  # latest_day (today − 3-day lag) lies beyond END: no partial cells
SEVEN = ["pytorch", "tensorflow", "jax", "mxnet", "paddlepaddle", "mindspore", "caffe2"]
FIVE = ["pytorch", "tensorflow", "jax", "mxnet", "caffe2"]
NOISE_LEVELS = (0.0, 0.02, 0.05)  # sd of Google's per-fetch sampling noise (log scale)
MEANINGFUL = 0.01  # days whose truth is ≥ 1 % of the set's peak (Google shows ≥ 1 there)
LARGE = 0.1  # keyword-years whose mean truth is ≥ 10 % of the peak (values ≫ rounding)
RESOLUTIONS = ("day", "week", "month")


@dataclass
class Scenario:
    keywords: list[str]
    noise: float
    requests: dict[str, int]  # data requests per resolution, from the fake's log
    minimum: int  # minimum daily plan
    pipeline_daily: pd.DataFrame  # gtrends_series, resolution day
    pipeline_weekly_shares: pd.DataFrame  # framework_share week: period_start × framework
    cells: dict[str, pd.DataFrame]  # stored cells per resolution, as aggregate loads them
    tau: float
    seconds: float


def write_config(folder: Path, base_url: str, keywords: list[str]) -> Path:
    frameworks = "".join(f'\n[frameworks.{k}]\ngtrends = "{k}"\n' for k in keywords)
    path = folder / "trends.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{folder / "trends.db"}"\n\n'
        "[http]\nrequest_delay = 0.0\nrequest_budget = 10000\n\n"
        f'[gtrends]\nbase_url = "{base_url}"\n\n'
        "[pwc]\narchive_enabled = false\napi_enabled = false\n"
        f"{frameworks}",
        encoding="utf-8",
    )
    return path


def run_pipeline(keywords: list[str], noise: float, seed: int = SEED) -> Scenario:
    """Backfill day, week and month through the pipeline; read back what it stored."""
    started = time.perf_counter()
    with (
        FakeGoogleTrends(seed=seed, today=TODAY, sample_noise=noise) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        app = App.from_config(write_config(Path(tmp), server.base_url, keywords))
        requests = {}
        try:
            for resolution in RESOLUTIONS:
                before = len(server.data_requests)
                collector.backfill(app, START, END, resolution)
                requests[resolution] = len(server.data_requests) - before
            engine = app.engine
            daily = pd.read_sql(
                "SELECT framework AS keyword, period_start, value FROM gtrends_series "
                "WHERE resolution = 'day'",
                engine,
            )
            shares = pd.read_sql(
                "SELECT framework, period_start, share FROM framework_share "
                "WHERE source = 'gtrends' AND granularity = 'week'",
                engine,
            ).pivot(index="period_start", columns="framework", values="share")
            cells = {r: load_cells(engine, app.settings, r) for r in RESOLUTIONS}
            tau = float(app.settings.gtrends.threshold)
        finally:
            app.close()
    return Scenario(
        keywords,
        noise,
        requests,
        minimum_requests(keywords, START, END, "day"),
        daily,
        shares,
        cells,
        tau,
        time.perf_counter() - started,
    )


# --- metrics ---------------------------------------------------------------------------------


def wide(series: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """A long (keyword, period_start, value) series as a day × keyword frame like ``truth``."""
    frame = series.pivot(index="period_start", columns="keyword", values="value")
    frame.index = pd.to_datetime(frame.index)
    return frame.reindex(index=truth.index, columns=truth.columns).fillna(0.0)


def weekly_shares(daily: pd.DataFrame) -> pd.DataFrame:
    """Shares of the mean over complete Sunday-start weeks (index: Sunday as YYYY-MM-DD)."""
    sundays = daily.index - pd.to_timedelta(np.asarray((daily.index.day_of_week + 1) % 7), unit="D")
    grouped = daily.groupby(sundays)
    means = grouped.mean()[grouped.size() == 7]
    means.index = means.index.strftime("%Y-%m-%d")
    return means.div(means.sum(axis=1), axis=0)


def daily_errors(estimate: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    meaningful = truth >= MEANINGFUL * truth.to_numpy().max()
    e, t = estimate.to_numpy()[meaningful.to_numpy()], truth.to_numpy()[meaningful.to_numpy()]
    alpha = (e * t).sum() / (e * e).sum()  # one global scale factor, least squares
    relative = np.abs(alpha * e - t) / t
    years = truth.index.year
    yearly_true = truth.where(meaningful).groupby(years).mean()
    yearly = ((alpha * estimate).where(meaningful).groupby(years).mean() / yearly_true - 1).abs()
    # Drift shows on the large terms; the small ones are dominated by integer rounding.
    large = yearly_true >= LARGE * truth.to_numpy().max()
    return {
        "median": 100 * float(np.median(relative)),
        "p90": 100 * float(np.quantile(relative, 0.9)),
        "yearly": 100 * float(np.nanmax(yearly.to_numpy())),
        "yearly_large": 100 * float(np.nanmax(yearly.where(large).to_numpy())),
    }


def share_error(shares: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Mean absolute error in share points over the complete weeks of the truth."""
    true_shares = weekly_shares(truth)
    estimate = shares.reindex(index=true_shares.index, columns=true_shares.columns)
    return 100 * float(np.nanmean((estimate - true_shares).abs().to_numpy()))


@dataclass
class Row:
    method: str
    median: float
    p90: float
    yearly: float
    yearly_large: float
    share_mae: float
    seconds: float


def measure(scenario: Scenario, truth: pd.DataFrame) -> list[Row]:
    rows = []
    pipeline = wide(scenario.pipeline_daily, truth)
    rows.append(
        Row(
            "pipeline (joint fit + weekly/monthly tie)",
            **daily_errors(pipeline, truth),
            share_mae=share_error(scenario.pipeline_weekly_shares, truth),
            seconds=scenario.seconds,
        )
    )
    methods: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
        "joint fit of daily cells only": lambda c: joint_scale(c, tau=scenario.tau),
        "baseline: overlap-ratio chaining": lambda c: chain_by_overlap_ratio(c, tau=scenario.tau),
    }
    for name, method in methods.items():
        started = time.perf_counter()
        estimate = wide(method(scenario.cells["day"]), truth)
        seconds = time.perf_counter() - started
        shares = weekly_shares(estimate)
        rows.append(
            Row(
                name,
                **daily_errors(estimate, truth),
                share_mae=share_error(shares, truth),
                seconds=seconds,
            )
        )
    return rows


def verdict(scenario: Scenario, rows: list[Row]) -> str:
    """The issue's targets for one scenario, met (✓) or not (✗), compared unrounded."""
    pipeline, baseline = rows[0], rows[-1]
    checks = {
        "requests ≤ 1.1 × minimum": scenario.requests["day"] <= 1.1 * scenario.minimum,
        "median ≤ 2 %": pipeline.median <= 2.0,
        "median ≤ baseline": pipeline.median <= baseline.median,
        "weekly share MAE < 0.5 pts": pipeline.share_mae < 0.5,
    }
    marks = ", ".join(f"{'✓' if ok else '✗'} {name}" for name, ok in checks.items())
    return f"{len(scenario.keywords)} keywords at {scenario.noise:.0%}: {marks}"


def main() -> None:
    logging.disable(logging.INFO)
    started = time.perf_counter()
    lines = [
        "| keywords | sampling noise | method | daily requests / minimum | weekly + monthly "
        "requests | median abs % err | p90 abs % err | worst yearly level err %, all "
        "| worst yearly level err %, terms ≥ 10 % of peak | weekly share MAE (pts) | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts: list[str] = []
    for noise in NOISE_LEVELS:
        for keywords in (SEVEN, FIVE):
            scenario = run_pipeline(keywords, noise)
            truth = FakeGoogleTrends(seed=SEED, today=TODAY).truth_frame(keywords, START, END)
            requests = (
                f"{scenario.requests['day']} / {scenario.minimum}",
                f"{scenario.requests['week']} + {scenario.requests['month']}",
            )
            rows = measure(scenario, truth)
            verdicts.append(verdict(scenario, rows))
            for row in rows:
                lines.append(
                    f"| {len(keywords)} | {noise:.0%} | {row.method} | {requests[0]} "
                    f"| {requests[1]} | {row.median:.2f} | {row.p90:.2f} | {row.yearly:.2f} "
                    f"| {row.yearly_large:.2f} "
                    f"| {row.share_mae:.3f} | {row.seconds:.1f} |"
                )
    print(f"Google Trends backfill {START}..{END} (day + week + month) through the pipeline, ")
    print("fake Google Trends with seeded truth\n")
    print("\n".join(lines))
    print("\nTargets (pipeline row):\n" + "\n".join(f"- {v}" for v in verdicts))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(
        f"\nTotal wall time {time.perf_counter() - started:.1f} s, peak RSS {peak_mib:.0f} MiB. "
        "Seconds: the whole pipeline run (fetch, store, 3 rebuilds) for the pipeline row, "
        "the fit alone for the others."
    )


if __name__ == "__main__":
    main()
