"""The public views and docs/QUERYING.md agree with the database, on SQLite and PostgreSQL:
documented columns exist, ready queries run, the Datasette metadata names real tables."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text

from storage import migrate
from storage.db import make_engine
from storage.models import FrameworkShare, GtrendsSeries, RawResponse, Run

ROOT = Path(__file__).resolve().parent.parent
QUERYING = (ROOT / "docs" / "QUERYING.md").read_text(encoding="utf-8")
METADATA = json.loads((ROOT / "docs" / "datasette-metadata.json").read_text(encoding="utf-8"))


def documented(section: str) -> dict[str, list[str]]:
    """``### `name` `` headings of a ``## section`` with their column tables."""
    body = QUERYING.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for part in re.split(r"^### ", body, flags=re.M)[1:]:
        name = re.match(r"`(\w+)`", part)
        assert name, part[:40]
        found[name.group(1)] = re.findall(r"^\| `(\w+)` \|", part, flags=re.M)
    return found


TABLES = documented("Tables")
VIEWS = documented("Views")
SQL_BLOCKS = re.findall(r"```sql\n(.*?)```", QUERYING, flags=re.S)
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", QUERYING, flags=re.S)
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", QUERYING, flags=re.S)


def test_the_docs_were_parsed() -> None:
    assert set(TABLES) == {"framework_share", "gtrends_series", "runs", "raw_responses"}
    assert set(VIEWS) == {
        "latest_shares",
        "pytorch_vs_tensorflow",
        "quarterly_pwc_shares",
        "weekly_gtrends_shares",
    }
    assert all(len(columns) >= 5 for columns in {**TABLES, **VIEWS}.values())
    assert len(SQL_BLOCKS) >= 5 and len(PYTHON_BLOCKS) == 2


def share_rows() -> list[dict]:
    rows = []

    def period(source, variant, granularity, start, values):
        total = sum(values.values())
        for framework, value in values.items():
            rows.append(
                {
                    "source": source,
                    "variant": variant,
                    "granularity": granularity,
                    "period_start": start,
                    "framework": framework,
                    "value": value,
                    "share": value / total,
                }
            )

    period("gtrends", "world", "week", "2024-01-07", {"pytorch": 40, "tensorflow": 50, "jax": 10})
    period("gtrends", "world", "week", "2024-01-14", {"pytorch": 55, "tensorflow": 35, "jax": 10})
    period("gtrends", "world", "month", "2024-01-01", {"pytorch": 50, "tensorflow": 50})
    period("pwc", "all", "quarter", "2019-01-01", {"pytorch": 30, "tensorflow": 60, "other": 10})
    period("pwc", "all", "quarter", "2020-01-01", {"pytorch": 60, "tensorflow": 30, "other": 10})
    period("pwc", "official", "quarter", "2020-01-01", {"pytorch": 8, "tensorflow": 2})
    period("pwc-api", "all", "quarter", "2025-07-01", {"pytorch": 9, "jax": 1})
    return rows


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database with a little of everything public."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(FrameworkShare), share_rows())
        run_id = connection.execute(
            insert(Run)
            .values(
                command="collect",
                source="gtrends",
                status="ok",
                started_at="2024-01-20T06:00:00Z",
                finished_at="2024-01-20T06:05:00Z",
                requests=1,
                rows=6,
            )
            .returning(Run.id)
        ).scalar_one()
        connection.execute(
            insert(RawResponse).values(
                run_id=run_id,
                source="gtrends",
                method="GET",
                url="https://trends.example/api/widgetdata/multiline",
                params="{}",
                status=200,
                content_type="application/json",
                fetched_at="2024-01-20T06:01:00Z",
                body="{}",
                body_sha256="0" * 64,
                body_bytes=2,
            )
        )
        connection.execute(
            insert(GtrendsSeries),
            [
                {
                    "framework": "pytorch",
                    "geo": "",
                    "category": 0,
                    "property": "",
                    "resolution": "week",
                    "period_start": "2024-01-07",
                    "value": 100.0,
                    "observations": 2,
                }
            ],
        )
    yield engine
    engine.dispose()


def select_all(engine: Engine, query: str) -> tuple[list[str], list[tuple]]:
    with engine.connect() as connection:
        result = connection.execute(text(query))
        return list(result.keys()), [tuple(row) for row in result]


@pytest.mark.parametrize("name", [*TABLES, *VIEWS])
def test_every_documented_table_and_view_has_exactly_its_columns(engine: Engine, name: str) -> None:
    columns, _ = select_all(engine, f"SELECT * FROM {name} WHERE 1 = 0")
    assert columns == {**TABLES, **VIEWS}[name]


def test_latest_shares_holds_each_series_newest_period(engine: Engine) -> None:
    _, rows = select_all(
        engine,
        "SELECT source, variant, granularity, period_start, COUNT(*) FROM latest_shares "
        "GROUP BY source, variant, granularity, period_start ORDER BY 1, 2, 3",
    )
    assert rows == [
        ("gtrends", "world", "month", "2024-01-01", 2),
        ("gtrends", "world", "week", "2024-01-14", 3),
        ("pwc", "all", "quarter", "2020-01-01", 3),
        ("pwc", "official", "quarter", "2020-01-01", 2),
        ("pwc-api", "all", "quarter", "2025-07-01", 2),
    ]


