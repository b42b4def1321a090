"""Shares: each framework's value divided by the total of its period, for every source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from storage.models import FrameworkShare
from storage.upsert import replace_rows

SHARE_KEY = ["source", "variant", "granularity", "period_start", "framework"]


def share_rows(values: pd.DataFrame, source: str, variant: str, granularity: str) -> list[dict]:
    """``framework_share`` rows from ``values`` (columns period_start, framework, value).

    Periods whose values add up to 0 have no shares and are left out.
    """
    if values.empty:
        return []
    totals = values.groupby("period_start")["value"].transform("sum")
    frame = values.assign(share=values["value"] / totals.where(totals > 0)).dropna(subset=["share"])
    return [
        {"source": source, "variant": variant, "granularity": granularity,
         "period_start": row.period_start, "framework": row.framework,
         "value": float(row.value), "share": float(row.share)}
        for row in frame.itertuples(index=False)
    ]  # fmt: skip


def replace_shares(connection: Connection, rows: list[dict], scope: Sequence[Any]) -> int:
    """Make the ``framework_share`` rows matching ``scope`` exactly ``rows`` (see replace_rows)."""
    return replace_rows(connection, FrameworkShare, rows, SHARE_KEY, scope)
