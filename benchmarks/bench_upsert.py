"""Upsert 1,000,000 framework_share-shaped rows through storage.upsert, against plain sqlite3.

Baseline: ``sqlite3.executemany`` of a plain INSERT of the same rows into the same (migrated)
table, in the same run. Target: the helper reaches at least half the baseline's speed, and a
second upsert of the same rows changes nothing.

    .venv/bin/python benchmarks/bench_upsert.py [--rows N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from storage import migrate
from storage.db import make_engine
from storage.models import FrameworkShare
from storage.upsert import upsert

COLUMNS = ["source", "variant", "granularity", "period_start", "framework", "value", "share"]
KEY = COLUMNS[:5]
FRAMEWORKS = [
    "pytorch",
    "tensorflow",
    "jax",
    "mxnet",
    "paddlepaddle",
    "mindspore",
    "caffe2",
    "torch",
    "other",
    "keras",
]


def make_rows(n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        day, framework = divmod(i, len(FRAMEWORKS))
        series, day = divmod(day, 36_500)
        rows.append(
            (
                "gtrends",
                f"geo{series}",
                "day",
                f"{1900 + day // 365:04d}-{day % 365:03d}",
                FRAMEWORKS[framework],
                float(i % 997),
                (i % 997) / 997,
            )
        )
    return rows


def migrated_file(folder: Path, name: str) -> Path:
    path = folder / name
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


def bench(n: int) -> dict[str, float]:
    rows = make_rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain_file = migrated_file(folder, "plain.db")
        connection = sqlite3.connect(plain_file)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        with connection:
            connection.executemany(
                f"INSERT INTO framework_share ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        plain_seconds = time.perf_counter() - started
        connection.close()

        engine = make_engine(f"sqlite:///{migrated_file(folder, 'helper.db')}")
        dicts = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        started = time.perf_counter()
        with engine.begin() as conn:
            first = upsert(conn, FrameworkShare, dicts, KEY)
        helper_seconds = time.perf_counter() - started
        started = time.perf_counter()
        with engine.begin() as conn:
            second = upsert(conn, FrameworkShare, dicts, KEY)
        repeat_seconds = time.perf_counter() - started
        engine.dispose()
    assert first == n, first
    return {
        "rows": n,
        "plain_rows_per_s": n / plain_seconds,
        "helper_rows_per_s": n / helper_seconds,
        "ratio": plain_seconds / helper_seconds,
        "repeat_rows_per_s": n / repeat_seconds,
        "repeat_changed": second,
    }


def report(result: dict[str, float]) -> str:
    return "\n".join(
        [
            f"Upsert benchmark ({result['rows']:,} framework_share rows, SQLite file, WAL)",
            "",
            "| writer | rows/s |",
            "|---|---|",
            f"| plain sqlite3 executemany INSERT (baseline) | {result['plain_rows_per_s']:,.0f} |",
            f"| storage.upsert, first load | {result['helper_rows_per_s']:,.0f} |",
            f"| storage.upsert, same rows again | {result['repeat_rows_per_s']:,.0f} |",
            "",
            f"helper / baseline speed: {result['ratio']:.2f} (target >= 0.5); "
            f"rows changed by the repeat: {result['repeat_changed']} (target 0)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    print(report(bench(parser.parse_args().rows)))


if __name__ == "__main__":
    main()
