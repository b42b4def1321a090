"""Shares: each framework's value divided by the total of its period, for every source."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection

from storage.models import FrameworkShare
from storage.upsert import replace_rows

SHARE_KEY = ["source", "variant", "granularity", "period_start", "framework"]


def share_rows(
    values: Iterable[tuple[str, str, float]], source: str, variant: str, granularity: str
) -> list[dict]:
    """``framework_share`` rows from (period_start, framework, value) triples.

    Missing values (NaN) are left out; periods whose values add up to 0 have no shares.
    """
    by_period: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for period, framework, value in values:
        if value == value:  # not NaN
            by_period[period].append((framework, float(value)))
    rows = []
    for period, cells in by_period.items():
        total = math.fsum([value for _, value in cells])
        if total > 0:
            rows += [
                {"source": source, "variant": variant, "granularity": granularity,
                 "period_start": period, "framework": framework, "value": value,
                 "share": value / total}
                for framework, value in cells
            ]  # fmt: skip
    return rows


def frame_triples(frame: Any) -> Iterator[tuple[str, str, float]]:
    """The (period_start, framework, value) rows of a pandas DataFrame, for :func:`share_rows`."""
    return frame[["period_start", "framework", "value"]].itertuples(index=False, name=None)


def replace_shares(connection: Connection, rows: list[dict], scope: Sequence[Any]) -> int:
    """Make the ``framework_share`` rows matching ``scope`` exactly ``rows`` (see replace_rows)."""
    return replace_rows(connection, FrameworkShare, rows, SHARE_KEY, scope)
