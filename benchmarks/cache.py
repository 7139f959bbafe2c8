"""Cache-hit speed, measured side by side with plain file reads in one run.

Run: python benchmarks/cache.py

For 100k and 1M interactions: the first hit of a dataset in a fresh process
(engine -> diskcache -> checked Parquet bytes -> frame), later hits in the same
process (memory + a copy-on-write copy), a pyarrow read of the same frame from
a local Parquet file, and pandas.read_csv of it as CSV (the seed's way). Then
start-up: `pytest --collect-only` of a 200-test suite that uses no prisyn
fixture, with the plugin vs with `-p no:prisyn`.
Targets: first hit <= 1.5x the Parquet read; later hits >= 10x faster than it;
start-up difference under 50 ms.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Both sides import pandas and pyarrow before the clock starts: what is compared
# is the path from disk to frame, not library import time.
HIT = """
import sys, time
from pathlib import Path
import pandas, pyarrow.parquet
from pytest_prisyn.config import Settings
from pytest_prisyn.engine import Engine
from pytest_prisyn.profiles import ProfileRegistry
cache, users, items, rows = sys.argv[1], *map(int, sys.argv[2:5])
engine = Engine(Settings(backend="simulate", cache_dir=Path(cache)), ProfileRegistry())
request = dict(profile="tech", n_users=users, n_items=items, n_interactions=rows)
started = time.perf_counter()
frame = engine.dataset(**request)
first = time.perf_counter() - started
later = []
for _ in range(20):
    started = time.perf_counter()
    engine.dataset(**request)
    later.append(time.perf_counter() - started)
print(first, sorted(later)[len(later) // 2])
"""

READ = """
import sys, time
import pandas as pd
import pyarrow.parquet as pq
kind, path = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if kind == "parquet":
    pq.read_table(path).to_pandas()
else:
    pd.read_csv(path, parse_dates=["timestamp"])
print(time.perf_counter() - started)
"""


def python(code: str, *args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def median_of(repeats: int, code: str, *args: object) -> list[float]:
    runs = [list(map(float, python(code, *args).split())) for _ in range(repeats)]
    return [statistics.median(column) for column in zip(*runs, strict=True)]


def cache_hits(workdir: Path, rows: int) -> None:
    users, items = rows // 50, max(500, rows // 100)
    cache = workdir / f"cache-{rows}"
    python(HIT, cache, users, items, rows)  # record it once
    python(
        "import sys; from pathlib import Path; import pandas as pd;"
        "from pytest_prisyn.store import Store;"
        "e = Store(Path(sys.argv[1])).get(Store(Path(sys.argv[1])).fingerprints()[0]);"
        "e.frame.to_parquet(sys.argv[2]); e.frame.to_csv(sys.argv[3], index=False)",
        cache,
        workdir / f"{rows}.parquet",
        workdir / f"{rows}.csv",
    )
    first, later = median_of(5, HIT, cache, users, items, rows)
    (parquet,) = median_of(5, READ, "parquet", workdir / f"{rows}.parquet")
    (csv,) = median_of(3, READ, "csv", workdir / f"{rows}.csv")
    print(
        f"{rows:>9,} rows  first hit {first * 1e3:8.1f} ms  later hits "
        f"{later * 1e3:7.3f} ms  parquet {parquet * 1e3:7.1f} ms  "
        f"read_csv {csv * 1e3:8.1f} ms"
    )
    print(
        f"{'':16}first hit / parquet = {first / parquet:5.2f} (target <= 1.5)   "
        f"parquet / later hit = {parquet / later:7.0f} (target >= 10)   "
        f"read_csv / first hit = {csv / first:5.1f}"
    )


def start_up(workdir: Path) -> None:
    suite = workdir / "suite"
    suite.mkdir()
    (suite / "test_many.py").write_text(
        "\n".join(f"def test_{i}():\n    pass\n" for i in range(200))
    )
    (suite / "pytest.ini").write_text("[pytest]\n")

    def collect(*extra: str) -> float:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                *extra,
            ],
            cwd=suite,
            capture_output=True,
            check=True,
        )
        return time.perf_counter() - started

    with_plugin, without = [], []
    for _ in range(15):  # interleaved, so drift hits both alike
        with_plugin.append(collect())
        without.append(collect("-p", "no:prisyn"))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(
        f"collect 200 tests: with prisyn {a * 1e3:6.1f} ms, -p no:prisyn "
        f"{b * 1e3:6.1f} ms, difference {(a - b) * 1e3:+5.1f} ms (target < 50)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        print("cache hits (medians over fresh processes)")
        for rows in (100_000, 1_000_000):
            cache_hits(workdir, rows)
        print()
        start_up(workdir)


if __name__ == "__main__":
    main()
