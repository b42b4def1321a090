"""Rebuild ``gtrends_series`` and the ``gtrends`` rows of ``framework_share`` from stored cells.

Per resolution, every stored window of the configured geo/category/property goes into one joint
least-squares fit (``scale.joint_scale``); the result replaces that resolution's series. The
daily fit also takes the weekly and monthly windows, so that the long daily chain cannot drift
away from them (``tie.py``). Shares:

- ``day`` from the daily series;
- ``week`` (Sunday-start) and ``month``: the mean of the daily series over complete periods,
  and for periods the daily series does not cover, the collected weekly or monthly series.

Shares are scale-free, so combining the two kinds of periods is safe; ``value`` is on the scale
of the series the period came from. Each (geo, category, property) has its own ``variant``
(``GtrendsSettings.variant``), and a rebuild replaces only the configured one.
"""

from __future__ import annotations

import logging

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
        return pd.read_sql(query, connection)


def scaled_series(engine: Engine, settings: Settings, resolution: str) -> pd.DataFrame:
    """One resolution's series; the daily one is tied to the weekly and monthly cells."""
    cells = load_cells(engine, settings, resolution)
    tau = settings.gtrends.threshold
    try:
        if resolution == "day" and not cells.empty:
            coarse = {g: load_cells(engine, settings, g) for g in COARSE}
            return tied_joint_scale(cells, coarse, tau=tau)
        return joint_scale(cells, tau=tau)
    except DisconnectedRequests as error:
        raise StepFailed(
            f"gtrends {resolution} windows cannot be put on one scale ({error}); "
            "backfill the gap with `trends backfill gtrends --start …`"
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


def _named(series: pd.DataFrame) -> pd.DataFrame:
    """The scaled series' ``keyword`` column is the framework key."""
    return series.rename(columns={"keyword": "framework"})[["period_start", "framework", "value"]]


def rebuild(engine: Engine, settings: Settings) -> int:
    """Replace the scaled series and shares of the configured geo, category and property;
    returns rows written. Other combinations' series and shares are left alone."""
    g = settings.gtrends
    variant = g.variant
    series = {
        resolution: scaled_series(engine, settings, resolution)
        for resolution in ("day", "week", "month")
    }
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
    share_table = shares.share_rows(_named(series["day"]), SOURCE, variant, "day")
    for granularity in ("week", "month"):
        derived = _period_mean(series["day"], granularity) if len(series["day"]) else series["day"]
        native = series[granularity][["keyword", "period_start", "value"]]
        covered = set(derived["period_start"])
        combined = pd.concat([derived, native[~native["period_start"].isin(covered)]])
        share_table += shares.share_rows(_named(combined), SOURCE, variant, granularity)

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
