"""Benchmark: recommendation quality of every model against the baselines, through the pipeline.

Protocol (the Microsoft Recommenders benchmark's): a seeded 75/25 split stratified by item
(`features.split=random_by_item`; items with fewer than 3 ratings stay in train), every held-out
interaction relevant (all ratings are positives), the user's train items removed from the ranking,
K = 10, metrics averaged over users with held-out items. Everything runs through recspark's own
stages: ingest -> featurize -> train (each model) -> evaluate (popularity, Spark ALS and EASE
baselines on the same split, scored by the same code).

Usage:
    python benchmarks/quality.py --dataset movielens \
        --data ../shared/data/ml-latest-small/ratings.csv [--models two_tower sasrec ease]
    python benchmarks/quality.py --dataset synthetic
The datasets are read in place and never copied (see ../shared/data/README.md for their terms).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parent.parent / "conf"

PROTOCOL = [
    "features.split=random_by_item",
    "features.test_ratio=0.25",
    "features.min_user_interactions=3",
    "evaluate.k=10",
]
DATASETS: dict[str, dict[str, Any]] = {
    "movielens": {
        "run_date": dt.date(2019, 1, 1),
        "overrides": [
            "source.preset=movielens_csv",
            "source.item_catalog=null",
            "ingest.near_duplicate_window_s=0",
            "ingest.max_events_per_user_day=null",
            "ingest.min_timestamp=null",
        ],
    },
    "synthetic": {"run_date": dt.date(2026, 1, 1), "overrides": []},
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recspark.config import load_config
    from recspark.pipeline import run_stages
    from recspark.results import EvaluateResult, TrainResult
    from recspark.session import build_spark

    dataset = DATASETS[args.dataset]
    root = Path(args.root) / args.dataset
    shutil.rmtree(root, ignore_errors=True)
    overrides = [f"paths.root={root}", *PROTOCOL, *dataset["overrides"]]
    if args.dataset == "movielens":
        overrides.append(f"source.path={Path(args.data).resolve()}")
    overrides += [f"spark.conf.spark.driver.memory={args.driver_memory}", *args.set]
    run_date = dataset["run_date"]
    config = load_config(CONF, "local", overrides)
    spark = build_spark(config)
    stages = ["ingest", "featurize"]
    if args.dataset == "synthetic":
        stages.insert(0, "generate")
    data = run_stages(spark, config, run_date, stages)
    featurized = dataclasses.asdict(data["featurize"])
    out: dict[str, Any] = {"dataset": args.dataset, "featurize": featurized, "models": {}}
    baselines = "[" + ",".join(args.baselines) + "]"
    for position, model in enumerate(args.models):
        # Baselines once (with the first model); popularity every time (the gate needs it).
        model_overrides = [
            f"train.model={model}",
            f"evaluate.baselines={baselines if position == 0 else '[popularity]'}",
            *args.model_set.get(model, []),
        ]
        cfg = load_config(CONF, "local", [*overrides, *model_overrides])
        started = time.perf_counter()
        results = run_stages(spark, cfg, run_date, ["train", "evaluate"])
        seconds = time.perf_counter() - started
        evaluated, trained = results.of(EvaluateResult), results.of(TrainResult)
        for label, metrics in evaluated.metrics.items():
            if label == "champion":
                continue
            entry = {**metrics, "users": evaluated.users}
            if label == model:
                entry["train_seconds"] = trained.seconds
                entry["epochs"] = len(trained.history)
                entry["stage_seconds"] = seconds
            out["models"][label] = entry
    spark.stop()
    return out


def table(result: dict[str, Any]) -> str:
    rows = sorted(result["models"].items(), key=lambda kv: -kv[1]["ndcg"])
    lines = [
        "| model | NDCG@10 | Precision@10 | Recall@10 | MAP@10 | train s |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        seconds = f"{m['train_seconds']:.0f}" if "train_seconds" in m else ""
        lines.append(
            f"| {name} | {m['ndcg']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | "
            f"{m['map']:.4f} | {seconds} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="synthetic")
    parser.add_argument("--data", help="movielens: path to ml-latest-small/ratings.csv")
    parser.add_argument("--models", nargs="+", default=["two_tower", "sasrec", "ease"])
    parser.add_argument("--baselines", nargs="+", default=["popularity", "als", "ease"])
    parser.add_argument("--root", default="/tmp/recspark-quality")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument(
        "--model-set",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="an override for one model only, e.g. sasrec:train.epochs=30",
    )
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if args.dataset == "movielens" and not args.data:
        parser.error("--dataset movielens needs --data .../ml-latest-small/ratings.csv")
    per_model: dict[str, list[str]] = {}
    for item in args.model_set:
        model, _, override = item.partition(":")
        per_model.setdefault(model, []).append(override)
    args.model_set = per_model
    result = run(args)
    print(f"\n{args.dataset}: {json.dumps(result['featurize'])}")
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
