"""Benchmark: every candidate, the selected champion and the baselines, under published protocols.

Everything runs through recspark's own code: ingest -> featurize (the protocol's split) -> the
train stage's candidates (`train_candidates`: each on the same rows, validated on the same users,
the winner picked as the stage picks it) -> every candidate and baseline scored on the holdout by
the evaluate stage's scorer and metrics (full catalog, the user's train items excluded).

Protocols:
- `movielens` (Microsoft Recommenders): a seeded 75/25 split stratified by item
  (`features.split=random_by_item`; items with fewer than 3 ratings stay in train), every held-out
  rating relevant, K = 10, averaged over users with held-out items; `--seeds` repeats the split
  and training with other seeds and reports the mean and its standard error.
- `beauty` / `sports` (S3Rec / BSARec next-item protocol on ../shared/data/s3rec-amazon): test =
  each user's last item with the items before it as input; validation = the second-last item of
  every user (`train.validation_users` above the user count), never a training target; training
  targets = the items before those two; full ranking, earlier items masked, at most the last 50
  items as input (`features.sequence_length`), K = 10, HR@10 and NDCG@10 over all users.
- `synthetic`: `make demo`'s generator, the default split.

Usage:
    python benchmarks/quality.py --dataset movielens \
        --data ../shared/data/ml-latest-small/ratings.csv --seeds 42 43 44
    python benchmarks/quality.py --dataset beauty --data ../shared/data/s3rec-amazon/Beauty.txt
    python benchmarks/quality.py --dataset synthetic
The datasets are read in place and never copied (see ../shared/data/README.md for their terms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parent.parent / "conf"

MOVIELENS = [
    "source.preset=movielens_csv",
    "source.item_catalog=null",
    "ingest.near_duplicate_window_s=0",
    "ingest.max_events_per_user_day=null",
    "ingest.min_timestamp=null",
    "features.split=random_by_item",
    "features.test_ratio=0.25",
    "features.min_user_interactions=3",
]
SEQUENTIAL = [
    "source.preset=s3rec_sequences",
    "source.item_catalog=null",
    "ingest.near_duplicate_window_s=0",
    "ingest.max_events_per_user_day=null",
    "features.split=leave_last_k",
    "features.holdout_per_user=1",
    "features.min_user_interactions=3",
    "features.sequence_length=50",
    "train.validation_users=100000000",
    "train.refit=false",  # the validation item is never a training target, as in the papers
]
# Published full-ranking figures on the same files (NDCG@10, HR@10).
REFERENCES: dict[str, dict[str, tuple[float, float | None]]] = {
    "beauty": {
        "SASRec, BCE (S3Rec, CIKM 2020, full ranking)": (0.0318, 0.0605),
        "eSASRec (RecSys 2025)": (0.0523, 0.0928),
        "BSARec (AAAI 2024): target": (0.0611, 0.1008),
    },
    "sports": {
        "SASRec, BCE (S3Rec, CIKM 2020, full ranking)": (0.0192, 0.0350),
        "eSASRec (RecSys 2025)": (0.0323, 0.0560),
        "ICSRec (WSDM 2024) NDCG / BSARec (AAAI 2024) HR: targets": (0.0335, 0.0612),
    },
    "movielens": {"EASE here + 2 %: target": (0.425, None)},
}
DATASETS: dict[str, dict[str, Any]] = {
    "movielens": {"run_date": dt.date(2019, 1, 1), "overrides": MOVIELENS},
    "beauty": {"run_date": dt.date(2026, 1, 1), "overrides": SEQUENTIAL},
    "sports": {"run_date": dt.date(2026, 1, 1), "overrides": SEQUENTIAL},
    "synthetic": {"run_date": dt.date(2026, 1, 1), "overrides": []},
}


def measure_seed(
    spark: Any, config: Any, run_date: dt.date, baselines: list[str]
) -> dict[str, Any]:
    """Featurize with the config's seeds, train every candidate, measure all on the holdout."""
    from recspark.evaluation.evaluate import baseline_sources, evaluation_data, measure_all
    from recspark.pipeline import run_stages
    from recspark.scoring.udf import FactorSource, InMemoryFactors
    from recspark.training.train import train_candidates

    featurized = run_stages(spark, config, run_date, ["featurize"])["featurize"]
    started = time.perf_counter()
    trained, plan, best = train_candidates(spark, config, run_date, {})
    train_seconds = time.perf_counter() - started
    data = evaluation_data(spark, config, run_date)
    cfg = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"baselines": baselines})}
    )
    sources: dict[str, FactorSource] = {
        name: InMemoryFactors(t.model.factor_set()) for name, t in trained.items()
    }
    base = baseline_sources(data.train, cfg, data.n_users, data.n_items)
    sources |= {f"{name} (baseline)": source for name, source in base.items()}
    measured, users = measure_all(
        data, sources, "float32", list(sources), cfg.evaluate, config.score.users_per_batch
    )
    k = config.evaluate.k
    models = {label: dict(r.at_k[k]) for label, r in measured.items()}
    for name, t in trained.items():
        models[name] |= {"val_ndcg": t.val_ndcg, "train_seconds": t.seconds}
        models[name]["epochs"] = len(t.history) or None
    return {
        "featurize": {"train_pairs": featurized.train_pairs, "holdout": featurized.holdout_pairs},
        "users": users,
        "selected": best,
        "champion": models[best],
        "models": models,
        "skipped": plan.skipped,
        "train_seconds": train_seconds,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recspark.config import load_config
    from recspark.pipeline import run_stages
    from recspark.session import build_spark

    dataset = DATASETS[args.dataset]
    root = Path(args.root) / args.dataset
    shutil.rmtree(root, ignore_errors=True)
    overrides = [f"paths.root={root}", "evaluate.k=10", *dataset["overrides"]]
    if args.data:
        overrides.append(f"source.path={Path(args.data).resolve()}")
    overrides += [f"spark.conf.spark.driver.memory={args.driver_memory}", *args.set]
    run_date = dataset["run_date"]
    config = load_config(CONF, "local", overrides)
    spark = build_spark(config)
    run_stages(spark, config, run_date, ["generate", "ingest"] if not args.data else ["ingest"])
    seeds = []
    for seed in args.seeds:
        seeded = load_config(
            CONF, "local", [*overrides, f"features.seed={seed}", f"train.seed={seed}"]
        )
        print(f"[quality] {args.dataset} seed {seed}", file=sys.stderr, flush=True)
        seeds.append({"seed": seed, **measure_seed(spark, seeded, run_date, args.baselines)})
    spark.stop()
    return {"dataset": args.dataset, "seeds": seeds}


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return mean, se


def _cell(values: list[float]) -> str:
    mean, se = _mean_se(values)
    return f"{mean:.4f}" if se is None else f"{mean:.4f} ± {se:.4f}"


def table(result: dict[str, Any]) -> str:
    """Markdown: every model (mean ± standard error over seeds), the champion, references."""
    seeds = result["seeds"]
    labels = list(seeds[0]["models"])
    metrics = ["ndcg", "hit_rate", "recall", "precision"]
    lines = [
        "| model | " + " | ".join(f"{m}@10" for m in metrics) + " | validation NDCG | train s |",
        "|---|" + "---|" * (len(metrics) + 2),
    ]
    rows = [(label, [s["models"][label] for s in seeds]) for label in labels]
    picks = [s["selected"] for s in seeds]
    rows.append((f"**champion** (selected: {', '.join(picks)})", [s["champion"] for s in seeds]))
    rows.sort(key=lambda row: -statistics.fmean(m["ndcg"] for m in row[1]))
    for label, runs in rows:
        cells = [_cell([r[m] for r in runs]) for m in metrics]
        val = [r["val_ndcg"] for r in runs if "val_ndcg" in r]
        secs = [r["train_seconds"] for r in runs if "train_seconds" in r]
        val_cell = _cell(val) if val else ""
        secs_cell = f"{statistics.fmean(secs):.0f}" if secs else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {val_cell} | {secs_cell} |")
    for name, (ndcg, hr) in REFERENCES.get(result["dataset"], {}).items():
        lines.append(f"| {name} | {ndcg:.4f} | {'' if hr is None else f'{hr:.4f}'} | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="synthetic")
    parser.add_argument("--data", help="the dataset's file (movielens ratings.csv, S3Rec .txt)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--baselines", nargs="+", default=["popularity", "als", "ease"])
    parser.add_argument("--root", default="/tmp/recspark-quality")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if args.dataset != "synthetic" and not args.data:
        parser.error(f"--dataset {args.dataset} needs --data (the dataset's file)")
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
