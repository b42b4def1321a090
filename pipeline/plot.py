"""``trends plot``: each framework's share over time as a PNG, SVG or self-contained HTML chart.

The defaults draw the two article charts: Google Trends as weekly lines over the last five
years of data, Papers with Code as quarterly stacked areas over the last ten. A framework
keeps its colour in every chart (``[frameworks.X] color``, else a fallback picked by a hash
of its key, never by its position). Figures are drawn with matplotlib's object API (no
pyplot, so no global backend state; PNGs are rendered by Agg).
"""

from __future__ import annotations

import hashlib
import html
import io
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pipeline.config import Settings
from pipeline.errors import TrendsError, UsageError
from pipeline.output import atomic_path
from pipeline.reports import read_shares

EXTENSIONS = (".png", ".svg", ".html")
KINDS = ("lines", "area")
# Colours for frameworks without a configured one (Tableau 10, then d3's category20b/c picks).
FALLBACK_COLORS = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#17becf", "#bcbd22", "#e377c2", "#393b79", "#637939", "#843c39",
    "#7b4173", "#e7ba52", "#3182bd", "#31a354", "#756bb1", "#636363", "#9edae5", "#dbdb8d",
)  # fmt: skip
ADJECTIVE = {
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "quarter": "quarterly",
    "year": "yearly",
}
X_LABEL = {
    "day": "Day",
    "week": "Week starting",
    "month": "Month",
    "quarter": "Quarter starting",
    "year": "Year",
}


@dataclass(frozen=True)
class SourceStyle:
    title: str
    measure: str  # "search interest" -> "Share of search interest"
    granularity: str | None = None  # default; None: the only one stored
    kind: str = "lines"
    years: int | None = None  # default window: the last N years


STYLES = {
    "gtrends": SourceStyle("Google Trends", "search interest", "week", "lines", years=5),
    "pwc": SourceStyle("Papers with Code", "implementations", "quarter", "area", years=10),
    "pwc-api": SourceStyle("Papers with Code (live API)", "implementations", None, "area"),
}


class NoData(TrendsError):
    """Nothing stored for the chart's selection (exit 1: run a collection first)."""


@dataclass
class Chart:
    """What was drawn: enough for the CLI's message and for tests."""

    path: Path
    title: str
    source: str
    variant: str
    granularity: str
    periods: list[str]
    frameworks: list[str]
    colors: dict[str, str]


def framework_color(settings: Settings, framework: str) -> str:
    """The configured colour, else a fallback chosen by the key (same key, same colour).

    Fallbacks that look like a configured colour are left out, so an unknown framework is
    never mistaken for a configured one.
    """
    configured = settings.frameworks.get(framework)
    if configured is not None and configured.color:
        return configured.color
    palette = (
        _distinct_fallbacks(tuple(f.color for f in settings.frameworks.values() if f.color))
        or FALLBACK_COLORS
    )
    digest = hashlib.sha256(framework.encode()).digest()
    return palette[int.from_bytes(digest[:4], "big") % len(palette)]


def _distinct_fallbacks(configured: tuple[str, ...]) -> tuple[str, ...]:
    from matplotlib.colors import is_color_like, to_rgb

    taken = [to_rgb(color) for color in configured if is_color_like(color)]
    return tuple(
        color
        for color in FALLBACK_COLORS
        if all(math.dist(to_rgb(color), other) >= 0.25 for other in taken)
    )


def _display_name(settings: Settings, framework: str) -> str:
    configured = settings.frameworks.get(framework)
    return configured.name if configured else framework


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _pick(kind: str, wanted: str | None, available: set[str], option: str) -> str:
    if wanted is not None:
        return wanted
    if len(available) == 1:
        return next(iter(available))
    raise UsageError(f"several {kind}s stored ({', '.join(sorted(available))}): choose {option}")


def _check_colors(settings: Settings, frameworks: list[str]) -> dict[str, str]:
    from matplotlib.colors import is_color_like

    colors = {}
    for framework in frameworks:
        color = framework_color(settings, framework)
        if not is_color_like(color):
            raise UsageError(
                f"{settings.origin}: [frameworks.{framework}] color: not a colour: {color!r}"
            )
        colors[framework] = color
    return colors


