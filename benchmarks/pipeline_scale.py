"""Benchmark: the whole nightly at scale, stage by stage, with the default configuration.

Each size runs in its own process (a fresh Spark driver) on a fresh folder: generate (synthetic
events: users = events / 50, items = events / 100, so 10M events are 200k users and 100k items)
-> ingest -> featurize -> train (every default candidate that fits) -> evaluate (with the default
baselines) -> score (and publish) -> export (off by default: `online.store` is null) -> report.
Every stage registers its tables in the catalog (on by default). Reported per stage: wall seconds
and the peak resident memory of the Python driver, of the Spark JVM (driver and executors at once
in local mode) and of the worker processes (Spark's Python workers and the training ranks, summed
at each sample).

Usage:
    python benchmarks/pipeline_scale.py --sizes 1000000 10000000 [--root /tmp/recspark-scale]
        [--set key=value ...] [--json out.json] [--start STAGE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parent.parent / "conf"
RUN_DATE = dt.date(2026, 1, 1)
STAGES = ("generate", "ingest", "featurize", "train", "evaluate", "score", "export", "report")


class MemorySampler:
    """Peak RSS (bytes) of the driver, the JVM and the other descendants, per stage."""

    def __init__(self, jvm_pid: int) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process(os.getpid())
        self.jvm = psutil.Process(jvm_pid)
        self.peaks: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def reset(self) -> dict[str, int]:
        peaks, self.peaks = self.peaks, {"driver": 0, "jvm": 0, "workers": 0}
        return peaks

    def _rss(self, process: Any) -> int:
        with contextlib.suppress(self.psutil.Error):
            return int(process.memory_info().rss)
        return 0

    def _sample(self) -> None:
        workers = 0
        seen = {self.me.pid, self.jvm.pid}
        for root in (self.me, self.jvm):
            with contextlib.suppress(self.psutil.Error):
                for child in root.children(recursive=True):
                    if child.pid not in seen:
                        seen.add(child.pid)
                        workers += self._rss(child)
        now = {"driver": self._rss(self.me), "jvm": self._rss(self.jvm), "workers": workers}
        for key, value in now.items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self._sample()
            self.stop.wait(0.5)


def _one(size: int, root: Path, overrides: list[str], start: str = STAGES[0]) -> dict[str, Any]:
    from recspark.config import load_config
    from recspark.pipeline import run_generate, run_stages
    from recspark.session import build_spark

    if start == STAGES[0]:
        shutil.rmtree(root, ignore_errors=True)
    config = load_config(
        CONF,
        "local",
        [
            f"paths.root={root}",
            f"synthetic.n_interactions={size}",
            f"synthetic.n_users={max(1000, size // 50)}",
            f"synthetic.n_items={max(500, size // 100)}",
            f"synthetic.partitions={max(2, size // 250_000)}",
            *overrides,
        ],
    )
    spark = build_spark(config)
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # type: ignore[union-attr]
    sampler = MemorySampler(jvm_pid)
    sampler.reset()
    sampler.thread.start()
    stages: list[dict[str, Any]] = []
    for stage in STAGES[STAGES.index(start) :]:
        print(f"[scale] {size:,}: {stage} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        if stage == "generate":
            run_generate(spark, config, RUN_DATE)
        else:
            run_stages(spark, config, RUN_DATE, [stage])  # type: ignore[list-item]
        seconds = time.perf_counter() - started
        peaks = sampler.reset()
        stages.append(
            {"stage": stage, "seconds": round(seconds, 1),
             **{f"{k}_peak_mb": round(v / 2**20) for k, v in peaks.items()}}
        )  # fmt: skip
        print(f"[scale] {size:,}: {stages[-1]}", file=sys.stderr, flush=True)
    sampler.stop.set()
    spark.stop()
    nightly = sum(s["seconds"] for s in stages if s["stage"] != "generate")
    return {"size": size, "stages": stages, "nightly_s": round(nightly, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/recspark-scale"))
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--start",
        choices=STAGES,
        default=STAGES[0],
        help="run from this stage on the folder an earlier run left (default: a fresh folder)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = _one(args.one, args.root / str(args.one), args.set, args.start)
        print("RESULT " + json.dumps(result))
        return 0
    results = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", str(size), "--root", str(args.root)]
        command += ["--start", args.start]
        for override in args.set:
            command += ["--set", override]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"[scale] {size:,} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(lines[0][7:]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print("| events | stage | seconds | driver peak MB | JVM peak MB | workers peak MB |")
    print("|---|---|---|---|---|---|")
    for result in results:
        for s in result["stages"]:
            print(
                f"| {result['size']:,} | {s['stage']} | {s['seconds']:,} | "
                f"{s['driver_peak_mb']:,} | {s['jvm_peak_mb']:,} | {s['workers_peak_mb']:,} |"
            )
        print(f"| {result['size']:,} | **nightly** (ingest..report) | {result['nightly_s']:,} |||")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
