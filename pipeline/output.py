"""Writing rows as an aligned table, CSV, JSON or Parquet."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO, Any

FORMATS = ("table", "csv", "json")
FILE_FORMATS = ("csv", "parquet", "json")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> int:
    """An aligned plain-text table (reads everything: meant for terminal-sized results)."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(column) for column in columns]
    for row in text_rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in text_rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return len(text_rows)


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def write_json(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> int:
    """A JSON array of objects, streamed row by row."""
    out.write("[")
    count = 0
    for row in rows:
        out.write(",\n " if count else "\n ")
        out.write(json.dumps(dict(zip(columns, row, strict=True)), default=str))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_rows(
    fmt: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]
) -> int:
    writers = {"table": write_table, "csv": write_csv, "json": write_json}
    return writers[fmt](columns, rows, out)


def write_parquet(
    columns: Sequence[str], rows: Iterator[Sequence[Any]], path: Path, chunk: int = 50_000
) -> int:
    """Parquet written in row groups, so a large export never sits in memory whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    count = 0
    try:
        while batch := list(islice(rows, chunk)):
            table = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in batch])
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            count += len(batch)
        if writer is None:  # no rows: still a valid file with the column names
            empty = pa.table({name: pa.array([], type=pa.string()) for name in columns})
            pq.write_table(empty, path)
    finally:
        if writer is not None:
            writer.close()
    return count


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    temporary.chmod(0o644)  # mkstemp makes it private (0600); exports and charts are shared
    try:
        yield temporary
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