def plot_shares(
    engine: Engine,
    settings: Settings,
    output: Path,
    *,
    source: str = "gtrends",
    granularity: str | None = None,
    variant: str | None = None,
    start: str | None = None,
    end: str | None = None,
    kind: str | None = None,
) -> Chart:
    """Draw ``source``'s shares over time to ``output`` (.png, .svg or .html).

    Raises :class:`UsageError` for an unknown extension or kind and :class:`NoData` when the
    selection is empty; the file appears only when the chart is complete.
    """
    extension = output.suffix.lower()
    if extension not in EXTENSIONS:
        raise UsageError(
            f"cannot draw {output.name!r}: the file must end in {', '.join(EXTENSIONS)}"
        )
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown chart kind {kind!r} (one of: {', '.join(KINDS)})")
    style = STYLES.get(source, SourceStyle(source, "the total", None, "lines"))
    # Without --start/--end: the last N years of the data (the archive ends in 2025).
    window = style.years if start is None and end is None else None
    if variant is None and source == "gtrends":
        variant = settings.gtrends.variant
    if variant is None and source == "pwc":
        variant = "all"

    _columns, rows = read_shares(
        engine, source=source, granularity=granularity or style.granularity, start=start, end=end
    )
    if variant is not None:
        rows = [row for row in rows if row[1] == variant]
    where = f"{source}" + (f" / {variant}" if variant else "")
    if not rows:
        span = f" between {start or 'the start'} and {end or 'now'}" if start or end else ""
        wanted = granularity or style.granularity
        _columns, others = read_shares(
            engine, source=source, granularity=None, start=start, end=end
        )
        stored = sorted({row[2] for row in others if variant is None or row[1] == variant})
        if wanted and stored:
            raise NoData(
                f"no {wanted} shares stored for {where}{span} (--granularity {' or '.join(stored)})"
            )
        raise NoData(f"no shares stored for {where}{span}; run `trends collect` first")
    variant = _pick("variant", variant, {row[1] for row in rows}, "--variant")
    granularity = _pick(
        "granularity", granularity or style.granularity, {row[2] for row in rows}, "--granularity"
    )
    rows = [row for row in rows if row[1] == variant and row[2] == granularity]
    if window:
        start = _years_before(date.fromisoformat(max(row[3] for row in rows)), window).isoformat()
        rows = [row for row in rows if row[3] >= start]

    table: dict[str, dict[str, float]] = {}
    for _source, _variant, _granularity, period, framework, _value, share in rows:
        table.setdefault(period, {})[framework] = share
    present = {framework for shares in table.values() for framework in shares}
    frameworks = [f for f in settings.frameworks if f in present] + sorted(
        present - set(settings.frameworks)
    )
    colors = _check_colors(settings, frameworks)
    periods = sorted(table)

    where_label = "worldwide" if source == "gtrends" and variant == "world" else variant
    title = (
        f"{style.title}: {ADJECTIVE.get(granularity, granularity)} share of {style.measure}"
        f" ({where_label})"
    )
    chart = Chart(output, title, source, variant, granularity, periods, frameworks, colors)
    figure = _draw(settings, chart, table, kind or style.kind, f"Share of {style.measure}")
    with atomic_path(output) as temporary:
        if extension == ".html":
            temporary.write_text(_html_page(settings, chart, table, figure), encoding="utf-8")
        else:
            _save(figure, temporary, extension[1:])
    return chart


def _save(figure: Any, target: Path | io.StringIO, fmt: str) -> None:
    """Save so that an unchanged chart is an unchanged file: no creation date in SVGs, and
    the ids matplotlib gives clip paths and markers drawn from a fixed salt, not at random."""
    from matplotlib import rc_context

    with rc_context({"svg.hashsalt": "framework-trends"}):
        figure.savefig(target, format=fmt, metadata={"Date": None} if fmt == "svg" else {})


def _draw(
    settings: Settings, chart: Chart, table: dict[str, dict[str, float]], kind: str, y_label: str
) -> Any:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(11, 5.5), layout="constrained")
    axes = figure.add_subplot()
    x = [date.fromisoformat(period) for period in chart.periods]
    names = [_display_name(settings, f) for f in chart.frameworks]
    if kind == "area":
        series = [[table[p].get(f, 0.0) for p in chart.periods] for f in chart.frameworks]
        areas = axes.stackplot(
            x, *series, labels=names, colors=[chart.colors[f] for f in chart.frameworks]
        )
        for area, framework in zip(areas, chart.frameworks, strict=True):
            area.set_gid(f"share-{framework}")
        axes.set_ylim(0, 1)
    else:
        marker = "o" if len(x) < 3 else None  # a lone point would be invisible as a line
        for framework, name in zip(chart.frameworks, names, strict=True):
            y = [table[p].get(framework, math.nan) for p in chart.periods]
            (line,) = axes.plot(
                x, y, label=name, color=chart.colors[framework], linewidth=1.8, marker=marker
            )
            line.set_gid(f"share-{framework}")
        axes.set_ylim(bottom=0)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    figure.suptitle(chart.title)
    axes.set_title(f"{chart.periods[0]} to {chart.periods[-1]}", fontsize="medium")
    axes.set_xlabel(X_LABEL.get(chart.granularity, chart.granularity))
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    axes.margins(x=0)
    handles, labels = axes.get_legend_handles_labels()
    if kind == "area":  # list the layers top to bottom, as they are stacked
        handles, labels = handles[::-1], labels[::-1]
    figure.legend(handles, labels, loc="outside right upper", title="Framework")
    return figure


def _html_page(
    settings: Settings, chart: Chart, table: dict[str, dict[str, float]], figure: Any
) -> str:
    """A self-contained page: the chart as inline SVG plus the numbers as a table."""
    buffer = io.StringIO()
    _save(figure, buffer, "svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: invalid inside HTML
    head = "".join(
        f'<th scope="col"><span class="swatch" style="background:{html.escape(chart.colors[f])}">'
        f"</span>{html.escape(_display_name(settings, f))}</th>"
        for f in chart.frameworks
    )
    body = "\n".join(
        f"<tr><th scope='row'>{period}</th>"
        + "".join(
            f"<td>{'' if f not in table[period] else f'{100 * table[period][f]:.1f}%'}</td>"
            for f in chart.frameworks
        )
        + "</tr>"
        for period in reversed(chart.periods)  # newest first: what readers look for
    )
    title = html.escape(chart.title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; }}
svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ padding: 0.2em 0.6em; text-align: right; border-bottom: 1px solid #ddd; }}
.swatch {{ display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{svg}
<details>
<summary>Data: share per {html.escape(chart.granularity)}, {len(chart.periods)} periods
(source {html.escape(chart.source)}, variant {html.escape(chart.variant)})</summary>
<table>
<thead><tr><th scope="col">period_start</th>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</details>
</body>
</html>
"""
