"""Benchmark: batch scoring throughput (users/s) against Spark MLlib ALS and the machine's limit.

Same data, same embeddings, same rank and K, in one run:

* als        Spark MLlib `ALSModel.recommendForAllUsers(K)` (no exclusion of seen items);
* recspark   `recspark.scoring.udf.score_users` (mapInArrow, factors loaded once per Python
             worker from a file, as the stage loads the model from MLflow; blocks of
             `score.users_per_batch` users; seen items excluded; one torch thread per task), on
             the ALS model's own user and item factors;
* recspark_explained  the same, with each recommendation explained by the seen item that
             supports it most (--explain-history, the stage's default 200), as the score stage runs
* single     one Python process, torch matrix product + mask of seen items + top-K over the same
             factors, block size tuned (the best of --blocks): the machine's limit.

The ALS model is fitted first (one iteration; not timed) on random power-law interactions:
--seen per user on average. Every Spark job is forced with a `noop` write; the best of
--repeats runs is kept. Memory: the peak resident memory of the Python workers while recspark
scores --memory-users users each (it must stay flat as users grow).

Usage:
    python benchmarks/score.py [--users 100000 --items 20000 --rank 64 --k 10 --seen 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psutil
from numpy.typing import NDArray
from pyspark.sql import DataFrame, SparkSession


def interactions(n_users: int, n_items: int, seen: int, seed: int) -> pd.DataFrame:
    """(user, item, rating): ~`seen` distinct items per user, item popularity ~ Zipf."""
    rng = np.random.default_rng(seed)
    per_user = np.maximum(1, rng.poisson(seen, n_users))
    users = np.repeat(np.arange(n_users, dtype=np.int32), per_user)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=len(users), p=weights / weights.sum()).astype(np.int32)
    df = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    df["rating"] = np.float32(1.0)
    return df


def _force(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def _best(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _factors(df: DataFrame, n: int, rank: int) -> NDArray[np.float32]:
    out = np.zeros((n, rank), dtype=np.float32)
    pdf: pd.DataFrame = df.toPandas()
    out[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return out


def single_process(
    users: NDArray[np.float32], items: NDArray[np.float32], seen: Any, k: int, block: int
) -> None:
    """The machine's limit: product, mask, top-K per block, in this process (torch threads).

    `seen` is one flat `SeenItems` (CSR) for all users, the cheapest form to slice per block;
    one score block is reused, as a worker's `Ranker` does.
    """
    from recspark.ranking.topk import ScoreBuffer, top_k

    buffer = ScoreBuffer()
    for start in range(0, len(users), block):
        top_k(users[start : start + block], items, seen[start : start + block], k, buffer)


@dataclass(frozen=True)
class NpzFactors:
    """Factors each worker loads from a file once, as the stage loads the model from MLflow
    (the task closure carries a path, not the arrays)."""

    path: str

    @property
    def key(self) -> str:
        return self.path

    def load(self) -> Any:
        from recspark.ranking.factors import IdFactors

        with np.load(self.path) as f:
            return IdFactors(users=f["users"], items=f["items"])


class PeakWorkerMemory:
    """Samples the resident memory of this process's Spark Python workers; keeps the peak."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for p in me.children(recursive=True):
                try:
                    if "pyspark" in " ".join(p.cmdline()) and "java" not in p.name():
                        total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakWorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from pyspark.ml.recommendation import ALS

    from recspark.ranking.factors import SeenItems
    from recspark.scoring.udf import SEEN, score_users

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .appName("recspark-score-benchmark")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(args.cores))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir("/tmp/recspark-score-bench-ckpt")
    data = interactions(args.users, args.items, args.seen, args.seed)
    ratings = spark.createDataFrame(data).repartition(args.cores).cache()
    ratings.count()
    started = time.perf_counter()
    als = ALS(
        rank=args.rank, maxIter=1, implicitPrefs=True, userCol="user", itemCol="item",
        ratingCol="rating", seed=args.seed, coldStartStrategy="drop",
    ).fit(ratings)  # fmt: skip
    fit_s = time.perf_counter() - started
    als_s = (
        _best(lambda: _force(als.recommendForAllUsers(args.k)), args.repeats)
        if args.als
        else float("nan")
    )
    users = _factors(als.userFactors, args.users, args.rank)
    items = _factors(als.itemFactors, args.items, args.rank)
    seen_lists = data.groupby("user")["item"].agg(list).reindex(range(args.users))
    seen = [None if not isinstance(s, list) else np.asarray(s, np.int32) for s in seen_lists]
    users_pdf = pd.DataFrame({"user_index": np.arange(args.users, dtype=np.int32), SEEN: seen})
    users_df = spark.createDataFrame(users_pdf).repartition(args.partitions).cache()
    users_df.count()
    factors_file = os.path.join(tempfile.mkdtemp(prefix="recspark-score-bench-"), "factors.npz")
    np.savez(factors_file, users=users, items=items)
    source = NpzFactors(factors_file)
    recspark_s = {}
    for block in args.spark_blocks:
        scored = score_users(users_df, source, args.k, block)
        recspark_s[block] = _best(functools.partial(_force, scored), args.repeats)
    best_block = min(recspark_s, key=lambda b: recspark_s[b])
    explained_s = float("nan")
    if args.explain_history:  # as the score stage runs it: each row explained by a seen item
        explained = score_users(
            users_df, source, args.k, best_block, explain_history=args.explain_history
        )
        explained_s = _best(functools.partial(_force, explained), args.repeats)
    torch.set_num_threads(args.cores)
    seen_csr = SeenItems.from_lists(seen)
    single_s = {
        block: _best(
            functools.partial(single_process, users, items, seen_csr, args.k, block), args.repeats
        )
        for block in args.blocks
    }
    memory = {}
    for n in args.memory_users:
        subset = users_df.filter(f"user_index < {n}")
        with PeakWorkerMemory() as peak:
            _force(score_users(subset, source, args.k))
        memory[n] = round(peak.peak / 2**20)
    spark.stop()
    best_single = min(single_s, key=lambda b: single_s[b])
    rate = {
        "als": args.users / als_s,
        "recspark": args.users / recspark_s[best_block],
        "recspark_explained": args.users / explained_s,
        "single": args.users / single_s[best_single],
    }
    return {
        "users": args.users,
        "items": args.items,
        "rank": args.rank,
        "k": args.k,
        "interactions": len(data),
        "cores": args.cores,
        "als_fit_s": round(fit_s, 1),
        "seconds": {
            "als": round(als_s, 2),
            "recspark": {b: round(s, 2) for b, s in recspark_s.items()},
            "recspark_explained": round(explained_s, 2),
            "single": {b: round(s, 2) for b, s in single_s.items()},
        },
        "users_per_s": {name: round(r) if r == r else None for name, r in rate.items()},
        "recspark_block": best_block,
        "single_block": best_single,
        "recspark_vs_als": round(rate["recspark"] / rate["als"], 2) if args.als else None,
        "recspark_vs_single": round(rate["recspark"] / rate["single"], 3),
        "worker_peak_rss_mib_by_users": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seen", type=int, default=20, help="mean seen items per user")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--partitions", type=int, default=None, help="default: --cores")
    parser.add_argument("--blocks", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--spark-blocks", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--memory-users", type=int, nargs="+", default=[25_000, 100_000])
    parser.add_argument(
        "--explain-history",
        type=int,
        default=200,
        help="also time recspark with explanations (score.explain_history; 0: skip)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--no-als", dest="als", action="store_false", help="skip timing ALS (quick iterations)"
    )
    args = parser.parse_args()
    args.partitions = args.partitions or args.cores
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