def test_pytorch_vs_tensorflow_puts_both_on_one_row(engine: Engine) -> None:
    _, rows = select_all(
        engine,
        "SELECT period_start, pytorch_share, tensorflow_share, pytorch_value, tensorflow_value "
        "FROM pytorch_vs_tensorflow WHERE source = 'gtrends' AND granularity = 'week' "
        "ORDER BY period_start",
    )
    assert rows == [
        ("2024-01-07", pytest.approx(0.4), pytest.approx(0.5), 40, 50),
        ("2024-01-14", pytest.approx(0.55), pytest.approx(0.35), 55, 35),
    ]
    _, api = select_all(
        engine, "SELECT tensorflow_share FROM pytorch_vs_tensorflow WHERE source = 'pwc-api'"
    )
    assert api == [(None,)]


def test_quarterly_pwc_shares_has_all_and_official_side_by_side(engine: Engine) -> None:
    _, rows = select_all(
        engine,
        "SELECT quarter_start, framework, implementations, share, official_implementations, "
        "official_share FROM quarterly_pwc_shares ORDER BY quarter_start, framework",
    )
    assert rows[3:] == [
        ("2020-01-01", "other", 10, pytest.approx(0.1), None, None),
        ("2020-01-01", "pytorch", 60, pytest.approx(0.6), 8, pytest.approx(0.8)),
        ("2020-01-01", "tensorflow", 30, pytest.approx(0.3), 2, pytest.approx(0.2)),
    ]
    assert len(rows) == 6
    counts = [count for row in rows for count in (row[2], row[4]) if count is not None]
    assert counts and all(type(count) is int for count in counts)  # 30, not 30.0 (0004)


def test_weekly_gtrends_shares_is_weekly_gtrends_only(engine: Engine) -> None:
    _, rows = select_all(
        engine, "SELECT DISTINCT week_start, geo FROM weekly_gtrends_shares ORDER BY week_start"
    )
    assert rows == [("2024-01-07", "world"), ("2024-01-14", "world")]


@pytest.mark.parametrize("query", SQL_BLOCKS, ids=lambda q: " ".join(q.split()[:6]))
def test_every_ready_query_runs(engine: Engine, query: str) -> None:
    columns, rows = select_all(engine, query.strip().rstrip(";"))
    assert columns and rows  # the sample data gives every query something to show


def test_downgrade_drops_the_views_and_upgrade_restores_them(database_url: str) -> None:
    from alembic import command

    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "0001")
    with engine.connect() as connection, pytest.raises(Exception, match="latest_shares"):
        connection.execute(text("SELECT * FROM latest_shares"))
    migrate.upgrade(engine)
    assert select_all(engine, "SELECT * FROM latest_shares")[1] == []
    engine.dispose()


# --- the snippets for sqlite3, pandas and Datasette, on a SQLite file ---------------------


@pytest.fixture
def data_dir_db(tmp_path: Path) -> Path:
    """data/trends.db under the working directory (the tests run in tmp_path), filled."""
    path = tmp_path / "data" / "trends.db"
    path.parent.mkdir()
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(FrameworkShare), share_rows())
    engine.dispose()
    return path


@pytest.mark.parametrize("snippet", PYTHON_BLOCKS, ids=["sqlite3", "sqlalchemy"])
def test_pandas_snippets_run_read_only(
    data_dir_db: Path, snippet: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(snippet, "QUERYING.md", "exec"), {})  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    assert "pytorch" in printed and "tensorflow" in printed


def test_sqlite3_shell_commands_run(data_dir_db: Path, tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line shell is not installed")
    for block in SHELL_BLOCKS:
        if "sqlite3 " not in block:
            continue
        result = subprocess.run(
            ["sh", "-e", "-c", block], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "pytorch" in result.stdout
    csv = (tmp_path / "quarterly_pwc_shares.csv").read_text().splitlines()
    assert csv[0] == ",".join(VIEWS["quarterly_pwc_shares"])


def test_datasette_command_uses_the_metadata_and_no_immutable_flag() -> None:
    (line,) = [b.strip() for b in SHELL_BLOCKS if b.strip().startswith("datasette")]
    assert line == "datasette data/trends.db --metadata docs/datasette-metadata.json"


METADATA_TABLES = METADATA["databases"]["trends"]["tables"]


def test_metadata_describes_exactly_the_documented_tables_and_views() -> None:
    assert set(METADATA_TABLES) == set(TABLES) | set(VIEWS)
    assert "CC BY-SA 4.0" in METADATA["license"]
    for name, entry in METADATA_TABLES.items():
        assert entry["description"], name
        assert list(entry["columns"]) == {**TABLES, **VIEWS}[name], name


@pytest.mark.parametrize("name", list(METADATA_TABLES))
def test_every_table_and_view_in_the_metadata_exists(engine: Engine, name: str) -> None:
    columns, _ = select_all(engine, f"SELECT * FROM {name} WHERE 1 = 0")
    assert columns == list(METADATA_TABLES[name]["columns"])


def test_datasette_serves_the_database_with_the_metadata(data_dir_db: Path) -> None:
    datasette_app = pytest.importorskip("datasette.app")

    async def fetch() -> tuple[dict, str, list[dict]]:
        ds = datasette_app.Datasette([str(data_dir_db)], metadata=METADATA)
        await ds.invoke_startup()
        database = (await ds.client.get("/trends.json")).json()
        page = (await ds.client.get("/trends/quarterly_pwc_shares")).text
        rows = (await ds.client.get("/trends/latest_shares.json?_shape=array")).json()
        return database, page, rows

    database, page, rows = asyncio.run(fetch())
    views = {view["name"] for view in database["views"]}
    assert set(VIEWS) <= views
    assert set(TABLES) <= {table["name"] for table in database["tables"]}
    assert "all implementations and official ones only" in page
    assert "CC BY-SA 4.0" in page
    assert {row["period_start"] for row in rows} == {
        "2024-01-14",
        "2024-01-01",
        "2020-01-01",
        "2025-07-01",
    }
