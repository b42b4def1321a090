"""`trends shares` and `trends export` over whatever framework_share holds."""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import os
import stat
import threading
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.app import App
from pipeline.output import write_parquet, write_rows
from storage.models import FrameworkShare
from storage.upsert import upsert
from tests.conftest import run_cli, write_config

KEY = ["source", "variant", "granularity", "period_start", "framework"]


def share(source: str, period: str, framework: str, value: float, total: float) -> dict:
    return {
        "source": source,
        "variant": "all",
        "granularity": "quarter",
        "period_start": period,
        "framework": framework,
        "value": value,
        "share": value / total,
    }


ROWS = [
    share("pwc", "2024-01-01", "pytorch", 60, 100),
    share("pwc", "2024-01-01", "tensorflow", 30, 100),
    share("pwc", "2024-01-01", "other", 10, 100),
    share("pwc", "2024-04-01", "pytorch", 70, 100),
    share("pwc", "2024-04-01", "tensorflow", 20, 100),
    share("pwc", "2024-04-01", "other", 10, 100),
    share("pwc-api", "2025-07-01", "pytorch", 5, 10),
    share("pwc-api", "2025-07-01", "jax", 5, 10),
]


@pytest.fixture
def filled(app: App) -> App:
    with app.writing(), app.engine.begin() as connection:
        upsert(connection, FrameworkShare, ROWS, KEY)
    return app


def test_shares_table_is_one_percent_table_per_series(filled: App, config_file: Path) -> None:
    result = run_cli(config_file, "shares", "--source", "pwc")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "pwc / all / quarter"
    assert lines[1].split() == ["period_start", "pytorch", "tensorflow", "other"]
    assert lines[3].split() == ["2024-01-01", "60.0%", "30.0%", "10.0%"]


def test_shares_filters_and_machine_formats(filled: App, config_file: Path) -> None:
    rows = json.loads(
        run_cli(
            config_file,
            "shares",
            "--start",
            "2024-04-01",
            "--end",
            "2024-12-31",
            "--format",
            "json",
        ).stdout
    )
    assert {(r["source"], r["period_start"]) for r in rows} == {("pwc", "2024-04-01")}
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    csv_lines = run_cli(config_file, "shares", "--latest", "--format", "csv").stdout.splitlines()
    assert csv_lines[0] == "source,variant,granularity,period_start,framework,value,share"
    assert {line.split(",")[3] for line in csv_lines[1:]} == {"2024-04-01", "2025-07-01"}


def test_shares_bad_date_is_a_usage_error(filled: App, config_file: Path) -> None:
    result = run_cli(config_file, "shares", "--start", "2024-13-01")
    assert result.exit_code == 2
    assert result.stderr == "Error: --start: expected a date YYYY-MM-DD, got '2024-13-01'\n"


def test_shares_on_empty_database_says_so(app: App, config_file: Path) -> None:
    result = run_cli(config_file, "shares")
    assert result.exit_code == 0
    assert "No shares stored yet" in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_table_in_each_format(filled: App, config_file: Path, tmp_path: Path, fmt) -> None:
    output = tmp_path / "out" / f"shares.{fmt}"
    result = run_cli(
        config_file, "export", "--table", "framework_share", "--format", fmt, "-o", str(output)
    )
    assert result.exit_code == 0, result.output
    assert "wrote 8 rows" in result.stderr
    if fmt == "parquet":
        table = pq.read_table(output)
        assert table.num_rows == 8
        assert table.column_names[:3] == ["id", "source", "variant"]
    elif fmt == "json":
        assert len(json.loads(output.read_text())) == 8
    else:
        assert len(output.read_text().splitlines()) == 9


