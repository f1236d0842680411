"""Benchmark: training throughput at 1 and 2 Horovod ranks, and Petastorm vs in-memory input.

On one synthetic data set (generate -> ingest -> featurize once), the default model is trained
for a few epochs:
- Horovod + Petastorm at 1 rank and at 2 ranks, with one torch thread per rank (per-worker
  scaling efficiency = samples/s at 2 ranks / (2 x samples/s at 1 rank)), and at 1 rank with
  every core;
- the same `fit` loop in one process fed from in-memory tensors (`memory_batches`), same threads:
  the input pipeline is not the bottleneck when Petastorm reaches >= 80% of it.
Samples/s counts training steps only (validation and checkpoints excluded), median over epochs
after the first (warm-up).

Usage:
    python benchmarks/train.py [--interactions 300000] [--epochs 4] [--root /tmp/recspark-train]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parent.parent / "conf"
RUN_DATE = dt.date(2026, 1, 1)


def _speed(history: Sequence[Any]) -> float:
    """Median samples/s of the epochs after the first (EpochStats)."""
    rows = history[1:] or history
    return float(statistics.median(row.samples_per_s for row in rows))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import horovod.spark

    from recspark.config import load_config
    from recspark.io.delta import read_table
    from recspark.models.registry import ROW_KIND
    from recspark.pipeline import run_stages
    from recspark.session import build_spark
    from recspark.training.data import make_converter, training_rows
    from recspark.training.loop import LocalComm, fit, memory_batches, train_worker
    from recspark.training.train import _params

    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    overrides = [
        f"paths.root={root}",
        f"synthetic.n_interactions={args.interactions}",
        f"synthetic.n_users={max(2000, args.interactions // 25)}",
        f"synthetic.n_items={max(500, args.interactions // 200)}",
        f"train.candidates=[{args.model}]",
        f"train.batch_size={args.batch_size}",
        *args.set,
    ]
    config = load_config(CONF, "local", overrides)
    spark = build_spark(config)
    run_stages(spark, config, RUN_DATE, ["generate", "ingest", "featurize"])
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    rows, validation = training_rows(spark, config, RUN_DATE, ROW_KIND[args.model], n_items)
    out: dict[str, Any] = {"n_users": n_users, "n_items": n_items, "runs": {}}
    cores = os.cpu_count() or 1

    def params_for(n_rows: int, ranks: int, threads: int, pool: str = "thread") -> Any:
        """The stage's own parameters, for a fixed number of epochs without early stopping."""
        return dataclasses.replace(
            _params(config, args.model, n_users, n_items, n_rows, RUN_DATE, {}),
            epochs=args.epochs,
            patience=0,
            checkpoint_path=None,
            threads=threads,
            reader_pool=pool,
            steps_per_epoch=max(1, n_rows // (args.batch_size * ranks)),
        )

    for ranks, threads, pool in (
        (1, 1, "thread"),
        (1, 1, "dummy"),
        (2, 1, "thread"),
        (2, 1, "dummy"),
        (1, cores, "thread"),
    ):
        converter = make_converter(spark, config, rows, ranks)
        try:
            n_rows = len(converter)
            params = params_for(n_rows, ranks, threads, pool)
            results = horovod.spark.run(
                train_worker,
                args=("horovod", converter, validation, params, None),
                num_proc=ranks,
                nics=set(config.train.nics) or None,
                use_gloo=True,
                verbose=0,
            )
        finally:
            converter.delete()
        result = next(r for r in results if r is not None)
        suffix = "" if pool == "thread" else "-inline"
        out["runs"][f"petastorm{suffix}_{ranks}rank_{threads}thread"] = _speed(result.history)
        out["rows"] = n_rows
    pdf = rows.toPandas()
    import numpy as np

    memory_rows = {
        column: np.stack(pdf[column].to_numpy()) if column == "history" else pdf[column].to_numpy()
        for column in pdf.columns
    }
    for threads in (1, cores):
        params = params_for(len(pdf), 1, threads)
        batches = memory_batches(memory_rows, args.batch_size, params.seed)
        result = fit(LocalComm(), batches, validation, params)
        out["runs"][f"memory_1rank_{threads}thread"] = _speed(result.history)
    spark.stop()
    runs = out["runs"]
    out["scaling_efficiency"] = runs["petastorm_2rank_1thread"] / (
        2 * runs["petastorm_1rank_1thread"]
    )
    out["scaling_efficiency_inline"] = runs["petastorm-inline_2rank_1thread"] / (
        2 * runs["petastorm-inline_1rank_1thread"]
    )
    out["petastorm_vs_memory_1thread"] = (
        runs["petastorm_1rank_1thread"] / runs["memory_1rank_1thread"]
    )
    out["petastorm_inline_vs_memory_1thread"] = (
        runs["petastorm-inline_1rank_1thread"] / runs["memory_1rank_1thread"]
    )
    out["petastorm_vs_memory_all_cores"] = (
        runs[f"petastorm_1rank_{cores}thread"] / runs[f"memory_1rank_{cores}thread"]
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=int, default=300_000)
    parser.add_argument("--model", default="two_tower", choices=["two_tower", "sasrec"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--root", default="/tmp/recspark-train")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    print("\n| input | ranks x threads | samples/s |\n|---|---|---|")
    for name, speed in result["runs"].items():
        source, ranks, threads = name.split("_")
        print(f"| {source} | {ranks[0]} x {threads.removesuffix('thread')} | {speed:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
