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

With `--catalogs 10000 100000 1000000`: catalog scale instead. Synthetic training rows (power-law
item popularity, a 50-item history per row) are made in memory for each catalog size, without the
ETL, and the default model is trained with the sampled softmax (what `train.loss: auto` picks for
large catalogs) on: in-memory rows (`MemoryRows`) and Petastorm (a converter over the same rows),
Horovod at 1 and 2 ranks and TorchDistributor at 2 ranks, one torch thread per rank; and, for
comparison, Horovod with dense gradients (`train.sparse_gradients: false`) and 2 Spark tasks
training on their shards alone, without exchanging anything (`independent`: the most 2 ranks
can reach on this machine). Each run reports
samples/s, the gradient bytes a rank sends per step and rank 0's seconds per step by phase
(input wait, compute, idle: waiting at a barrier for the slower rank, exchange, update); the
barrier costs one more collective a step, so these runs are a little slower than the stage's.

Usage:
    python benchmarks/train.py [--interactions 300000] [--epochs 4] [--root /tmp/recspark-train]
    python benchmarks/train.py --catalogs 10000 100000 1000000 [--rows 100000] [--steps 30]
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
    from recspark.training.inputs import memory_batches
    from recspark.training.loop import fit, train_worker
    from recspark.training.settings import train_params
    from recspark.training.transport import LocalComm

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
            train_params(config, args.model, n_users, n_items, n_rows, RUN_DATE, {}),
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


def synthetic_rows(n_items: int, n_users: int, n_rows: int, length: int, seed: int) -> Any:
    """Two-tower rows: users with power-law item popularity (item i drawn ~ i^-0.8) and a
    history of `length` earlier items (left-padded with n_items)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ranks = np.minimum((rng.pareto(0.8, (n_rows, length + 1)) * 10).astype(np.int64), n_items - 1)
    order = rng.permutation(n_items)  # popularity is not the item index
    items = order[ranks]
    history = items[:, 1:].copy()
    short = rng.integers(0, length, n_rows)
    history[np.arange(length)[None, :] < short[:, None]] = n_items
    return {
        "user_index": rng.integers(0, n_users, n_rows),
        "item_index": items[:, 0],
        "history": history,
    }


def _independent(ranks: int, args: tuple[Any, ...]) -> Any:
    """`ranks` Spark tasks each training on its shard alone (no exchange): the machine's ceiling
    for `ranks` ranks. Rank 0's epochs (not its parameters), samples/s the tasks' sum."""
    from pyspark import SparkContext

    from recspark.training.inputs import memory_batches
    from recspark.training.loop import fit
    from recspark.training.transport import LocalComm

    rows, validation, params, _, _, counts = args

    def task(index: int, _: Any) -> Any:
        shard = rows.shard(index, ranks)
        batches = memory_batches(shard, params.batch_size, params.seed)
        yield fit(LocalComm(), batches, validation, params, None, counts).history

    context = SparkContext.getOrCreate()
    results = context.parallelize(range(ranks), ranks).mapPartitionsWithIndex(task).collect()
    total = [sum(r[e].samples_per_s for r in results) for e in range(params.epochs)]
    history = [
        dataclasses.replace(h, samples_per_s=t) for h, t in zip(results[0], total, strict=True)
    ]
    return argparse.Namespace(history=tuple(history))


def _launch(launcher: str, ranks: int, args: tuple[Any, ...]) -> Any:
    """Rank 0's result of `train_worker(launcher, *args)` on `ranks` ranks."""
    from recspark.training.loop import train_worker

    if launcher == "independent":
        return _independent(ranks, args)
    if launcher == "horovod":
        import horovod.spark

        results = horovod.spark.run(
            train_worker, args=(launcher, *args), num_proc=ranks, nics={"lo"}, use_gloo=True,
            verbose=0,
        )  # fmt: skip
        return next(r for r in results if r is not None)
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(num_processes=ranks, local_mode=False, use_gpu=False)
    return distributor.run(train_worker, launcher, *args)


def _measured(history: Sequence[Any], steps: int) -> dict[str, float]:
    """samples/s (median of the epochs after the first); of the last epoch: the gradient bytes a
    rank sent per step and rank 0's milliseconds per step by phase."""
    last = history[-1]
    from recspark.training.loop import PHASES

    return {
        "samples_per_s": _speed(history),
        "sent_bytes_per_step": float(last.sent_bytes_per_step),
        **{p.replace("_s", "_ms"): 1000 * float(getattr(last, p)) / steps for p in PHASES},
        "step_ms": 1000 * float(last.seconds) / steps,
    }


