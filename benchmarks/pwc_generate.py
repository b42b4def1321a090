"""Write a full-size synthetic PwC archive (both formats) for the import benchmark.

    .venv/bin/python benchmarks/pwc_generate.py DIR [--links N] [--papers N] [--seed S]

Files already present are kept (they are written under a temporary name and renamed when
complete, so a present file is a whole file). Prints the time taken and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from tests.fakes.pwc_data import (  # noqa: E402
    FULL_LINKS,
    FULL_PAPERS,
    LINK_SCHEMA,
    LINKS_FILE_STEM,
    PAPERS_FILE_STEM,
    ArchiveFormat,
    ArchiveSpec,
    papers_schema,
    synthetic_links,
    synthetic_papers,
    write_archive_file,
)

FULL_SPEC = ArchiveSpec(n_links=FULL_LINKS, n_papers=FULL_PAPERS)


@dataclass(frozen=True)
class GeneratedFile:
    path: Path
    seconds: float  # 0.0 when the file was already there
    cached: bool


def generate_archive(
    directory: Path,
    spec: ArchiveSpec = FULL_SPEC,
    formats: Iterable[ArchiveFormat] = ("parquet", "json.gz"),
) -> dict[str, GeneratedFile]:
    """Write links and papers files of ``spec`` into ``directory``, skipping present ones."""
    directory.mkdir(parents=True, exist_ok=True)
    result: dict[str, GeneratedFile] = {}
    for fmt in formats:
        jobs = (
            (directory / f"{LINKS_FILE_STEM}.{fmt}", synthetic_links, LINK_SCHEMA),
            (
                directory / f"{PAPERS_FILE_STEM}.{fmt}",
                synthetic_papers,
                papers_schema(spec.date_encoding),
            ),
        )
        for path, batches, schema in jobs:
            if path.exists():
                result[path.name] = GeneratedFile(path, 0.0, cached=True)
                continue
            started = time.perf_counter()
            write_archive_file(path, batches(spec), schema)
            result[path.name] = GeneratedFile(path, time.perf_counter() - started, cached=False)
    return result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--links", type=int, default=FULL_LINKS)
    parser.add_argument("--papers", type=int, default=FULL_PAPERS)
    parser.add_argument("--seed", type=int, default=FULL_SPEC.seed)
    parser.add_argument("--format", action="append", choices=["parquet", "json.gz"])
    args = parser.parse_args(argv)
    spec = ArchiveSpec(n_links=args.links, n_papers=args.papers, seed=args.seed)
    started = time.perf_counter()
    files = generate_archive(args.directory, spec, args.format or ("parquet", "json.gz"))
    for name, file in files.items():
        size = file.path.stat().st_size / 1e6
        state = "present, kept" if file.cached else f"{file.seconds:6.1f} s"
        print(f"{name:45s} {size:8.1f} MB  {state}")
    print(f"total {time.perf_counter() - started:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
