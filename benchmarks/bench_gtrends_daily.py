"""Google Trends after months of daily collects: the rebuild every collect runs, as windows pile up.

    .venv/bin/python benchmarks/bench_gtrends_daily.py [--days N]

The cron job's life, shortened: a 5-year backfill (2021-2025; the 7 default frameworks, two
batches; day, week and month) against the fake with seeded truth and 2 % sampling noise, then
one incremental ``collect gtrends`` fetch per day for N days (default 365; ``TRENDS_TODAY``
moves one day at a time). Each daily collect adds one window per batch (60 days of overlap
plus the new day) and a weekly or monthly window whenever one completes; every window stays in
the joint fit, so the rebuild grows with the days collected.

At checkpoints the database is copied and a child process runs the gtrends rebuild on the copy
(``aggregate.rebuild``: what ``trends aggregate`` and every ``collect`` run), measured for wall
time and peak RSS (``os.wait4``), and compares the daily series with the fake's truth (median
absolute % error after one global scale factor, as in bench_gtrends.py) over the backfilled
years and over the days the collects added. Figures for the rebuild before the blockwise
shared-cell sum and with 269-day incremental windows are in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake server lives in tests/fakes

from benchmarks.bench_gtrends import SEVEN, daily_errors, wide, write_config  # noqa: E402
from benchmarks.bench_pwc import MIB, measure  # noqa: E402

BACKFILL = (date(2021, 1, 1), date(2025, 12, 31))
FIRST_COLLECT = date(2026, 1, 5)
SERVER_TODAY = date(2028, 1, 1)  # the fake knows every day the collects ask for
CHECKPOINTS = (0, 30, 90, 180, 365)
SEED = 2024  # the fake's truth and sampling-noise draws


def rebuild_worker(folder: Path, out: Path) -> None:
    """Child process: rebuild the gtrends series and shares of the database in ``folder``,
    then measure the daily series against the truth."""
    import pandas as pd

    from pipeline.app import App
    from pipeline.sources.gtrends.aggregate import rebuild
    from tests.fakes.gtrends_server import FakeGoogleTrends

    app = App.from_config(folder / "trends.toml")
    started = time.perf_counter()
    changed = rebuild(app.engine, app.settings)
    seconds = time.perf_counter() - started
    with app.engine.connect() as connection:
        counts = {
            table: connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            for table in ("gtrends_fetches", "gtrends_cells", "gtrends_series", "framework_share")
        }
        daily = pd.read_sql(
            "SELECT framework AS keyword, period_start, value FROM gtrends_series "
            "WHERE resolution = 'day'",
            connection,
        )
    app.close()
    errors = {}
    for label, (first, last) in {
        "backfilled": BACKFILL,
        "collected": (FIRST_COLLECT - timedelta(days=3), daily["period_start"].max()),
    }.items():
        last = date.fromisoformat(last) if isinstance(last, str) else last
        if last <= first:
            continue
        truth = FakeGoogleTrends(seed=SEED, today=SERVER_TODAY).truth_frame(SEVEN, first, last)
        errors[label] = daily_errors(wide(daily, truth), truth)["median"]
    out.write_text(json.dumps({"seconds": seconds, "changed": changed, **counts, "errors": errors}))


def checkpoint(folder: Path, days: int, scratch: Path) -> dict:
    """Copy the database as it is now and measure a rebuild on the copy in a child process."""
    copy = scratch / f"day-{days}"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.lock"))
    config = copy / "trends.toml"
    config.write_text(config.read_text().replace(str(folder), str(copy)), encoding="utf-8")
    out = copy / "rebuild.json"
    measured = measure([sys.executable, __file__, "--rebuild-worker", str(copy), str(out)])
    if measured.returncode != 0:
        raise SystemExit(f"rebuild failed ({measured.returncode}):\n{measured.stderr}")
    result = json.loads(out.read_text())
    shutil.rmtree(copy)
    result["stored"] = result.pop("gtrends_series") + result.pop("framework_share")
    return {"days": days, "peak_rss": measured.peak_rss, **result}


def run(days: int) -> list[dict]:
    from pipeline.app import App
    from pipeline.runlog import RunRecord
    from pipeline.sources.gtrends import collector
    from pipeline.sources.gtrends.aggregate import rebuild
    from tests.fakes.gtrends_server import FakeGoogleTrends

    results = []
    with (
        FakeGoogleTrends(seed=SEED, today=SERVER_TODAY, sample_noise=0.02) as server,
        tempfile.TemporaryDirectory(prefix="bench-gtrends-daily-") as tmp,
    ):
        folder, scratch = Path(tmp) / "db", Path(tmp) / "scratch"
        folder.mkdir()
        scratch.mkdir()
        app = App.from_config(write_config(folder, server.base_url, SEVEN))
        os.environ["TRENDS_TODAY"] = (FIRST_COLLECT - timedelta(days=1)).isoformat()
        for resolution in ("day", "week", "month"):
            collector.backfill(app, *BACKFILL, resolution)
        run_record = RunRecord(id=None, command="collect", source="gtrends")
        for day in range(days + 1):
            if day in CHECKPOINTS or day == days:
                app.close()  # a quiet copy: nothing in the WAL
                results.append(checkpoint(folder, day, scratch))
                print(f"day {day}: rebuild {results[-1]['seconds']:.2f} s", flush=True)
            if day == days:
                break
            os.environ["TRENDS_TODAY"] = (FIRST_COLLECT + timedelta(days=day)).isoformat()
            if day + 1 in CHECKPOINTS or day + 1 == days:
                # Derived tables as of yesterday: the checkpoint's rebuild then rewrites what
                # one daily collect changes (what every cron run writes).
                rebuild(app.engine, app.settings)
            with app.writing():
                stored = collector.stored_until(app.engine, app.settings)
                plan = collector.incremental_plan(app.settings, stored)
                collector.fetch_plan(app, run_record, plan, progress=False)
        app.close()
    return results


def report(results: list[dict]) -> str:
    lines = [
        "Google Trends rebuild after a 5-year backfill and N daily collects (7 frameworks)",
        "",
        "| daily collects | windows stored | cells stored | rebuild s | rebuild peak RSS MiB "
        "| rows the day's rebuild rewrote | series + share rows "
        "| median abs % err, 2021–2025 | median abs % err, collected days |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        errors = {k: f"{v:.2f}" for k, v in r["errors"].items()}
        lines.append(
            f"| {r['days']} | {r['gtrends_fetches']:,} | {r['gtrends_cells']:,} "
            f"| {r['seconds']:.2f} | {r['peak_rss'] / MIB:.0f} "
            f"| {r['changed']:,} | {r['stored']:,} "
            f"| {errors.get('backfilled', '—')} | {errors.get('collected', '—')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rebuild-worker"]:
        rebuild_worker(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="daily collects (default 365)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(report(run(args.days)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