def test_export_query(filled: App, config_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "q.csv"
    query = "SELECT framework, sum(value) AS total FROM framework_share GROUP BY 1 ORDER BY 2 DESC"
    result = run_cli(config_file, "export", "--query", query, "--format", "csv", "-o", str(output))
    assert result.exit_code == 0
    assert output.read_text().splitlines()[:2] == ["framework,total", "pytorch,135.0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "nope"], "no table or view named 'nope'"),
        (["--query", "DELETE FROM framework_share"], "query refused"),
        ([], "give exactly one of --table or --query"),
    ],
)
def test_export_errors_exit_2_and_write_no_file(
    filled: App, config_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    output = tmp_path / "x.csv"
    result = run_cli(config_file, "export", *args, "--format", "csv", "-o", str(output))
    assert result.exit_code == 2
    assert message in result.stderr
    assert not output.exists()
    assert list(tmp_path.glob(".x.csv.*")) == []


def test_parquet_export_widens_types_that_change_after_the_first_chunk(tmp_path: Path) -> None:
    """SQLite gives no result types, so they are inferred per chunk: a column that is NULL at
    first, integers followed by reals and text among numbers must still export (the file is
    rewritten once with the wider types). PostgreSQL's NUMERIC is written as a float, as the
    same query gives on SQLite."""
    rows = [(None, 1, 1, Decimal("1.5")), (None, 2, 2, Decimal("2.5"))]
    rows += [("late text", 2.5, "three", Decimal("3.25")), ("x", 4, 4, Decimal("4.125"))]
    path = tmp_path / "out.parquet"
    assert write_parquet(["late", "number", "mixed", "amount"], iter(rows), path, chunk=2) == 4
    table = pq.read_table(path)
    assert str(table.schema.field("late").type) == "string"
    assert str(table.schema.field("number").type) == "double"
    assert str(table.schema.field("mixed").type) == "string"
    assert table.column("late").to_pylist() == [None, None, "late text", "x"]
    assert table.column("number").to_pylist() == [1.0, 2.0, 2.5, 4.0]
    assert table.column("mixed").to_pylist() == ["1", "2", "three", "4"]
    assert str(table.schema.field("amount").type) == "double"
    assert table.column("amount").to_pylist() == [1.5, 2.5, 3.25, 4.125]


def test_parquet_export_of_no_rows_keeps_the_column_names(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    assert write_parquet(["a", "b"], iter([]), path) == 0
    assert pq.read_table(path).column_names == ["a", "b"]


TABLE = """\
percent  official  day
-------  --------  ----------
50.3     1         2024-01-01
18       0         2024-01-01
"""
CSV = "percent,official,day\n50.3,1,2024-01-01\n18.0,0,2024-01-01\n"
JSON = """[
 {"percent": 50.3, "official": 1, "day": "2024-01-01"},
 {"percent": 18.0, "official": 0, "day": "2024-01-01"}
]
"""


@pytest.mark.parametrize(("fmt", "expected"), [("table", TABLE), ("csv", CSV), ("json", JSON)])
def test_postgresql_values_are_written_as_sqlite_gives_them(fmt: str, expected: str) -> None:
    """PostgreSQL's NUMERIC (``ROUND(CAST(… AS NUMERIC), 1)``) comes back as Decimal and its
    booleans as bool; SQLite gives a float and 1/0. Output must not depend on the backend."""
    day = dt.date(2024, 1, 1)
    rows = [(Decimal("50.3"), True, day), (Decimal("18.0"), False, day)]
    out = io.StringIO()
    write_rows(fmt, ["percent", "official", "day"], rows, out)
    assert out.getvalue() == expected


def test_parquet_has_the_same_types_on_both_backends(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    write_parquet(["percent", "official"], iter([(Decimal("50.3"), True)]), path)
    table = pq.read_table(path)
    assert [str(field.type) for field in table.schema] == ["double", "int64"]
    assert table.to_pylist() == [{"percent": 50.3, "official": 1}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "pwc-archive"], "unknown source 'pwc-archive' (its shares are stored as"),
        (["--source", "nosuch"], "unknown source 'nosuch'; one of gtrends, pwc, pwc-api"),
        (["--start", "2024-05-01", "--end", "2024-01-01"], "--end 2024-01-01 is before --start"),
        (["--start", "20240101"], "--start: expected a date YYYY-MM-DD"),
    ],
)
def test_shares_filters_are_checked(filled: App, config_file: Path, args, message) -> None:
    """An unknown source or an inverted range would otherwise print "no shares stored yet"."""
    result = run_cli(config_file, "shares", *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_export_to_standard_output_and_in_key_order(filled: App, config_file: Path) -> None:
    result = run_cli(
        config_file, "export", "--table", "framework_share", "--format", "csv", "-o", "-"
    )
    assert result.exit_code == 0 and "wrote 8 rows to standard output" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("id,source,variant") and len(lines) == 9
    ids = [int(line.split(",")[0]) for line in lines[1:]]
    assert ids == sorted(ids)  # by the primary key, the same on every backend
    parquet = run_cli(config_file, "export", "--table", "runs", "--format", "parquet", "-o", "-")
    assert parquet.exit_code == 2 and "Parquet needs a file" in parquet.stderr


def test_export_to_an_unwritable_place_names_the_file(
    filled: App, config_file: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out.csv"
    result = run_cli(config_file, "export", "--table", "runs", "--format", "csv", "-o", str(target))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot write {target}: ")
    assert result.stderr.count("\n") == 1


def test_export_through_a_symlink_replaces_the_file_it_points_to(
    filled: App, config_file: Path, tmp_path: Path
) -> None:
    real = tmp_path / "shared" / "runs.csv"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "runs.csv"
    link.symlink_to(real)
    result = run_cli(config_file, "export", "--table", "runs", "--format", "csv", "-o", str(link))
    assert result.exit_code == 0
    assert link.is_symlink()
    assert real.read_text().startswith("id,command,")


def test_export_into_a_fifo_writes_into_it(filled: App, config_file: Path, tmp_path: Path) -> None:
    """A pipe (or /dev/stdout) is written in place, not replaced by a regular file."""
    fifo = tmp_path / "runs.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    result = run_cli(config_file, "export", "--table", "runs", "--format", "csv", "-o", str(fifo))
    reader.join(timeout=10)
    assert result.exit_code == 0
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].startswith("id,command,")


def test_a_failed_write_names_the_file_exit_1_and_leaves_nothing(
    filled: App, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pipeline.reports.write_rows", disk_full)
    target = tmp_path / "exports" / "out.csv"
    result = run_cli(config_file, "export", "--table", "runs", "--format", "csv", "-o", str(target))
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {target}: No space left on device\n"
    assert list(target.parent.iterdir()) == []  # no file, no temporary left behind


def test_parquet_row_groups_stay_small_for_wide_rows(tmp_path: Path, monkeypatch) -> None:
    """Rows with large bodies (raw_responses) are written in smaller chunks, not 50,000 at a
    time, so memory follows bytes as well as rows."""
    monkeypatch.setattr("pipeline.output.PARQUET_CHUNK_BYTES", 1_000_000)
    rows = ((i, "x" * 10_000) for i in range(3_000))  # ~30 MB in all
    path = tmp_path / "wide.parquet"
    assert write_parquet(["id", "body"], rows, path) == 3_000
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == 3_000 and metadata.num_row_groups > 5


def test_tied_shares_are_listed_in_framework_order_on_both_backends(
    database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL returns ties in heap (insertion) order; the output must not depend on it."""
    config = write_config(tmp_path / "db.toml", database_url)
    app = App.from_config(config)
    tied = [share("pwc", "2024-01-01", f, 0, 10) for f in ("tensorflow", "other", "jax")]
    with app.writing(), app.engine.begin() as connection:
        upsert(
            connection, FrameworkShare, [*tied, share("pwc", "2024-01-01", "pytorch", 10, 10)], KEY
        )
    app.close()
    result = run_cli(config, "shares", "--format", "csv")
    frameworks = [line.split(",")[4] for line in result.stdout.splitlines()[1:]]
    assert frameworks == ["pytorch", "jax", "other", "tensorflow"]