def run_catalogs(args: argparse.Namespace) -> dict[str, Any]:
    """The catalog-scale runs (see the module docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recspark.config import load_config
    from recspark.session import build_spark
    from recspark.training.data import make_converter
    from recspark.training.inputs import MemoryRows
    from recspark.training.settings import train_params

    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    config = load_config(CONF, "local", [f"paths.root={root}", *args.set])
    spark = build_spark(config)
    root.mkdir(parents=True, exist_ok=True)
    length = config.features.sequence_length
    out: dict[str, Any] = {"rows": args.rows, "users": args.users, "runs": []}
    empty = {k: np.zeros((0, length) if k == "history" else 0, np.int64) for k in
             ("user_index", "item_index", "history")}  # fmt: skip
    for n_items in args.catalogs:
        data = synthetic_rows(n_items, args.users, args.rows, length, seed=n_items)
        counts = np.bincount(data["item_index"], minlength=n_items)
        parquet = root / f"rows-{n_items}.parquet"
        pq.write_table(
            pa.table({
                "user_index": data["user_index"], "item_index": data["item_index"],
                "history": pa.array(list(data["history"].astype(np.int32)),
                                    type=pa.list_(pa.int32())),
            }),
            parquet,
        )  # fmt: skip
        frame = spark.read.parquet(str(parquet))
        for source, launcher, ranks, sparse in args.cases:
            params = dataclasses.replace(
                train_params(config, "two_tower", args.users, n_items, args.rows, RUN_DATE, {}),
                loss="sampled_softmax", sparse_gradients=sparse, epochs=args.epochs,
                steps_per_epoch=args.steps, batch_size=args.batch_size, patience=0,
                checkpoint_path=None, threads=1, measure_idle=True,
            )  # fmt: skip
            converter = None
            if source == "petastorm":
                converter = make_converter(spark, config, frame, ranks)
            rows_source = converter if converter is not None else MemoryRows(data)
            try:
                result = _launch(launcher, ranks, (rows_source, empty, params, None, False, counts))
            finally:
                if converter is not None:
                    converter.delete()
            row = {"items": n_items, "input": source, "launcher": launcher, "ranks": ranks,
                   "gradients": "sparse" if sparse else "dense",
                   **_measured(result.history, args.steps)}  # fmt: skip
            print(json.dumps(row), file=sys.stderr, flush=True)
            out["runs"].append(row)
    spark.stop()
    return out


CASES = [
    ("memory", "independent", 2, True),
    ("memory", "horovod", 1, True),
    ("memory", "horovod", 2, True),
    ("petastorm", "horovod", 1, True),
    ("petastorm", "horovod", 2, True),
    ("memory", "torch_distributor", 2, True),
    ("memory", "horovod", 1, False),
    ("memory", "horovod", 2, False),
]


def _print_catalogs(result: dict[str, Any]) -> None:
    print(
        "\n| items | input | launcher | ranks | gradients | samples/s | sent MB/step/rank "
        "| ms/step: input / compute / idle / exchange / update (total) |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for r in result["runs"]:
        keys = ("input_ms", "compute_ms", "idle_ms", "exchange_ms", "update_ms")
        phases = " / ".join(f"{r[k]:.1f}" for k in keys)
        print(
            f"| {r['items']:,} | {r['input']} | {r['launcher']} | {r['ranks']} | "
            f"{r['gradients']} | {r['samples_per_s']:,.0f} | {r['sent_bytes_per_step'] / 1e6:.2f} "
            f"| {phases} ({r['step_ms']:.0f}) |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=int, default=300_000)
    parser.add_argument("--model", default="two_tower", choices=["two_tower", "sasrec"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--root", default="/tmp/recspark-train")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--catalogs", type=int, nargs="*", help="catalog-scale runs at these sizes")
    parser.add_argument("--rows", type=int, default=100_000, help="catalog runs: training rows")
    parser.add_argument("--users", type=int, default=50_000, help="catalog runs: users")
    parser.add_argument("--steps", type=int, default=30, help="catalog runs: steps per epoch")
    parser.add_argument(
        "--cases", nargs="*", default=[], help="catalog runs: only these (input:launcher:ranks)"
    )
    args = parser.parse_args(argv)
    if args.catalogs:
        args.cases = [c for c in CASES if not args.cases or ":".join(map(str, c[:3])) in args.cases]
        result = run_catalogs(args)
        print(json.dumps(result, indent=2))
        _print_catalogs(result)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
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
