"""Rebuild ``gtrends_series`` and the ``gtrends`` rows of ``framework_share`` from stored cells.

Per resolution, every stored window of the configured geo/category/property goes into one joint
least-squares fit (``scale.joint_scale``); the result replaces that resolution's series. The
daily fit also takes the weekly and monthly windows, so that the long daily chain cannot drift
away from them (``tie.py``). Shares:

- ``day`` from the daily series;
- ``week`` (Sunday-start) and ``month``: the mean of the daily series over complete periods,
  and for periods the daily series does not cover, the collected weekly or monthly series.

The weekly and monthly series are rescaled onto the daily one over the periods both have, so
``value`` keeps one scale (shares are scale-free either way). Shares count only the configured
frameworks, and only periods where some framework has a cell of at least ``[gtrends]
threshold``: where all are "<1" there is nothing to share. Weekly and monthly cells cut by
their window's end are left out. Each (geo, category, property) has its own ``variant``
(``GtrendsSettings.variant``), and a rebuild replaces only the configured one.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from pipeline import shares
from pipeline.config import Settings
from pipeline.errors import StepFailed
from pipeline.sources.gtrends import tie
from pipeline.sources.gtrends.scale import DisconnectedRequests, joint_scale
from pipeline.sources.gtrends.tie import COARSE, tied_joint_scale
from storage.models import FrameworkShare, GtrendsCell, GtrendsFetch, GtrendsSeries
from storage.upsert import replace_rows

log = logging.getLogger(__name__)

SOURCE = "gtrends"
# Stored values keep 3 significant digits: Google rounds every window to integers 0-100, so the
# fit is only good to about 1 % (docs/BENCHMARKS.md), and the dropped digits were noise that
# every daily collect moved, rewriting most of the stored history (~28k rows a day for 7
# frameworks; ~1k with the rounding). Shares are computed from the rounded values.
SIGNIFICANT_DIGITS = 3
SERIES_KEY = ["framework", "geo", "category", "property", "resolution", "period_start"]


def load_cells(engine: Engine, settings: Settings, resolution: str) -> pd.DataFrame:
    g = settings.gtrends
    query = (
        select(
            GtrendsCell.fetch_id.label("request_id"),
            GtrendsCell.framework.label("keyword"),
            GtrendsCell.period_start,
            GtrendsCell.value,
            GtrendsCell.below_one,
            GtrendsCell.is_partial,
            GtrendsFetch.window_start,
            GtrendsFetch.window_end,
        )
        .join(GtrendsFetch, GtrendsFetch.id == GtrendsCell.fetch_id)
        .where(
            GtrendsFetch.resolution == resolution,
            GtrendsFetch.geo == g.geo,
            GtrendsFetch.category == g.category,
            GtrendsFetch.property == g.property,
        )
        # A fixed order: the least-squares fit's last bits depend on the input order, and a
        # rebuild must reproduce the stored series exactly (PostgreSQL returns heap order).
        .order_by(GtrendsCell.fetch_id, GtrendsCell.framework, GtrendsCell.period_start)
    )
    with engine.connect() as connection:
        # read_sql builds the frame from the driver's tuples; a DataFrame of SQLAlchemy Rows is
        # 3x slower (pandas probes every Row for namedtuple fields).
        cells = pd.read_sql(query, connection)
    return _whole_periods(cells, resolution)


def _whole_periods(cells: pd.DataFrame, resolution: str) -> pd.DataFrame:
    """Weekly and monthly cells whose period runs past their window's end are dropped: Google
    averages only the days inside the window (a backfill ``--end 2024-06-15`` gives June from
    15 days), and such a cell would pull the whole period's level."""
    if resolution == "day" or cells.empty:
        return cells
    starts = pd.to_datetime(cells["period_start"])
    days = tie.period_days(cells["period_start"], resolution)
    ends = starts + pd.to_timedelta(days.to_numpy() - 1, unit="D")
    return cells[(ends <= pd.to_datetime(cells["window_end"])).to_numpy()].reset_index(drop=True)


def informative_periods(cells: pd.DataFrame, tau: float) -> set[str]:
    """Periods where at least one framework has a cell of at least ``tau``: elsewhere every
    value is "<1" or rounding noise, and shares would be made up (equal splits of 0.5s)."""
    return set(cells.loc[cells["value"] >= tau, "period_start"])


def scaled_series(
    engine: Engine, settings: Settings, resolution: str
) -> tuple[pd.DataFrame, set[str]]:
    """One resolution's series (the daily one tied to the weekly and monthly cells), and its
    :func:`informative_periods`."""
    cells = load_cells(engine, settings, resolution)
    tau = settings.gtrends.threshold
    informative = informative_periods(cells, tau)
    try:
        if resolution == "day" and not cells.empty:
            coarse = {g: load_cells(engine, settings, g) for g in COARSE}
            return tied_joint_scale(cells, coarse, tau=tau), informative
        return joint_scale(cells, tau=tau), informative
    except DisconnectedRequests as error:
        raise StepFailed(
            f"gtrends {resolution} windows cannot be put on one scale ({error}); "
            "backfill the gap with `trends backfill gtrends --start …`, or, if no dates are "
            "missing, list the frameworks by popularity in the configuration so that batches "
            "share a frequent one"
        ) from None


