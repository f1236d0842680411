"""Benchmark: ingest + featurize throughput and memory on synthetic data of several sizes.

Each size runs in its own process (a fresh Spark driver) on a fresh folder:
generate (not timed) -> ingest (full load) -> featurize. Reported per size: seconds and rows/s
for each stage, the peak resident memory of the Python driver and of the Spark JVM (in local
mode the JVM is driver and executors at once), and the JVM heap in use at its peak.

Usage:
    python benchmarks/etl.py --sizes 1000000 10000000 [--root /tmp/recspark-bench]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"
RUN_DATE = dt.date(2026, 1, 1)


def _one(size: int, root: Path, driver_memory: str) -> dict[str, object]:
    import psutil

    from recspark.config import load_config
    from recspark.pipeline import run_generate, run_stages
    from recspark.results import FeaturizeResult, IngestResult
    from recspark.session import build_spark

    shutil.rmtree(root, ignore_errors=True)
    overrides = [
        f"paths.root={root}",
        f"synthetic.n_interactions={size}",
        f"synthetic.n_users={max(1000, size // 25)}",
        f"synthetic.n_items={max(500, size // 200)}",
        f"synthetic.partitions={max(2, size // 250_000)}",
        f"spark.conf.spark.driver.memory={driver_memory}",
        "spark.conf.spark.sql.shuffle.partitions=16",
    ]
    config = load_config(CONF, "local", overrides)
    spark = build_spark(config)
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # type: ignore[union-attr]
    jvm = psutil.Process(jvm_pid)
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()  # type: ignore[union-attr]
    peaks = {"jvm_rss": 0, "jvm_heap": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["jvm_rss"] = max(peaks["jvm_rss"], jvm.memory_info().rss)
            peaks["jvm_heap"] = max(peaks["jvm_heap"], runtime.totalMemory() - runtime.freeMemory())
            stop.wait(0.5)

    started = time.perf_counter()
    generated = run_generate(spark, config, RUN_DATE)
    generate_s = time.perf_counter() - started
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = run_stages(spark, config, RUN_DATE, ["ingest", "featurize"])
    stop.set()
    sampler.join()
    ingest, featurize = results.of(IngestResult), results.of(FeaturizeResult)
    ingest_s, featurize_s = results.seconds(IngestResult), results.seconds(FeaturizeResult)
    assert ingest_s is not None and featurize_s is not None
    rows = ingest.rows_in
    spark.stop()
    return {
        "size": size,
        "raw_rows": generated.lines,
        "generate_s": round(generate_s, 1),
        "ingest_s": ingest_s,
        "ingest_rows_per_s": round(rows / ingest_s),
        "featurize_s": featurize_s,
        "featurize_rows_per_s": round(ingest.clean / featurize_s),
        "total_s": round(ingest_s + featurize_s, 1),
        "training_rows": featurize.training_rows,
        "python_driver_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "jvm_peak_rss_mb": round(peaks["jvm_rss"] / 2**20),
        "jvm_peak_heap_used_mb": round(peaks["jvm_heap"] / 2**20),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/recspark-bench"))
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(_one(args.one, args.root / str(args.one), args.driver_memory)))
        return 0
    rows = []
    for size in args.sizes:
        print(f"[bench] {size:,} interactions ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(size),
                "--root",
                str(args.root),
                "--driver-memory",
                args.driver_memory,
            ],
            capture_output=True,
            text=True,
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(lines[0][7:]))
        print(f"[bench] {rows[-1]}", file=sys.stderr, flush=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{row[k]:,}" if isinstance(row[k], int) else str(row[k]) for k in keys)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
