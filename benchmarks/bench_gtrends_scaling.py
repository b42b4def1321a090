"""Benchmark: one consistent Google Trends scale — joint least squares vs overlap chaining.

Runs real pytrends (through PytrendsClient) against the fake Google Trends server with seeded
ground truth: plans 2016-01-01..2025-12-31 daily for the 7 default frameworks and for a
≤5-keyword set, fetches every planned request, stitches the cells both ways and compares with
the truth. Prints a markdown table. Usage: ``python benchmarks/bench_gtrends_scaling.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake server lives in tests/fakes

from pipeline.http import HttpPolicy, HttpSettings  # noqa: E402
from pipeline.sources.gtrends.client import PytrendsClient  # noqa: E402
from pipeline.sources.gtrends.parse import parse_multiline  # noqa: E402
from pipeline.sources.gtrends.plan import build_plan, minimum_requests  # noqa: E402
from pipeline.sources.gtrends.scale import chain_by_overlap_ratio, joint_scale  # noqa: E402
from tests.fakes.gtrends_server import FakeGoogleTrends  # noqa: E402

START, END = date(2016, 1, 1), date(2025, 12, 31)
SEVEN = ["pytorch", "tensorflow", "jax", "mxnet", "paddlepaddle", "mindspore", "caffe2"]
FIVE = ["pytorch", "tensorflow", "jax", "mxnet", "caffe2"]
NOISE_LEVELS = (0.0, 0.05)  # sd of Google's per-fetch sampling noise (log scale)
MEANINGFUL = 0.01  # days whose truth is ≥ 1 % of the set's peak (Google shows ≥ 1 there)
METHODS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "joint least squares": joint_scale,
    "overlap-ratio chaining": chain_by_overlap_ratio,
}


@dataclass
class Fetched:
    cells: pd.DataFrame
    data_requests: int
    minimum: int
    seconds: float


def fetch_all(server: FakeGoogleTrends, keywords: list[str]) -> Fetched:
    """Fetch every planned request through real pytrends and parse the stored bodies."""
    plan = build_plan(keywords, START, END, "day")
    policy = HttpPolicy(HttpSettings(request_delay=0, request_budget=10_000))
    client = PytrendsClient(server.base_url, policy, on_response=lambda response, info: None)
    before = len(server.data_requests)
    started = time.perf_counter()
    frames = []
    for request_id, request in enumerate(plan):
        timeline = parse_multiline(client.fetch(request), request.keywords, request.resolution)
        frames.append(
            pd.DataFrame(
                {
                    "request_id": request_id,
                    "keyword": o.keyword,
                    "period_start": o.period_start,
                    "value": o.value,
                    "below_one": o.below_one,
                    "is_partial": o.is_partial,
                }
                for o in timeline.observations
            )
        )
    return Fetched(
        cells=pd.concat(frames, ignore_index=True),
        data_requests=len(server.data_requests) - before,
        minimum=minimum_requests(keywords, START, END, "day"),
        seconds=time.perf_counter() - started,
    )


def errors(result: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    estimate = result.pivot(index="period_start", columns="keyword", values="value")
    estimate.index = pd.to_datetime(estimate.index)
    estimate = estimate.reindex(index=truth.index, columns=truth.columns).fillna(0.0)
    meaningful = truth >= MEANINGFUL * truth.to_numpy().max()
    e, t = estimate.to_numpy()[meaningful.to_numpy()], truth.to_numpy()[meaningful.to_numpy()]
    alpha = (e * t).sum() / (e * e).sum()  # one global scale factor, least squares
    relative = np.abs(alpha * e - t) / t

    yearly_est = (alpha * estimate).where(meaningful).groupby(truth.index.year).mean()
    yearly_true = truth.where(meaningful).groupby(truth.index.year).mean()
    yearly = (yearly_est / yearly_true - 1).abs().to_numpy()

    def weekly_shares(frame: pd.DataFrame) -> pd.DataFrame:
        weeks = frame.resample("W-SAT", label="left", closed="left").mean()
        return weeks.div(weeks.sum(axis=1), axis=0)

    share_error = (weekly_shares(estimate) - weekly_shares(truth)).abs().to_numpy()
    return {
        "median %": 100 * float(np.median(relative)),
        "p90 %": 100 * float(np.quantile(relative, 0.9)),
        "weekly share MAE (pts)": 100 * float(np.nanmean(share_error)),
        "worst yearly level %": 100 * float(np.nanmax(yearly)),
    }


def main() -> None:
    started = time.perf_counter()
    lines = [
        "| keywords | sampling noise | method | data requests | minimum plan | median abs % err "
        "| p90 abs % err | weekly share MAE (pts) | worst yearly level err % | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for noise in NOISE_LEVELS:
        with FakeGoogleTrends(seed=2024, today=date(2026, 11, 27), sample_noise=noise) as server:
            for keywords in (SEVEN, FIVE):
                fetched = fetch_all(server, keywords)
                truth = server.truth_frame(keywords, START, END)
                for name, method in METHODS.items():
                    fit_started = time.perf_counter()
                    result = method(fetched.cells)
                    fit_seconds = time.perf_counter() - fit_started
                    m = errors(result, truth)
                    lines.append(
                        f"| {len(keywords)} | {noise:.0%} | {name} | {fetched.data_requests} "
                        f"| {fetched.minimum} | {m['median %']:.2f} | {m['p90 %']:.2f} "
                        f"| {m['weekly share MAE (pts)']:.3f} | {m['worst yearly level %']:.2f} "
                        f"| {fit_seconds:.2f} |"
                    )
    print(f"Google Trends scaling, daily {START}..{END}, fake server with seeded truth\n")
    print("\n".join(lines))
    print(f"\n(total {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