def _period_mean(daily: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Mean of the daily series over complete Sunday-weeks or months."""
    starts = tie.period_starts(daily["period_start"], granularity)
    frame = daily.assign(period=starts, expected=tie.period_days(starts, granularity).values)
    grouped = frame.groupby(["keyword", "period"]).agg(
        value=("value", "mean"), days=("value", "size"), expected=("expected", "first")
    )
    complete = grouped[grouped["days"] == grouped["expected"]].reset_index()
    return complete.rename(columns={"period": "period_start"})[["keyword", "period_start", "value"]]


def significant(values: pd.Series, digits: int = SIGNIFICANT_DIGITS) -> pd.Series:
    """``values`` rounded to ``digits`` significant digits (0 stays 0)."""
    values = values.astype("float64")
    magnitude = np.floor(np.log10(values.abs().where(values != 0, 1.0)))
    scale = 10.0 ** (digits - 1 - magnitude)
    return (values * scale).round() / scale


def _share_values(series: pd.DataFrame, informative: set[str], settings: Settings) -> pd.DataFrame:
    """What shares are computed from: the configured frameworks (one removed from the
    configuration leaves the shares), in informative periods only, values rounded."""
    configured = {f.key for f in settings.gtrends_frameworks()}
    kept = series[series["keyword"].isin(configured) & series["period_start"].isin(informative)]
    kept = kept.assign(value=significant(kept["value"]))
    return kept.rename(columns={"keyword": "framework"})[["period_start", "framework", "value"]]


def _on_scale_of(native: pd.DataFrame, derived: pd.DataFrame) -> pd.DataFrame:
    """The weekly or monthly series rescaled to the daily one where both have periods, so
    ``value`` keeps one scale across the periods each comes from (shares do not change: one
    factor for every framework). The factor is the median ratio over the shared periods."""
    native = native[["keyword", "period_start", "value"]]
    both = native.merge(derived, on=["keyword", "period_start"], suffixes=("_native", "_daily"))
    both = both[(both["value_native"] > 0) & (both["value_daily"] > 0)]
    if both.empty:
        return native
    factor = float(np.exp(np.median(np.log(both["value_daily"] / both["value_native"]))))
    return native.assign(value=native["value"] * factor)


def rebuild(engine: Engine, settings: Settings) -> int:
    """Replace the scaled series and shares of the configured geo, category and property;
    returns rows written. Other combinations' series and shares are left alone."""
    g = settings.gtrends
    variant = g.variant
    fitted = {
        resolution: scaled_series(engine, settings, resolution)
        for resolution in ("day", "week", "month")
    }
    series = {
        resolution: frame.assign(value=significant(frame["value"])) if len(frame) else frame
        for resolution, (frame, _) in fitted.items()
    }
    informative = {resolution: periods for resolution, (_, periods) in fitted.items()}
    if all(frame.empty for frame in series.values()):
        # A configuration with nothing fetched yet must not wipe what was computed before.
        log.info(
            "gtrends: nothing stored for geo %r, category %d, property %r (variant %s); "
            "nothing rebuilt",
            g.geo,
            g.category,
            g.property,
            variant,
        )
        return 0
    share_table = shares.share_rows(
        shares.frame_triples(_share_values(series["day"], informative["day"], settings)),
        SOURCE,
        variant,
        "day",
    )
    for granularity in ("week", "month"):
        daily = series["day"]
        derived = _period_mean(daily, granularity) if len(daily) else daily
        native = _on_scale_of(series[granularity], derived)
        covered = set(derived["period_start"])
        combined = pd.concat([derived, native[~native["period_start"].isin(covered)]])
        # A period of daily means counts when one of its days did; a native one by its cells.
        useful = informative[granularity] | set(
            tie.period_starts(pd.Series(sorted(informative["day"]), dtype=str), granularity)
            if informative["day"]
            else []
        )
        share_table += shares.share_rows(
            shares.frame_triples(_share_values(combined, useful, settings)),
            SOURCE,
            variant,
            granularity,
        )

    series_rows = [
        {
            "framework": row.keyword,
            "geo": g.geo,
            "category": g.category,
            "property": g.property,
            "resolution": resolution,
            "period_start": row.period_start,
            "value": float(row.value),
            "observations": int(row.observations),
        }
        for resolution, frame in series.items()
        for row in frame.itertuples(index=False)
    ]
    with engine.begin() as connection:
        changed = replace_rows(
            connection,
            GtrendsSeries,
            series_rows,
            SERIES_KEY,
            [
                GtrendsSeries.geo == g.geo,
                GtrendsSeries.category == g.category,
                GtrendsSeries.property == g.property,
            ],
        )
        changed += shares.replace_shares(
            connection,
            share_table,
            [FrameworkShare.source == SOURCE, FrameworkShare.variant == variant],
        )
    log.info(
        "gtrends %s: %d series rows, %d share rows (%d changed)",
        variant,
        len(series_rows),
        len(share_table),
        changed,
    )
    return changed
