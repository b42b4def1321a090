"""`trends plot`: PNG, SVG and HTML charts of shares, stable colours, clean errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipeline.app import App
from pipeline.plot import FALLBACK_COLORS, framework_color, plot_shares
from storage.models import FrameworkShare
from storage.upsert import upsert
from tests.conftest import run_cli

KEY = ["source", "variant", "granularity", "period_start", "framework"]
SVG = "{http://www.w3.org/2000/svg}"
TODAY = date(2026, 11, 27)


def rows_for(source: str, variant: str, granularity: str, periods: list[date], values: dict):
    rows = []
    for index, period in enumerate(periods):
        counts = {f: v + index * step for f, (v, step) in values.items()}
        total = sum(counts.values())
        rows += [
            {
                "source": source,
                "variant": variant,
                "granularity": granularity,
                "period_start": period.isoformat(),
                "framework": framework,
                "value": count,
                "share": count / total,
            }
            for framework, count in counts.items()
        ]
    return rows


@pytest.fixture
def filled(app: App) -> App:
    weeks = [TODAY - timedelta(weeks=n) for n in range(400, 0, -1)]  # ~7.7 years of Sundays
    quarters = [date(2019 + q // 4, 1 + 3 * (q % 4), 1) for q in range(24)]
    rows = rows_for(
        "gtrends",
        "world",
        "week",
        weeks,
        {"pytorch": (20, 0.2), "tensorflow": (60, -0.1), "jax": (2, 0.05), "newfw": (1, 0.01)},
    )
    rows += rows_for(
        "pwc",
        "all",
        "quarter",
        quarters,
        {"pytorch": (300, 40), "tensorflow": (500, -10), "newfw": (5, 1), "other": (50, 2)},
    )
    rows += rows_for(
        "pwc", "official", "quarter", quarters, {"pytorch": (100, 10), "other": (9, 1)}
    )
    with app.writing(), app.engine.begin() as connection:
        upsert(connection, FrameworkShare, rows, KEY)
    return app


def element_color(svg_path: Path, framework: str) -> str:
    """The stroke (lines) or fill (areas) of the framework's series in a matplotlib SVG."""
    root = ET.parse(svg_path).getroot()
    (group,) = [g for g in root.iter(f"{SVG}g") if g.get("id") == f"share-{framework}"]
    (shape,) = list(group.iter(f"{SVG}path"))[:1]
    style = dict(
        item.split(":", 1) for item in shape.get("style", "").replace(" ", "").split(";") if item
    )
    return style.get("stroke" if "stroke-linecap" in style else "fill", "")


def test_default_gtrends_chart_is_five_years_of_weekly_lines(filled: App, tmp_path: Path) -> None:
    chart = plot_shares(filled.engine, filled.settings, tmp_path / "g.png")
    assert (chart.source, chart.variant, chart.granularity) == ("gtrends", "world", "week")
    five_years_before_last = date.fromisoformat(chart.periods[-1]).replace(year=2021)
    first = date.fromisoformat(chart.periods[0])
    assert five_years_before_last <= first < five_years_before_last + timedelta(days=7)
    assert 259 <= len(chart.periods) <= 261
    assert chart.title.startswith("Google Trends: weekly share of search interest (worldwide)")
    assert chart.frameworks == ["pytorch", "tensorflow", "jax", "newfw"]  # config order first
    data = (tmp_path / "g.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000


def test_default_pwc_chart_is_quarterly_stacked_areas(filled: App, tmp_path: Path) -> None:
    chart = plot_shares(filled.engine, filled.settings, tmp_path / "p.svg", source="pwc")
    assert (chart.variant, chart.granularity, len(chart.periods)) == ("all", "quarter", 24)
    root = ET.parse(tmp_path / "p.svg").getroot()
    assert root.tag == f"{SVG}svg"
    text = (tmp_path / "p.svg").read_text()
    # Labels are drawn as glyph paths with the text kept in comments and element ids.
    for label in ("Share of implementations", "Papers with Code", "PyTorch", "Other languages"):
        assert label in text
    assert element_color(tmp_path / "p.svg", "pytorch") == "#ee4c2c"


def test_same_framework_same_colour_in_every_chart(filled: App, tmp_path: Path) -> None:
    plot_shares(filled.engine, filled.settings, tmp_path / "g.svg")
    plot_shares(filled.engine, filled.settings, tmp_path / "p.svg", source="pwc")
    for framework in ("pytorch", "tensorflow", "newfw"):
        colors = {element_color(tmp_path / name, framework) for name in ("g.svg", "p.svg")}
        assert colors == {framework_color(filled.settings, framework)}, framework
    assert framework_color(filled.settings, "newfw") in FALLBACK_COLORS
    assert framework_color(filled.settings, "tensorflow") == "#ff8f00"


def test_html_page_holds_the_svg_and_a_data_table(filled: App, config_file: Path, tmp_path):
    output = tmp_path / "charts" / "pwc.html"
    result = run_cli(
        config_file, "plot", "--source", "pwc", "--variant", "official", "-o", str(output)
    )
    assert result.exit_code == 0, result.output
    assert f"to {output}" in result.stderr
    page = output.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "<?xml" not in page
    assert "<th scope='row'>2024-10-01</th>" in page
    assert "Other languages and frameworks" in page and "%</td>" in page


def test_cli_options_select_the_series(filled: App, config_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "g.svg"
    result = run_cli(
        config_file,
        "plot",
        "--start",
        "2025-01-01",
        "--end",
        "2025-12-31",
        "--kind",
        "area",
        "-o",
        str(output),
    )
    assert result.exit_code == 0, result.output
    weeks_2025 = [d for n in range(1, 401) if (d := TODAY - timedelta(weeks=n)).year == 2025]
    assert f"({len(weeks_2025)} periods)" in result.stderr
    ET.parse(output)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-o", "chart.pdf"], 2, "Error: cannot draw 'chart.pdf': the file must end in"),
        (["--source", "nosuch", "-o", "x.png"], 2, "Error: --source: unknown source 'nosuch'"),
        (["--start", "2030-01-01", "-o", "x.png"], 1, "between 2030-01-01 and now"),
        (["--source", "pwc", "--variant", "x", "-o", "x.svg"], 1, "no shares stored for pwc / x"),
        (["--start", "yesterday", "-o", "x.png"], 2, "Error: --start: expected a date"),
        (
            ["--source", "pwc", "--granularity", "week", "-o", "x.svg"],
            1,
            "no week shares stored for pwc / all (--granularity ",
        ),
    ],
)
def test_errors_are_one_line_and_write_no_file(
    filled: App, config_file: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    before = set(tmp_path.iterdir())
    result = run_cli(config_file, "plot", *args)
    assert result.exit_code == code
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert set(tmp_path.iterdir()) == before


def test_empty_database_is_no_data(app: App, config_file: Path, tmp_path: Path) -> None:
    result = run_cli(config_file, "plot", "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no shares stored for gtrends / world")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("name", ["chart.svg", "chart.html", "chart.png"])
def test_an_unchanged_chart_is_an_unchanged_file(filled: App, tmp_path: Path, name: str) -> None:
    """Reruns (a cron job redrawing charts, make) must not rewrite a file that shows the same."""
    first, second = tmp_path / "1" / name, tmp_path / "2" / name
    plot_shares(filled.engine, filled.settings, first, source="pwc", kind="lines")
    plot_shares(filled.engine, filled.settings, second, source="pwc", kind="lines")
    assert first.read_bytes() == second.read_bytes()
