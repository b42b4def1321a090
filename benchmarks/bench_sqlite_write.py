"""The SQLite write floor for the Papers-with-Code links: what one ``executemany`` costs per
layout, with the rows a full-size import stores.

    .venv/bin/python benchmarks/bench_sqlite_write.py [--dir DIR]

The rows come from ``archive_source.read_archive`` on the full-size Parquet archive (generated
by ``bench_pwc.py`` into DIR when missing). Each layout is written once, in this process, into
a fresh table; "file" layouts go to a WAL database in a temporary folder and are committed.
The point of the table is the floor: about 1 µs per row goes to Python's sqlite3 driver
whatever is stored, which bounds how close a per-link store can come to DuckDB.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

STORED = ["paper_url", "repo_url", "arxiv_id", "is_official", "framework", "published"]
KEYED = ", PRIMARY KEY (paper_url, repo_url)) WITHOUT ROWID"
UPDATABLE = STORED[2:]
UPSERT = (
    " ON CONFLICT (paper_url, repo_url) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATABLE)
    + " WHERE "
    + " OR ".join(f"pwc_links.{c} IS NOT excluded.{c}" for c in UPDATABLE)
)


def layouts() -> list[tuple[str, list[str], str, str, bool]]:
    """(what, columns, table definition tail, statement tail, into a WAL file?)"""
    return [
        ("6 stored columns, key, WITHOUT ROWID, WAL file (as stored)", STORED, KEYED, "", True),
        ("the same through the ON CONFLICT upsert", STORED, KEYED, UPSERT, True),
        ("the same, in memory", STORED, KEYED, "", False),
        ("6 columns, no key, in memory", STORED, ")", "", False),
        ("3 short columns, no key, in memory", STORED[3:], ")", "", False),
        ("2 key columns, WITHOUT ROWID, in memory", STORED[:2], KEYED, "", False),
    ]


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def write(
    folder: Path, rows: list[tuple], columns: list[str], table: str, tail: str, on_file: bool
) -> tuple[float, float]:
    """(executemany seconds, commit seconds) for one layout."""
    path = folder / f"write-{len(list(folder.iterdir()))}.db" if on_file else ":memory:"
    connection = sqlite3.connect(path, isolation_level=None)
    if on_file:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute(f"CREATE TABLE pwc_links ({', '.join(columns)}{table}")
    picked = [STORED.index(c) for c in columns]
    values = [tuple(row[i] for i in picked) for row in rows]
    statement = f"INSERT INTO pwc_links VALUES ({', '.join('?' * len(columns))}){tail}"
    connection.execute("BEGIN")
    insert = timed(lambda: connection.executemany(statement, values))
    commit = timed(lambda: connection.execute("COMMIT"))
    connection.close()
    return insert, commit


def json_each(folder: Path, rows: list[tuple]) -> tuple[float, float]:
    """The same rows as one JSON text, parsed by SQLite itself (``json_each``)."""
    import json

    text = json.dumps(rows)
    connection = sqlite3.connect(folder / "json.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"CREATE TABLE pwc_links ({', '.join(STORED)}{KEYED}")
    fields = ", ".join(f"value ->> {i}" for i in range(len(STORED)))
    connection.execute("BEGIN")
    insert = timed(
        lambda: connection.execute(
            f"INSERT INTO pwc_links SELECT {fields} FROM json_each(?)", (text,)
        )
    )
    commit = timed(lambda: connection.execute("COMMIT"))
    connection.close()
    return insert, commit


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_pwc import DEFAULT_DIR, archive_files
    from pipeline.sources.pwc import archive_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="archive folder (cache)")
    args = parser.parse_args(argv)
    links, papers = archive_files(args.dir, "parquet")
    stored = archive_source.read_archive(links, [papers]).links
    rows = list(zip(*(stored[c].to_pylist() for c in STORED), strict=True))
    print(f"SQLite {sqlite3.sqlite_version}, {len(rows):,} rows as a full import stores them\n")
    print("| what is inserted | executemany s | commit s |\n|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        folder = Path(tmp)
        for what, columns, table, tail, on_file in layouts():
            insert, commit = write(folder, rows, columns, table, tail, on_file)
            print(
                f"| {what} | {insert:.2f} | {commit:.2f} |"
                if on_file
                else f"| {what} | {insert:.2f} | |"
            )
        insert, commit = json_each(folder, rows)
        print(
            f"| one JSON text, INSERT … SELECT FROM json_each(?), WAL file "
            f"| {insert:.2f} | {commit:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
