"""The collectors on PostgreSQL: the same code path as on SQLite, against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import query, run_cli, write_config
from tests.fakes import pwc_data
from tests.fakes.gtrends_server import FakeGoogleTrends


def test_gtrends_and_pwc_collect_into_postgresql(postgres_url: str, tmp_path: Path) -> None:
    archive = pwc_data.write_fixture_archive(tmp_path / "archive")
    links_file, papers_file = archive["links.parquet"], archive["papers.json.gz"]
    with FakeGoogleTrends() as fake:
        extra = f'[gtrends]\nbase_url = "{fake.base_url}"\n[pwc]\ncache_dir = "{tmp_path}/c"\n'
        config = write_config(tmp_path / "pg.toml", postgres_url, extra)
        gtrends = ["backfill", "gtrends", "--start", "2024-01-01", "--end", "2024-12-31"]
        assert run_cli(config, *gtrends).exit_code == 0
        assert run_cli(config, *gtrends).exit_code == 0  # resumable: nothing left to fetch
    pwc = ["backfill", "pwc", "--links", str(links_file), "--papers", str(papers_file)]
    assert run_cli(config, *pwc).exit_code == 0
    assert run_cli(config, *pwc, "--force").exit_code == 0  # idempotent

    totals = query(
        postgres_url,
        "SELECT source, granularity, variant, period_start, sum(share) FROM framework_share "
        "GROUP BY 1, 2, 3, 4",
    )
    assert {(s, g) for s, g, *_ in totals} >= {
        ("gtrends", "day"),
        ("gtrends", "week"),
        ("gtrends", "month"),
        ("pwc", "month"),
        ("pwc", "quarter"),
        ("pwc", "year"),
    }
    assert all(float(total) == pytest.approx(1.0) for *_, total in totals)
    assert query(postgres_url, "SELECT count(*) FROM gtrends_fetches")[0][0] == 4
    assert query(postgres_url, "SELECT status FROM runs ORDER BY id") == [("ok",)] * 4
    shown = run_cli(config, "shares", "--latest", "--source", "pwc")
    assert "pwc / official / quarter" in shown.stdout


def test_rebuild_does_not_depend_on_the_physical_row_order(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL returns rows in heap order; the fit must read its cells in a fixed order, or
    a rebuild after a VACUUM or a restore rewrites every series value in its last bits."""
    with FakeGoogleTrends() as fake:
        config = write_config(
            tmp_path / "pg.toml", postgres_url, f'[gtrends]\nbase_url = "{fake.base_url}"\n'
        )
        backfill = ["backfill", "gtrends", "--start", "2024-01-01", "--end", "2024-12-31"]
        assert run_cli(config, *backfill).exit_code == 0
    before = query(postgres_url, "SELECT * FROM gtrends_series ORDER BY 1, 2, 3, 4, 5, 6")
    engine = create_engine(postgres_url)
    with engine.begin() as connection:  # the same rows, written back in a shuffled order
        connection.execute(
            text("CREATE TEMP TABLE shuffled AS SELECT * FROM gtrends_cells ORDER BY random()")
        )
        connection.execute(text("DELETE FROM gtrends_cells"))
        connection.execute(text("INSERT INTO gtrends_cells SELECT * FROM shuffled"))
    engine.dispose()

    rebuilt = run_cli(config, "aggregate")
    assert rebuilt.exit_code == 0
    assert "wrote 0 derived rows" in rebuilt.stderr
    assert query(postgres_url, "SELECT * FROM gtrends_series ORDER BY 1, 2, 3, 4, 5, 6") == before
