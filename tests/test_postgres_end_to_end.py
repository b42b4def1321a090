"""The collectors on PostgreSQL: the same code path as on SQLite, against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

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
