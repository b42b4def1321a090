"""The ``trends`` command line: a thin shell over the library.

Every command calls library functions and lets :class:`TrendsError` subclasses through; the
group turns them into one ``Error: …`` line on stderr and the documented exit code.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from pipeline import reports
from pipeline.app import App
from pipeline.config import GTRENDS_FIRST_DAY
from pipeline.errors import EXIT_FAILED, EXIT_USAGE, TrendsError, UsageError, one_line
from pipeline.output import FILE_FORMATS, FORMATS, write_rows
from pipeline.readonly import readonly_query
from pipeline.redact import redact_text
from pipeline.state import period_notes
from storage import migrate

log = logging.getLogger("pipeline")


class TrendsGroup(click.Group):
    """A Click group that reports library errors as one clean line with their exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Without this, interpreter shutdown spends ~0.25 s in final garbage-collection passes
        # over every object that pandas, SQLAlchemy and Arrow created at import; there is
        # nothing left to collect by then. (unregister first: CliRunner calls main repeatedly.)
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False  # Click's own errors are ours to print (one line)
        _interrupt_on_sigterm()
        if sys.stdout is None:  # started with stdout closed (`>&-`): no reader, as with `| head`
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        try:
            status = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()  # `trends` alone: the help, as Click shows it
            sys.exit(error.exit_code)
        except click.UsageError as error:
            # Click prints usage, a hint and the error on 4 lines; the contract is one line.
            where = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            _error(f"{error.format_message()}{where}")
            sys.exit(error.exit_code)
        except click.ClickException as error:
            _error(error.format_message())
            sys.exit(error.exit_code)
        except click.Abort:  # Ctrl-C outside a command (while Click parses)
            _error("interrupted")
            sys.exit(EXIT_FAILED)
        sys.exit(status if isinstance(status, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrendsError as error:
            for line in error.lines():
                _error(line)
            ctx.exit(error.exit_code)
        except FileNotFoundError as error:
            _error(str(error))
            ctx.exit(EXIT_FAILED)
        except migrate.UnknownRevision as error:  # a database of a newer version: not touched
            _error(str(error))
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:  # Ctrl-C; a run in progress is recorded as failed
            _error("interrupted")
            ctx.exit(EXIT_FAILED)
        except BrokenPipeError:
            # The reader stopped reading (`trends sql … | head`): end quietly, as Unix tools do.
            _discard_stdout()
            ctx.exit(0)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:  # a bug or an unforeseen fault: still one line, -v has more
            log.debug("unexpected error", exc_info=True)
            verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
            _error(one_line(error) + ("" if verbose else " (run with -v for details)"))
            ctx.exit(EXIT_FAILED)


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a service stop, `kill`) ends a command as Ctrl-C does: the open transaction
    rolls back, the run is recorded as interrupted, a half-written export is removed, and one
    `Error: interrupted` line is printed. (`trends schedule` installs its own handlers.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _error(message: str) -> None:
    click.echo(f"Error: {redact_text(message)}", err=True)


class _RedactingFilter(logging.Filter):
    """Log lines leave the program without the credentials of any URL they mention."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), None
        return True


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail a second time."""
    # Not a real file descriptor (CliRunner): then nothing is flushed to a pipe either.
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactingFilter) for f in handler.filters):
            handler.addFilter(_RedactingFilter())
    for noisy in ("urllib3", "alembic", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_app(ctx: click.Context) -> App:
    """Load the configuration the first time a command needs it (so --help never reads it)."""
    root = ctx.find_root()
    if "app" not in root.meta:
        root.meta["app"] = App.from_config(root.params.get("config_path"))
        ctx.call_on_close(root.meta["app"].close)
    return root.meta["app"]


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


@click.group(cls=TrendsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="TRENDS_CONFIG",
    help="Configuration file (default: the packaged config/trends.toml). Env: TRENDS_CONFIG.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.version_option(package_name="framework-trends")
def main(config_path: str | None, verbose: bool) -> None:
    """Measure deep-learning framework popularity from Google Trends and Papers with Code.

    Exit codes: 0 success; 1 a source or step failed (what succeeded is kept); 2 usage or
    configuration error; 75 another run holds the writer lock (nothing done).
    """
    _configure_logging(verbose)


@main.command()
@click.argument("query")
@format_option
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run one read-only SQL QUERY on the database and print the rows.

    Writes, DDL, ATTACH and writing PRAGMAs are refused (exit 2) and change nothing.
    """
    app = get_app(ctx)
    with readonly_query(app.readonly_engine, query) as result:
        write_rows(fmt, result.columns, result.rows, sys.stdout)


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=10**9))
@format_option
@click.pass_context
def runs(ctx: click.Context, limit: int, fmt: str) -> None:
    """Show the run log, newest first."""
    app = get_app(ctx)
    columns, rows = reports.recent_runs(app.readonly_engine, limit)
    write_rows(fmt, columns, rows, sys.stdout)


@main.command()
@format_option
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show each enabled source's health; exit 1 when one is overdue (for monitoring).

    Per source: its schedule, the last successful collect, the last failure with its message,
    when it is next due, its freshness (ok; due; overdue: the schedule fired more than
    [scheduler] misfire_grace_hours ago without a success since; never: no success yet), its
    framework_share rows and latest period, and the rows its runs stored per table.
    """
    from pipeline.sources import enabled_sources

    app = get_app(ctx)
    statuses = reports.source_status(
        app.readonly_engine, app.settings, enabled_sources(app.settings)
    )
    rows = [tuple(getattr(s, c) for c in reports.STATUS_COLUMNS) for s in statuses]
    write_rows(fmt, reports.STATUS_COLUMNS, rows, sys.stdout)
    reports.check_fresh(statuses)


@main.command()
@click.option("--source", help="Only this source (gtrends, pwc, pwc-api, …).")
@click.option("--granularity", type=click.Choice(reports.GRANULARITIES), help="Only this period.")
@click.option("--start", help="First period_start to show (YYYY-MM-DD).")
@click.option("--end", help="Last period_start to show (YYYY-MM-DD).")
@click.option("--latest", is_flag=True, help="Only the most recent period of each series.")
@format_option
@click.pass_context
def shares(
    ctx: click.Context,
    source: str | None,
    granularity: str | None,
    start: str | None,
    end: str | None,
    latest: bool,
    fmt: str,
) -> None:
    """Print each framework's share over time from framework_share.

    The table format shows one table per source, variant and granularity with shares in
    percent; csv and json give the long rows with value and share (0..1).
    """
    first, last = reports.share_filters(source, start, end)
    app = get_app(ctx)
    columns, rows = reports.read_shares(
        app.readonly_engine,
        source=source,
        granularity=granularity,
        start=first,
        end=last,
        latest=latest,
    )
    if fmt != "table":
        write_rows(fmt, columns, rows, sys.stdout)
        shown = {(row[0], row[2]) for row in rows}  # (source, granularity) in the output
        for (note_source, note_granularity), note in period_notes(app.readonly_engine).items():
            if (note_source, note_granularity) in shown:
                click.echo(f"note: {note_source}: {note}", err=True)
        return
    if not rows:
        click.echo("No shares stored yet for this selection.", err=True)
        return
    tables = reports.pivot_shares(rows, list(app.settings.frameworks))
    notes = period_notes(app.readonly_engine)
    for (group_source, variant, group_granularity), (head, body) in tables.items():
        click.echo(f"\n{group_source} / {variant} / {group_granularity}")
        write_rows("table", head, body, sys.stdout)
        if (group_source, group_granularity) in notes:
            click.echo(f"note: {notes[group_source, group_granularity]}")


@main.command()
@click.option("--table", help="A table or view to export.")
@click.option("--query", help="A read-only SQL query to export.")
@click.option(
    "--format", "fmt", type=click.Choice(FILE_FORMATS), required=True, help="File format."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (appears only when complete); - for standard output (csv, json).",
)
@click.pass_context
def export(
    ctx: click.Context, table: str | None, query: str | None, fmt: str, output: Path
) -> None:
    """Write a table, view or query result to a CSV, Parquet or JSON file."""
    app = get_app(ctx)
    count = reports.export(app.readonly_engine, fmt, output, table=table, query=query)
    click.echo(
        f"wrote {count} rows to {'standard output' if str(output) == '-' else output}", err=True
    )


@main.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--due",
    is_flag=True,
    help="Only sources whose cron schedule fired since their last successful run (for crontab).",
)
@click.pass_context
def collect(ctx: click.Context, sources: tuple[str, ...], due: bool) -> None:
    """Collect new data from SOURCES (default: every enabled source), then re-aggregate.

    Sources: gtrends, pwc-archive, pwc-api. A source that fails is named with its reason; the
    others are kept and the exit code is 1.
    """
    from pipeline.collect import collect as run_collect

    report = run_collect(get_app(ctx), sources, due=due)
    if due and not report.ran:
        click.echo("nothing due", err=True)


@main.group()
def backfill() -> None:
    """Fill history: Google Trends windows (resumable) or the Papers-with-Code archive."""


@backfill.command("gtrends")
@click.option("--start", required=True, help="First day (YYYY-MM-DD).")
@click.option("--end", help="Last day (YYYY-MM-DD; default: the latest day Google has data for).")
@click.option(
    "--resolution",
    type=click.Choice(["day", "week", "month"]),
    default="day",
    show_default=True,
    help="Daily windows of <= 269 days, weekly of <= 5 years, or one monthly window.",
)
@click.option("--dry-run", is_flag=True, help="Print the request plan and its size; no network.")
@click.pass_context
def backfill_gtrends(
    ctx: click.Context, start: str, end: str | None, resolution: str, dry_run: bool
) -> None:
    """Fetch Google Trends history for every configured framework and put it on one scale.

    Resumable: windows already stored are skipped, so after a crash, a 429 storm or a spent
    request budget the same command continues where it stopped. Shows a progress bar on a
    terminal and log lines otherwise.
    """
    from datetime import date

    from pipeline.sources.gtrends import collector
    from pipeline.sources.gtrends.plan import unanswered

    app = get_app(ctx)
    first = date.fromisoformat(reports.parse_date(start, "--start"))
    if first < GTRENDS_FIRST_DAY:
        raise UsageError(f"--start: Google Trends data begins on {GTRENDS_FIRST_DAY}")
    latest = collector.latest_available_day(app.settings)
    if end:
        last = date.fromisoformat(reports.parse_date(end, "--end"))
        if last > latest:  # windows wholly after it would be answered 400
            click.echo(
                f"note: --end {last} is after the latest day Google has data for: "
                f"backfilling up to {latest}",
                err=True,
            )
            last = latest
    else:
        last = latest
        if last < first:
            raise UsageError(
                f"--start {first} is after the latest day Google has data for ({last})"
            )
    if dry_run:
        plan = collector.backfill_plan(app.settings, first, last, resolution)
        collector.refuse_gap(app, plan, resolution)
        todo = set(unanswered(plan, *collector.stored_plan_keys(app)))
        rows = [
            (
                i,
                r.resolution,
                r.start.isoformat(),
                r.end.isoformat(),
                ",".join(r.keywords),
                "to fetch" if r in todo else "stored",
            )
            for i, r in enumerate(plan, 1)
        ]
        write_rows(
            "table", ["#", "resolution", "start", "end", "keywords", "status"], rows, sys.stdout
        )
        missing = sum(row[-1] == "to fetch" for row in rows)
        click.echo(
            f"{len(plan)} requests in the plan, {missing} to fetch "
            f"({len(plan) - missing} already stored)"
        )
        return
    run = collector.backfill(app, first, last, resolution)
    click.echo(f"gtrends backfill ok: {run.requests} requests, {run.rows} rows", err=True)


@backfill.command("pwc")
@click.option(
    "--links",
    help="Links file: an http(s) URL or a path (a file or a directory of shards), "
    ".parquet or .json.gz.",
)
@click.option(
    "--papers",
    multiple=True,
    help="Papers file(s): URL or path (a file or a directory of shards), .parquet or "
    ".json.gz; repeat for several.",
)
@click.option("--force", is_flag=True, help="Import even if the files are unchanged.")
@click.pass_context
def backfill_pwc(
    ctx: click.Context, links: str | None, papers: tuple[str, ...], force: bool
) -> None:
    """Import the frozen Papers-with-Code archive (links and papers) and aggregate shares.

    Defaults to [pwc] links_url and papers_url. Downloads are cached in [pwc] cache_dir and
    skipped when unchanged; the import is one transaction, so a bad file changes nothing, and
    an unchanged archive is not imported again.
    """
    from pipeline.sources.pwc import archive_source

    app = get_app(ctx)
    report = archive_source.backfill(
        app,
        links or app.settings.pwc.links_url,
        list(papers) or app.settings.pwc.papers_locations,
        force=force,
    )
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    if report.imported:
        click.echo(report.summary(), err=True)
    else:
        click.echo("archive unchanged since the last import; nothing to do", err=True)


@main.command()
@click.pass_context
def aggregate(ctx: click.Context) -> None:
    """Recompute every derived table (framework_share, gtrends_series) from stored data.

    Needs no network: Google Trends windows are re-read from the stored observations.
    """
    from pipeline.collect import aggregate_all

    click.echo(f"wrote {aggregate_all(get_app(ctx))} derived rows", err=True)


@main.command()
@click.option(
    "--source",
    default="gtrends",
    show_default=True,
    help="framework_share source to draw (gtrends, pwc, pwc-api, …).",
)
@click.option(
    "--granularity",
    type=click.Choice(reports.GRANULARITIES),
    help="Period (default: week for gtrends, quarter for pwc, else the only one stored).",
)
@click.option(
    "--variant",
    help="Sub-series (default: the configured gtrends variant, e.g. world; `all` for pwc).",
)
@click.option("--start", help="First period_start (YYYY-MM-DD; gtrends default: 5 years ago).")
@click.option("--end", help="Last period_start (YYYY-MM-DD).")
@click.option(
    "--kind",
    type=click.Choice(["lines", "area"]),
    help="Lines, or stacked areas (default: lines for gtrends, area for pwc).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Chart file: .png, .svg, or .html (inline SVG plus a data table).",
)
@click.pass_context
def plot(
    ctx: click.Context,
    source: str,
    granularity: str | None,
    variant: str | None,
    start: str | None,
    end: str | None,
    kind: str | None,
    output: Path,
) -> None:
    """Draw each framework's share over time to a PNG, SVG or HTML file.

    The defaults draw the article charts: `trends plot -o gtrends.png` (Google Trends, weekly
    shares of search interest over the last five years of data, lines) and
    `trends plot --source pwc -o pwc.svg` (Papers with Code, quarterly share of
    implementations over the last ten years of data, stacked areas). --start/--end choose
    another window. Colours come from [frameworks.X] color.
    """
    from pipeline.plot import plot_shares

    first, last = reports.share_filters(source, start, end)
    app = get_app(ctx)
    chart = plot_shares(
        app.readonly_engine,
        app.settings,
        output,
        source=source,
        granularity=granularity,
        variant=variant,
        start=first,
        end=last,
        kind=kind,
    )
    click.echo(f"wrote {chart.title} ({len(chart.periods)} periods) to {output}", err=True)


@main.command()
@click.option(
    "--run-now",
    is_flag=True,
    help="Also run every job once at start, then follow the schedules (to check a deployment).",
)
@click.pass_context
def schedule(ctx: click.Context, run_now: bool) -> None:
    """Run the enabled collectors on their cron schedules, in the foreground, until stopped.

    One job per enabled source ([gtrends] schedule, [pwc] archive_schedule, api_schedule, read
    in [scheduler] timezone); each runs `trends collect SOURCE` under the writer lock, so a
    fire that finds a cron run holding it is logged and skipped. A source already due at start
    (a fire missed while it was down, or never collected) runs at once; missed fires while it
    runs are run once if at most [scheduler] misfire_grace_hours late. SIGINT/SIGTERM stop the
    running collection at its next HTTP request or retry wait (it ends partial; the next run
    continues), then exit 0; a second signal exits at once.
    """
    from pipeline.scheduler import run_scheduler

    run_scheduler(get_app(ctx), run_now=run_now)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations (other commands apply them too)."""
    app = get_app(ctx)
    with app.writing():
        pass
    with app.engine.connect() as connection:
        revision = migrate.current_revision(connection)
    click.echo(f"database at revision {revision}")
