"""The upsert helper on SQLite and PostgreSQL: inserts, updates changed rows, repeats are no-ops."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage import migrate
from storage.db import make_engine
from storage.models import FrameworkShare
from storage.upsert import upsert

KEY = ["source", "variant", "granularity", "period_start", "framework"]


def share_rows(n: int, share: float = 0.5) -> list[dict]:
    return [
        {
            "source": "gtrends",
            "variant": "world",
            "granularity": "day",
            "period_start": f"2020-01-{1 + i % 28:02d}",
            "framework": f"f{i // 28}",
            "value": float(i),
            "share": share,
        }
        for i in range(n)
    ]


def test_upsert_is_idempotent_and_updates_only_changed_rows(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    rows = share_rows(100)
    with engine.begin() as connection:
        assert upsert(connection, FrameworkShare, rows, KEY) == 100
    with engine.begin() as connection:
        assert upsert(connection, FrameworkShare, rows, KEY) == 0
    changed = [dict(row) for row in rows]
    changed[3]["share"] = 0.9
    with engine.begin() as connection:
        assert upsert(connection, FrameworkShare, changed, KEY) == 1
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(FrameworkShare)).scalar() == 100
        stored = connection.execute(
            select(FrameworkShare.share).where(
                FrameworkShare.period_start == rows[3]["period_start"],
                FrameworkShare.framework == rows[3]["framework"],
            )
        ).scalar()
        assert stored == 0.9
    engine.dispose()


def test_upsert_spans_several_chunks_and_rolls_back_with_its_transaction(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    rows = share_rows(25_000)
    try:
        with engine.begin() as connection:
            assert upsert(connection, FrameworkShare, iter(rows), KEY) == 25_000
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(FrameworkShare)).scalar() == 0
    engine.dispose()


def test_upsert_of_nothing_does_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        assert upsert(connection, FrameworkShare, [], KEY) == 0
    engine.dispose()


def test_upsert_takes_tuples_in_the_order_of_columns(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    rows = share_rows(30)
    columns = ["share", *KEY, "value"]  # not the table's order: mapped by name
    as_tuples = [tuple(row[c] for c in columns) for row in rows]
    with engine.begin() as connection:
        assert upsert(connection, FrameworkShare, iter(as_tuples), KEY, columns) == 30
        assert upsert(connection, FrameworkShare, as_tuples, KEY, columns) == 0
        assert upsert(connection, FrameworkShare, rows, KEY) == 0  # same rows as mappings
    with engine.begin() as connection, pytest.raises(ValueError, match="columns"):
        upsert(connection, FrameworkShare, as_tuples, KEY)
    engine.dispose()
