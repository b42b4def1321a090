"""Unforeseen failures still end as one `Error:` line and exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import reports
from pipeline.sources import SOURCES
from tests.conftest import run_cli


def test_unexpected_error_in_a_command_is_one_line(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("something odd\nSELECT … (driver detail on more lines)")

    monkeypatch.setattr(reports, "recent_runs", broken)
    result = run_cli(config_file, "runs")
    assert result.exit_code == 1
    assert result.stderr == "Error: ValueError: something odd (run with -v for details)\n"


def test_aggregate_names_the_failing_source_and_rebuilds_the_others(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilt = []

    def broken(app: object) -> int:
        raise RuntimeError("no such column: x\n[SQL: SELECT x]")

    monkeypatch.setattr(
        type(SOURCES["pwc-archive"]),
        "aggregate",
        lambda self, app: (
            broken(app) if self.name == "pwc-archive" else rebuilt.append(self.name) or 0
        ),
    )
    result = run_cli(config_file, "aggregate")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: pwc-archive: RuntimeError: no such column: x"
    )
    assert rebuilt == ["gtrends", "pwc-api"]
    assert "Traceback" not in result.output
