"""Benchmark: how much a co-visitation + popularity shortlist loses against exact scoring.

On a lakehouse the pipeline has filled (e.g. `make demo`'s), the champion model ranks every
held-out user twice: over the whole catalog (exact) and over each user's shortlist
(`recspark.scoring.shortlist.user_shortlists`, seen items excluded) for each --max-candidates.
Reported: the share of the exact top-K found by the shortlist ranking (overlap@K), and NDCG@K of
both on the held-out items.

Usage:
    python benchmarks/candidates.py --run-date 2026-01-01 [--conf conf --env local]
        [--max-candidates 25 50 100] [--k 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from recspark.config import load_config
    from recspark.evaluation.metrics import ranking_metrics
    from recspark.io.delta import read_table
    from recspark.scoring.shortlist import user_shortlists
    from recspark.scoring.udf import MlflowModelFactors, score_users, users_with_seen
    from recspark.session import build_spark
    from recspark.tracking import champion_version, setup_mlflow

    config = load_config(args.conf, args.env, args.set)
    spark = build_spark(config)
    setup_mlflow(config)
    run_date = dt.date.fromisoformat(args.run_date)
    champion = champion_version(config)
    source = MlflowModelFactors(
        config.mlflow_tracking_uri, f"models:/{config.mlflow.registered_model}/{champion.version}"
    )
    train = read_table(spark, config.table_path("train_interactions"), run_date)
    holdout = read_table(spark, config.table_path("holdout"), run_date)
    users = users_with_seen(holdout, train).persist()
    exact = score_users(users, source, args.k).persist()
    out: dict[str, Any] = {
        "model_version": str(champion.version),
        "items": read_table(spark, config.table_path("item_ids")).count(),
        "users": users.count(),
        "exact": ranking_metrics(exact, holdout, args.k),
        "shortlists": {},
    }
    sc = config.score
    for size in args.max_candidates:
        shortlist = user_shortlists(
            users, train, train, sc.candidate_history, sc.neighbours_per_item,
            sc.popular_candidates, size,
        )  # fmt: skip
        ranked = score_users(users.join(shortlist, "user_index", "left"), source, args.k)
        found = ranked.join(exact, ["user_index", "item_index"]).count()
        out["shortlists"][size] = {
            "overlap_at_k": round(found / exact.filter(F.col("item_index") >= 0).count(), 4),
            "metrics": ranking_metrics(ranked, holdout, args.k),
        }
    spark.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-date", required=True)
    parser.add_argument("--conf", default="conf")
    parser.add_argument("--env", default="local")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--max-candidates", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--k", type=int, default=10)
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
