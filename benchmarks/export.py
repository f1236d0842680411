"""Benchmark: the online export's throughput (users/s) into a real redis-server on loopback.

Synthetic published recommendations (N users x K items, `recommendations` schema) are exported
by the export stage's own path (`recspark.online.export.export_to`: Spark tasks write, the
driver counts and switches) with `online.batch_size` users per round trip, against one HSET per
user (batch size 1: no pipelining), in the same run, after an untimed warm-up export. A
redis-server (Debian's) is started on a free port for the run and stopped after.

Usage:
    python benchmarks/export.py [--users 200000] [--k 10] [--batch-sizes 1 100 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import redis
    from pyspark.sql import functions as F

    from recspark.config import load_config
    from recspark.online.export import export_to
    from recspark.online.store import RedisStore
    from recspark.session import build_spark

    work = Path(tempfile.mkdtemp(prefix="recspark-export-"))
    port = _free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port",
         str(port), "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        config = load_config(CONF, "local", [f"paths.root={work}", "catalog.enabled=false"])
        spark = build_spark(config)
        recs = (
            spark.range(args.users * args.k)
            .select(
                F.format_string("u%08d", (F.col("id") / args.k).cast("long")).alias("user_id"),
                ((F.col("id") % args.k) + 1).cast("int").alias("rank"),
                F.format_string("i%06d", (F.col("id") * 7919) % 100_000).alias("item_id"),
                (F.lit(1.0) / ((F.col("id") % args.k) + 1)).cast("float").alias("score"),
                F.lit("personalized").alias("reason"),
                F.lit("2026-01-01").cast("date").alias("run_date"),
                F.lit("1").alias("model_version"),
            )
            .repartition(4)
            .cache()
        )
        recs.count()
        # Untimed: the first export starts the Python workers and loads the client.
        export_to(RedisStore(url=url, prefix="warmup", batch_size=1000), recs, "w", {})
        client.flushdb()
        print("| users | K | users per round trip | seconds (best of "
              f"{args.repeats}) | users/s |\n|---|---|---|---|---|")  # fmt: skip
        for batch in args.batch_sizes:
            times = []
            for repeat in range(args.repeats):
                store = RedisStore(url=url, prefix=f"b{batch}r{repeat}", batch_size=batch)
                started = time.perf_counter()
                written = export_to(store, recs, "v", {"run_id": "bench"})
                times.append(time.perf_counter() - started)
                assert written == args.users, written
                client.flushdb()
            seconds = min(times)
            print(f"| {args.users:,} | {args.k} | {batch:,} | {seconds:.1f} | "
                  f"{args.users / seconds:,.0f} |", flush=True)  # fmt: skip
        spark.stop()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
