"""Writing rows as an aligned table, CSV, JSON or Parquet."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import IO, Any

from pipeline.errors import TrendsError, UsageError

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


def portable_rows(
    rows: Iterable[Sequence[Any]], *, hex_bytes: bool = False
) -> Iterator[tuple[Any, ...]]:
    """Rows as SQLite gives them, whichever the backend, so output does not depend on it:
    PostgreSQL's booleans become 1/0 and its NUMERIC (Decimal) a float. ``hex_bytes``: binary
    values (BLOB, bytea) as hex text, for the text formats."""
    for row in rows:
        yield tuple(_portable(value, hex_bytes) for value in row)


def _portable(value: Any, hex_bytes: bool) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return float(value)
    if hex_bytes and isinstance(value, bytes):
        return value.hex()
    return value


def _json_default(value: Any) -> Any:
    return str(value)  # dates, times, …


def write_json(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> int:
    """A JSON array of objects, streamed row by row."""
    out.write("[")
    count = 0
    for row in rows:
        out.write(",\n " if count else "\n ")
        out.write(json.dumps(dict(zip(columns, row, strict=True)), default=_json_default))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_rows(
    fmt: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]
) -> int:
    """Rows in a text format; binary values (BLOB, bytea) are written as hex."""
    writers = {"table": write_table, "csv": write_csv, "json": write_json}
    return writers[fmt](columns, portable_rows(rows, hex_bytes=True), out)


PARQUET_CHUNK_BYTES = 32 * 1024 * 1024  # one row group's Arrow data, at most (about)


def write_parquet(
    columns: Sequence[str], rows: Iterator[Sequence[Any]], path: Path, chunk: int = 50_000
) -> int:
    """Parquet written in row groups of at most ``chunk`` rows and about 32 MiB, so a large
    export never sits in memory whole.

    Column types are inferred from the rows (SQLite has no result types). When a later chunk
    does not fit the types so far (a column NULL until then, integers followed by reals,
    decimals of another scale, mixed values), the types are widened and what was written is
    rewritten once with them.
    """
    import pyarrow.parquet as pq

    rows = portable_rows(rows)
    writer: pq.ParquetWriter | None = None
    count = 0
    try:
        size = min(chunk, 1_000)  # a first, small chunk measures how wide the rows are
        while batch := list(islice(rows, size)):
            table = _arrow_table(columns, batch)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            elif table.schema != writer.schema:
                schema = _widened(writer.schema, table.schema)
                if schema != writer.schema:
                    writer.close()
                    written = pq.read_table(path).cast(schema)
                    writer = pq.ParquetWriter(path, schema)
                    writer.write_table(written)
            writer.write_table(table.cast(writer.schema))
            count += len(batch)
            row_bytes = max(1, table.nbytes // len(batch))  # wide rows (bodies): fewer per chunk
            size = max(100, min(chunk, PARQUET_CHUNK_BYTES // row_bytes))
        if writer is None:  # no rows: still a valid file with the column names
            writer = pq.ParquetWriter(path, _arrow_table(columns, []).schema)
    finally:
        if writer is not None:
            writer.close()
    return count


def _arrow_table(columns: Sequence[str], rows: list[Sequence[Any]]) -> Any:
    """Rows as an Arrow table; a column of mixed values (SQLite allows it) becomes text."""
    import pyarrow as pa

    arrays = []
    for index in range(len(columns)):
        values = [row[index] for row in rows]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array([None if v is None else str(v) for v in values], pa.string())
        if not rows:  # no values to go by: text
            array = array.cast(pa.string())
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=list(columns))


def _widened(old: Any, new: Any) -> Any:
    """A schema that holds both: Arrow's permissive promotion per column, else text."""
    import pyarrow as pa

    fields = []
    for before, after in zip(old, new, strict=True):
        try:
            fields.append(
                pa.unify_schemas(
                    [pa.schema([before]), pa.schema([after])], promote_options="permissive"
                ).field(0)
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            fields.append(pa.field(before.name, pa.string()))
    return pa.schema(fields)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only if the block succeeds.

    A symbolic link is followed (the file it points to is replaced, the link stays), and a
    target that is not a regular file (a FIFO, ``/dev/stdout``) is written in place: replacing
    it would swap the device or pipe for a plain file. A failed write names ``target``.
    """
    target = Path(os.path.realpath(target))
    if target.exists() and not target.is_file() and not target.is_dir():
        with _naming(target, TrendsError):
            yield target
        return
    with _naming(target, UsageError):  # the place cannot be written to: a usage error
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    temporary.chmod(0o644)  # mkstemp makes it private (0600); exports and charts are shared
    try:
        with _naming(target, TrendsError):  # the write failed (disk full, …): exit 1
            yield temporary
            temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def _naming(target: Path, error_class: type[TrendsError]) -> Iterator[None]:
    """An OS error while writing ``target`` as one line naming it, not our temporary file."""
    try:
        yield
    except OSError as error:
        raise error_class(f"cannot write {target}: {error.strerror or error}") from None
