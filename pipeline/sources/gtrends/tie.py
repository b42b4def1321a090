"""Tie the daily Google Trends series to the weekly and monthly series (DESIGN §5).

The daily series is chained through ~18 overlapping windows, so errors in the window offsets
add up like a random walk ("daily data fail to capture long-run trends", trendecon). A weekly
window spans 5 years and a monthly one the whole range, so their levels barely drift.

Google's weekly (monthly) value is the mean of the daily shares over the week (month), on the
request's own scale. A daily request's mean over a complete week inside it therefore measures
the same quantity as the weekly cell, up to each request's offset:

    log mean_{t∈week} r_w(k,t) = a_w + v(k,week)        (daily request w)
    log R_x(k,week)            = b_x + v(k,week)        (weekly request x)

which is exactly the form :func:`scale.joint_scale` solves. :func:`tied_cells` adds both kinds
of equation to the daily cells, keyed by a period label that cannot clash with a day; the joint
fit then places every daily request against the weekly and monthly requests as well as against
its neighbours, and the daily levels come out of the same fit. Without weekly or monthly cells
the input — and so the result — is unchanged.

A period mean is weighted like one fetched cell of its value, not like the 7 (or ~30) cells it
averages: those cells already tie neighbouring daily windows, and weighting the mean by its
days would count every overlap twice (measured: no better than the plain weight).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pipeline.sources.gtrends.scale import (
    BELOW_ONE_VALUE,
    DEFAULT_SAMPLING_NOISE,
    DEFAULT_TAU,
    OUTPUT_COLUMNS,
    DisconnectedRequests,
    estimate_sampling_noise,
    joint_scale,
)

COARSE = ("week", "month")
CELL_COLUMNS = ["request_id", "keyword", "period_start", "value", "below_one", "is_partial"]


def period_starts(days: pd.Series, granularity: str) -> pd.Series:
    """Sunday (week) or first day (month) of the period holding each ``YYYY-MM-DD`` day."""
    stamps = pd.to_datetime(days)
    if granularity == "week":
        starts = stamps - pd.to_timedelta((stamps.dt.day_of_week + 1) % 7, unit="D")
    elif granularity == "month":
        starts = stamps.dt.to_period("M").dt.start_time
    else:
        raise ValueError(f"granularity must be one of {COARSE}, got {granularity!r}")
    return starts.dt.strftime("%Y-%m-%d")


def period_days(starts: pd.Series, granularity: str) -> pd.Series:
    """Number of days in each period starting at ``starts``."""
    if granularity == "week":
        return pd.Series(7, index=starts.index)
    return pd.to_datetime(starts).dt.days_in_month


def label(granularity: str, starts: pd.Series) -> pd.Series:
    """Period key for the joint fit: never equal to a daily ``YYYY-MM-DD`` key."""
    return granularity + " " + starts.astype(str)


def daily_period_means(day_cells: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Each daily request's mean value over every complete, final period inside its window.

    "<1" counts as 0.5, as in the fit; periods with a partial day are left out.
    """
    if day_cells.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    below_one = day_cells.get("below_one", False)
    values = day_cells["value"].where(~(below_one & (day_cells["value"] == 0)), BELOW_ONE_VALUE)
    starts = period_starts(day_cells["period_start"], granularity)
    frame = day_cells.assign(value=values.astype(float), period=starts)
    partial = frame["is_partial"].astype(bool) if "is_partial" in frame else False
    frame = frame.assign(partial=partial)
    grouped = frame.groupby(["request_id", "keyword", "period"], sort=False).agg(
        value=("value", "mean"), days=("value", "size"), partial=("partial", "any")
    )
    grouped = grouped.reset_index()
    complete = (grouped["days"] == period_days(grouped["period"], granularity)) & ~grouped[
        "partial"
    ]
    means = grouped[complete]
    return pd.DataFrame(
        {
            "request_id": means["request_id"],
            "keyword": means["keyword"],
            "period_start": label(granularity, means["period"]),
            "value": means["value"],
            "below_one": False,
            "is_partial": False,
        }
    )


def coarse_cells_inside_window(cells: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Coarse cells relabelled; a month cut by its request's window is dropped if known.

    Google averages a month over the window's days only, so a month that the window does not
    wholly cover is not comparable with a complete-month mean of daily cells.
    """
    frame = cells
    if granularity == "month" and {"window_start", "window_end"} <= set(cells.columns):
        starts = pd.to_datetime(cells["period_start"])
        ends = starts + pd.to_timedelta(starts.dt.days_in_month - 1, unit="D")
        inside = (starts >= pd.to_datetime(cells["window_start"])) & (
            ends <= pd.to_datetime(cells["window_end"])
        )
        frame = cells[inside]
    return frame.assign(period_start=label(granularity, frame["period_start"]))[
        [c for c in CELL_COLUMNS if c in frame.columns]
    ]


def tied_cells(day_cells: pd.DataFrame, coarse: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Daily cells plus the equations that tie them to the weekly/monthly cells in ``coarse``.

    A granularity without cells adds nothing (not even the daily period means, which on their
    own would only re-count the daily overlaps).
    """
    parts = [day_cells]
    for granularity in COARSE:
        cells = coarse.get(granularity)
        if cells is None or cells.empty:
            continue
        parts.append(daily_period_means(day_cells, granularity))
        parts.append(coarse_cells_inside_window(cells, granularity))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else day_cells


def is_daily_key(period_start: pd.Series) -> pd.Series:
    """True for the daily rows of a fit over :func:`tied_cells` (not the period keys)."""
    return ~period_start.astype(str).str.contains(" ", regex=False)


def _daily_rows(fitted: pd.DataFrame) -> pd.DataFrame:
    """The daily rows of a tied fit, rescaled so their maximum is 100 again."""
    daily = fitted[is_daily_key(fitted["period_start"])].reset_index(drop=True)
    peak = daily["value"].max()
    if peak > 0:
        daily["value"] = daily["value"] * (100.0 / peak)
    return daily[OUTPUT_COLUMNS]


def tied_joint_scale(
    day_cells: pd.DataFrame, coarse: Mapping[str, pd.DataFrame], tau: float = DEFAULT_TAU
) -> pd.DataFrame:
    """The daily series of one joint fit over daily, weekly and monthly cells.

    Output as :func:`scale.joint_scale` for the daily cells. Weekly or monthly windows that
    share no usable period with the daily windows (say, weekly data for other years) cannot
    be tied; then the tie uses what connects — both, monthly only, weekly only, or nothing.
    """
    usable = {g: cells for g, cells in coarse.items() if g in COARSE and not cells.empty}
    if not usable:
        return joint_scale(day_cells, tau=tau)
    # Measured on the daily cells: the period means are less noisy and would hide it.
    try:
        noise = estimate_sampling_noise(day_cells, tau)
    except DisconnectedRequests:  # the daily windows may connect through the coarse ones
        noise = DEFAULT_SAMPLING_NOISE
    attempts = [("week", "month"), ("month",), ("week",)]
    for granularities in attempts:
        if not all(g in usable for g in granularities):
            continue
        cells = tied_cells(day_cells, {g: usable[g] for g in granularities})
        try:
            return _daily_rows(joint_scale(cells, tau=tau, sampling_noise=noise))
        except DisconnectedRequests:
            continue
    return joint_scale(day_cells, tau=tau)
