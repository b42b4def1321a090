"""Run every benchmark (`make bench`) and print their markdown reports, one after the other.

Each benchmark runs in its own process so its peak memory is its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "bench_upsert.py",
    "bench_gtrends.py",
    "bench_gtrends_daily.py",
    "bench_pwc.py",
]


def main() -> int:
    failures = 0
    for name in BENCHMARKS:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n## {name}\n", flush=True)
        failures += subprocess.run([sys.executable, str(script)], check=False).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
