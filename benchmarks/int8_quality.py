"""Benchmark: quality of int8 / bf16 scoring against float32 for every registered model.

Runs on a lakehouse and MLflow store that `benchmarks/quality.py` (or the pipeline) left behind:
each registered version is scored on the held-out split with `score.precision` float32, int8 and
bfloat16, through the same scoring code and metrics as the evaluate stage.

Usage:
    python benchmarks/int8_quality.py --root /tmp/recspark-quality/movielens --run-date 2019-01-01
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent / "conf"


def main(argv: list[str] | None = None) -> int:
    from mlflow.tracking import MlflowClient

    from recspark.config import load_config
    from recspark.evaluation.metrics import ranking_metrics
    from recspark.io.delta import read_table
    from recspark.scoring.udf import MlflowModelFactors, score_users, users_with_seen
    from recspark.session import build_spark
    from recspark.tracking import setup_mlflow
    from recspark.vocab import Precision, choices

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="paths.root of the run to read")
    parser.add_argument("--run-date", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    config = load_config(CONF, "local", [f"paths.root={args.root}"])
    spark = build_spark(config)
    setup_mlflow(config)
    name = config.mlflow.registered_model
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    train = read_table(spark, config.table_path("train_interactions"), args.run_date)
    holdout = read_table(spark, config.table_path("holdout"), args.run_date)
    users = users_with_seen(holdout, train).cache()
    print(f"| model (version) | precision | NDCG@{args.k} | Recall@{args.k} | MAP@{args.k} |")
    print("|---|---|---|---|---|")
    for version in sorted(versions, key=lambda v: int(v.version)):
        source = MlflowModelFactors(config.mlflow_tracking_uri, f"models:/{name}/{version.version}")
        for precision in choices(Precision):
            scored = score_users(users, source, args.k, 256, precision)
            m = ranking_metrics(scored, holdout, args.k)
            print(
                f"| {version.tags.get('model_name')} ({version.version}) | {precision} | "
                f"{m['ndcg']:.4f} | {m['recall']:.4f} | {m['map']:.4f} |",
                flush=True,
            )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
