"""The joint fit (and the chaining baseline) against the fake's seeded ground truth."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipeline.sources.gtrends.plan import build_plan
from pipeline.sources.gtrends.scale import (
    DEFAULT_SAMPLING_NOISE,
    MIN_SAMPLING_NOISE,
    DisconnectedRequests,
    _by_cell,
    _shared_cell_terms,
    chain_by_overlap_ratio,
    estimate_sampling_noise,
    joint_scale,
)
from tests.fakes.gtrends_server import FakeGoogleTrends, KeywordProfile

FRAMEWORKS = ["pytorch", "tensorflow", "jax", "mxnet", "paddlepaddle", "mindspore", "caffe2"]


def fetch_cells(fake: FakeGoogleTrends, keywords, start: date, end: date) -> pd.DataFrame:
    plan = build_plan(keywords, start, end, "day")
    return pd.concat(
        [fake.answer_cells(i, list(r.keywords), r.start, r.end) for i, r in enumerate(plan)]
    )


def relative_errors(result: pd.DataFrame, truth: pd.DataFrame, floor: float = 0.01) -> pd.DataFrame:
    """|α·estimate − truth| / truth per day and keyword, α = one least-squares factor.

    Days where the truth is below ``floor`` × its maximum are left out (NaN).
    """
    estimate = result.pivot(index="period_start", columns="keyword", values="value")
    estimate.index = pd.to_datetime(estimate.index)
    estimate = estimate.reindex(index=truth.index, columns=truth.columns)
    meaningful = truth >= floor * truth.to_numpy().max()
    e, t = estimate[meaningful].to_numpy(), truth[meaningful].to_numpy()
    ok = ~np.isnan(t)
    alpha = (e[ok] * t[ok]).sum() / (e[ok] ** 2).sum()
    return (alpha * estimate - truth).abs() / truth.where(meaningful)


@pytest.fixture(scope="module")
def seven_keywords():
    fake = FakeGoogleTrends(sample_noise=0.03)
    start, end = date(2019, 1, 1), date(2021, 12, 31)
    return fetch_cells(fake, FRAMEWORKS, start, end), fake.truth_frame(FRAMEWORKS, start, end)


def test_joint_fit_recovers_levels_across_windows_and_batches(seven_keywords):
    cells, truth = seven_keywords
    assert cells.groupby("request_id")["keyword"].nunique().max() <= 5
    result = joint_scale(cells)
    assert result["value"].max() == pytest.approx(100)
    errors = relative_errors(result, truth)
    assert np.nanmedian(errors.to_numpy()) < 0.04
    # Ratios between keywords of different batches (linked only through the anchor).
    estimate = result.pivot(index="period_start", columns="keyword", values="value")
    for small in ("mindspore", "caffe2"):
        for big in ("pytorch", "tensorflow"):
            got = estimate[small].sum() / estimate[big].sum()
            want = truth[small].sum() / truth[big].sum()
            assert got == pytest.approx(want, rel=0.05), (small, big)


def test_observations_count_overlaps(seven_keywords):
    cells, _ = seven_keywords
    result = joint_scale(cells).set_index(["keyword", "period_start"])
    # paddlepaddle is the anchor (in both batches): twice the fetched cells of its neighbours.
    counts = result["observations"]
    day = date(2019, 2, 1)  # inside the first window only
    assert counts[("pytorch", day)] == 1 and counts[("paddlepaddle", day)] == 2


def test_baseline_is_comparable_on_clean_data(seven_keywords):
    cells, truth = seven_keywords
    errors = relative_errors(chain_by_overlap_ratio(cells), truth)
    assert np.nanmedian(errors.to_numpy()) < 0.05


def synthetic(
    rows: list[tuple[int, str, int, int]], below: set[tuple[int, str, int]] = frozenset()
):
    return pd.DataFrame(
        [
            {
                "request_id": r,
                "keyword": k,
                "period_start": date(2020, 1, d),
                "value": v,
                "below_one": (r, k, d) in below,
            }
            for r, k, d, v in rows
        ]
    )


def test_exact_offsets_are_recovered():
    # Two requests; request 1 sees everything at half the scale of request 0.
    truth = {("a", 1): 100, ("a", 2): 80, ("a", 3): 60, ("b", 2): 40, ("b", 3): 30}
    rows = [(0, k, d, v) for (k, d), v in truth.items() if d <= 2]
    rows += [(1, k, d, v // 2) for (k, d), v in truth.items() if d >= 2]
    result = joint_scale(synthetic(rows)).set_index(["keyword", "period_start"])["value"]
    for (keyword, day), value in truth.items():
        assert result[(keyword, date(2020, 1, day))] == pytest.approx(value)


def test_cells_below_tau_are_placed_but_do_not_drive_the_fit():
    base = [(0, "a", 1, 100), (0, "a", 2, 50), (1, "a", 2, 100), (1, "a", 3, 80)]
    clean = joint_scale(synthetic(base))
    # A wildly inconsistent small cell on the shared day must not move the offsets ...
    noisy = base + [(0, "b", 2, 1), (1, "b", 2, 4), (1, "b", 3, 0)]
    result = joint_scale(synthetic(noisy, below={(1, "b", 3)}))
    merged = clean.merge(result, on=["keyword", "period_start"], suffixes=("_clean", ""))
    assert np.allclose(merged["value"], merged["value_clean"])
    values = result.set_index(["keyword", "period_start"])["value"]
    # ... but is placed with them: mean of 1·(100/50)/… on the common scale.
    scale_1 = values[("a", date(2020, 1, 2))] / 100  # request 1 → common scale
    scale_0 = values[("a", date(2020, 1, 2))] / 50
    assert values[("b", date(2020, 1, 2))] == pytest.approx((1 * scale_0 + 4 * scale_1) / 2)
    assert values[("b", date(2020, 1, 3))] == pytest.approx(0.5 * scale_1)  # "<1"


def test_cells_without_data_get_zero():
    result = joint_scale(synthetic([(0, "a", 1, 100), (0, "z", 1, 0)]))
    assert result.set_index("keyword").loc["z", "value"] == 0


def test_disconnected_requests_are_an_error():
    rows = [(0, "a", 1, 100), (0, "a", 2, 50), (1, "a", 5, 100), (1, "a", 6, 70)]
    with pytest.raises(DisconnectedRequests, match="2 groups"):
        joint_scale(synthetic(rows))
    # An anchor that is below τ in one request does not link it either.
    rows = [(0, "a", 1, 100), (0, "b", 1, 3), (1, "b", 1, 100), (1, "c", 1, 50)]
    with pytest.raises(DisconnectedRequests):
        joint_scale(synthetic(rows))
    assert len(joint_scale(synthetic(rows), tau=1)) == 3


def test_low_volume_keyword_recovered_through_a_similar_anchor():
    """A term at ~1/200 of the top stays measurable only via the anchor chain."""
    profiles = {
        "huge": KeywordProfile({2019: 1.0, 2022: 1.0}),
        "mid1": KeywordProfile({2019: 0.2, 2022: 0.25}),
        "mid2": KeywordProfile({2019: 0.15, 2022: 0.12}),
        "mid3": KeywordProfile({2019: 0.1, 2022: 0.1}),
        "small": KeywordProfile({2019: 0.05, 2022: 0.06}),
        "tiny": KeywordProfile({2019: 0.006, 2022: 0.005}),
    }
    fake = FakeGoogleTrends(profiles=profiles)
    keywords = list(profiles)
    cells = fetch_cells(fake, keywords, date(2020, 1, 1), date(2020, 12, 31))
    # Next to "huge" it would read "<1"; next to its anchor "small" it reaches ~10.
    assert cells[cells["keyword"] == "tiny"]["value"].max() >= 8
    truth = fake.truth_frame(keywords, date(2020, 1, 1), date(2020, 12, 31))
    errors = relative_errors(joint_scale(cells), truth, floor=0)
    assert errors["tiny"].median() < 0.1


@pytest.mark.parametrize("noise", [0.0, 0.02, 0.05])
def test_sampling_noise_is_measured_from_the_overlaps(noise: float) -> None:
    fake = FakeGoogleTrends(today=date(2024, 12, 31), sample_noise=noise)
    cells = fetch_cells(
        fake, ["pytorch", "tensorflow", "jax"], date(2021, 1, 1), date(2023, 12, 31)
    )
    measured = estimate_sampling_noise(cells)
    if noise == 0:
        assert measured == MIN_SAMPLING_NOISE  # rounding explains all the disagreement
    else:
        assert measured == pytest.approx(noise, rel=0.15)


def test_sampling_noise_falls_back_without_shared_cells() -> None:
    fake = FakeGoogleTrends(today=date(2024, 12, 31))
    cells = fake.answer_cells(0, ["pytorch", "jax"], date(2023, 1, 1), date(2023, 6, 30))
    assert estimate_sampling_noise(cells) == DEFAULT_SAMPLING_NOISE


@pytest.mark.parametrize("max_terms", [1, 7, 1 << 21])
def test_shared_cell_terms_match_the_sum_of_outer_products(max_terms: int) -> None:
    """The blockwise sum equals Σ_c β_c β_cᵀ / W_c written out, whatever the block size
    (1: every cell its own block; 7: cells of 3+ observations exceed a block)."""
    rng = np.random.default_rng(5)
    n_requests, n_cells = 9, 40
    rows = [
        (c, r)
        for c in range(n_cells)
        for r in rng.choice(n_requests, size=rng.integers(1, 6), replace=False)
    ]
    cell, request = (np.array(column) for column in zip(*rows, strict=True))
    weight = rng.uniform(0.5, 3.0, cell.size)
    cell_weight = np.bincount(cell, weights=weight)

    expected = np.zeros((n_requests, n_requests))
    for c in range(n_cells):
        beta = np.bincount(request[cell == c], weights=weight[cell == c], minlength=n_requests)
        expected += np.outer(beta, beta) / cell_weight[c]
    order = rng.permutation(cell.size)  # observations in any order, sorted by _by_cell
    by_cell = _by_cell(cell[order], request[order], weight[order])
    terms = _shared_cell_terms(*by_cell, cell_weight, n_requests, max_terms)
    np.testing.assert_allclose(terms, expected, rtol=1e-12)
