"""Benchmark: does the refresh stream help? The night's list against the refreshed list on the
next item (issue 25, deliverable 5).

Protocol, per dataset:

1. Hold out each user's last two items: the night's input is the data without them. A user
   needs at least 3 items (`features.min_user_interactions`) to take part; a user with fewer
   keeps all their data in the night's input and is not measured (counted as `not_measured`).
   - `beauty` (`../shared/data/s3rec-amazon/Beauty.txt`, `user item item ...` in time order,
     5-core, so every user has at least 5 items): each line loses its last two items and the
     truncated file is written under `--root` (the dataset is never copied into the project).
   - `synthetic` (`make demo`'s generator, config `synthetic`, default settings): the generated
     landing files are ingested once in a scratch root to find, as the featurize split ranks
     them, each user's distinct positive items by their latest clean event (ties: the larger item
     id; featurize breaks them by item index), and the night's landing files are the generated
     ones without any line of a user's last two (user, item) pairs (defective lines included).
     The generator draws event times independently of each other: there is no order to learn.
2. The nightly runs on it (`recspark.pipeline.run_stages`, every NIGHTLY stage, run date
   2026-01-01), default configuration except what the data needs (Beauty: the
   `s3rec_sequences` preset and no item catalog) and `online.store: redis`: it exports to a
   redis-server started here on 127.0.0.1 (a password, no persistence); MLflow in the root.
3. A Kafka broker (KRaft, `.kafka/libs`, `tests/kafka_broker.py`) is started; each measured
   user's second-last item is produced as one event, a CSV line in `source.columns` order:
   Beauty `user,item,purchase,,<time>` stamped as the preset stamps its position (one hour
   after the user's last night item); synthetic: the pair's latest event as generated (type,
   value, time). The refresh (`recspark.online.refresh.run_refresh`, `available_now`,
   `refresh.k: 10`) runs with the night's config except `source` (the default CSV layout:
   the refresh parses payloads with `source`), on the same root, MLflow store and Redis.
4. The lists: the night's (the Redis hash of the current version before the refresh) and the
   refreshed one (the same hash after it); plus, computed here with the refresh's own code
   (`recspark.online.fresh`) on the night's model, the night's history re-encoded without the
   event (what the refresh would write with no new event: it separates the effect of the new
   item from that of re-encoding the whole night history, since the night's published vectors
   of the gradient models come from the train sequences, without the night's own held-out item)
   the same with the event's item only excluded as seen (not in the history: what merely not
   recommending a bought item again gains), and the same with the event (a check that the
   stream wrote what the code computes).
   HR@10 and NDCG@10 on each user's last item over every measured user (no list: 0), the
   paired difference with its standard error, the champion's kind.

Usage:
    python benchmarks/fresh_quality.py --dataset synthetic --json fresh-synthetic.json
    python benchmarks/fresh_quality.py --dataset beauty \
        --data ../shared/data/s3rec-amazon/Beauty.txt --json fresh-beauty.json
`--from-export` reuses a root whose night finished (its export is run again into a new Redis)
and that no refresh has read yet; `--remeasure` measures a finished root again, the lists read
from `recommendations_latest` and `fresh_recommendations` (Redis is gone by then).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.kafka_broker import KafkaBroker  # noqa: E402
from tests.servers import redis_server  # noqa: E402

CONF = PROJECT / "conf"
RUN_DATE = dt.date(2026, 1, 1)
TOPIC = "fresh-quality"
K = 10
BLEND_KINDS = ("two_tower", "sasrec", "ease", "als")
MIN_ITEMS = 3  # two held out, at least one left for the night
# Beauty through the s3rec_sequences preset: the n-th item (from 0) of a line is stamped
# 2000-01-01 00:00:00 UTC + n hours (recspark/io/sources.py, SEQUENCE_BASE_TS).
SEQUENCE_BASE = dt.datetime(2000, 1, 1)
DATASETS: dict[str, list[str]] = {
    "beauty": ["source.preset=s3rec_sequences", "source.item_catalog=null"],
    "synthetic": [],
}
LISTS = ("night", "night_reencoded", "event_excluded_only", "refreshed", "refreshed_offline")
LABELS = {
    "night": "night (published, Redis before the refresh)",
    "night_reencoded": "night model, whole night history, no event (offline)",
    "event_excluded_only": "same, the event's item excluded but not in the history (offline)",
    "refreshed": "refreshed (stream, Redis after the refresh)",
    "refreshed_offline": "night model, night history + the event (offline: check)",
}
PAIRS = (
    ("refreshed", "night"),
    ("night_reencoded", "night"),
    ("event_excluded_only", "night_reencoded"),
    ("refreshed", "event_excluded_only"),
)


def say(message: str) -> None:
    print(f"[fresh-quality] {message}", file=sys.stderr, flush=True)


# -- servers -----------------------------------------------------------------------------------
# -- the held-out items ------------------------------------------------------------------------
def prepare_beauty(data: Path, folder: Path) -> tuple[Path, list[dict[str, Any]], int]:
    """The night's file (each line without its last two items) and the held-out items."""
    folder.mkdir(parents=True, exist_ok=True)
    night = folder / f"{data.stem}-night.txt"
    held: list[dict[str, Any]] = []
    skipped = 0
    with data.open() as lines, night.open("w") as out:
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            user, items = fields[0], fields[1:]
            if len(items) < MIN_ITEMS:
                skipped += 1
                out.write(line if line.endswith("\n") else line + "\n")
                continue
            out.write(" ".join([user, *items[:-2]]) + "\n")
            when = SEQUENCE_BASE + dt.timedelta(hours=len(items) - 2)
            event = f"{user},{items[-2]},purchase,,{when:%Y-%m-%d %H:%M:%S}"
            held.append({"user": user, "second_last": items[-2], "last": items[-1], "event": event})
    return night, held, skipped


def prepare_synthetic(
    spark: Any, overrides: list[str], folder: Path, night_raw: Path
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """Generate and ingest in `folder`; write the night's landing files (the generated lines
    without each measured user's last two pairs) and the item catalog under `night_raw`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from recspark.config import load_config
    from recspark.io.delta import read_table
    from recspark.pipeline import run_stages

    config = load_config(
        CONF, "local", [*overrides, f"paths.root={folder}", "catalog.enabled=false"]
    )
    if config.synthetic.hostile_ids or config.synthetic.format != "csv":
        raise SystemExit("synthetic: the hold-out reads plain CSV lines (no hostile ids)")
    run = run_stages(spark, config, RUN_DATE, ["generate", "ingest"])
    clean = read_table(spark, config.table_path("interactions")).filter(F.col("weight") > 0)
    pair = Window.partitionBy("user_id", "item_id").orderBy(
        F.col("event_ts").desc(), F.col("event_id").desc()
    )
    latest = clean.select("*", F.row_number().over(pair).alias("_r")).filter("_r = 1")
    by_user = Window.partitionBy("user_id")
    ranked = latest.select(
        "*",
        F.row_number()
        .over(by_user.orderBy(F.col("event_ts").desc(), F.col("item_id").desc()))
        .alias("_rank"),
        F.count("*").over(by_user).alias("_n"),
    )
    rows = ranked.filter((F.col("_n") >= MIN_ITEMS) & (F.col("_rank") <= 2)).collect()
    users_all = latest.select("user_id").distinct().count()
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = by.setdefault(r["user_id"], {"user": r["user_id"]})
        if r["_rank"] == 1:
            entry["last"] = r["item_id"]
        else:
            value = "" if r["value"] is None else f"{r['value']:g}"
            entry["second_last"] = r["item_id"]
            entry["event"] = (
                f"{r['user_id']},{r['item_id']},{r['event_type']},{value},"
                f"{r['event_ts']:%Y-%m-%d %H:%M:%S}"
            )
    held = [by[u] for u in sorted(by)]
    keys = spark.createDataFrame(
        [(h["user"], item) for h in held for item in (h["second_last"], h["last"])],
        "_u string, _i string",
    )
    source = Path(config.raw_path) / "events"
    raw = spark.read.text(str(source))
    fields = F.split("value", ",")
    tagged = raw.select("value", "date", fields[0].alias("_u"), fields[1].alias("_i"))
    kept = tagged.join(F.broadcast(keys), ["_u", "_i"], "left_anti").select("value", "date")
    kept.write.mode("overwrite").partitionBy("date").text(str(night_raw / "events"))
    shutil.copytree(Path(config.raw_path) / "items", night_raw / "items")
    counts = {
        "generated_lines": raw.count(),
        "night_lines": spark.read.text(str(night_raw / "events")).count(),
        "prep_ingest_clean": run.stages[-1].result.clean,  # type: ignore[union-attr]
    }
    return held, users_all - len(held), counts


# -- lists and metrics -------------------------------------------------------------------------
def redis_lists(store: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    """(current version, user -> entry) of the online store."""
    client = store.client()
    version = store.current()
    values = client.hgetall(store.key("recs", version))
    return version, {k.decode(): json.loads(v) for k, v in values.items()}


def offline_lists(
    config: Any, target: Any, held: list[dict[str, Any]], event: str, block: int = 1024
) -> dict[str, dict[str, Any]]:
    """The refresh's computation (`recspark.online.fresh`) in this process, on the night's
    history through the night's model; the second-last item as `event`: "none" (left out),
    "seen" (excluded from the list, not in the history: a non-positive event) or "positive"
    (in the history and excluded, as the stream does)."""
    import pandas as pd

    from recspark.models.served import PERSONALIZED, POPULAR_FALLBACK
    from recspark.online.fresh import ITEM_IDS, POSITIVE, block_inputs, rank_fresh, worker_model

    model = worker_model(target, config.features.sequence_length)
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(held), block):
        part = held[start : start + block]
        frame = pd.DataFrame(
            {
                "user_id": [h["user"] for h in part],
                ITEM_IDS: [[] if event == "none" else [h["second_last"]] for h in part],
                POSITIVE: [[] if event == "none" else [event == "positive"] for h in part],
            }
        )
        ids, _scores, personal = rank_fresh(model, block_inputs(model, frame), K)
        for h, items, p in zip(part, ids, personal, strict=True):
            out[h["user"]] = {"items": items, "reason": PERSONALIZED if p else POPULAR_FALLBACK}
    return out


def measure(lists: dict[str, dict[str, Any]], held: list[dict[str, Any]]) -> dict[str, Any]:
    """HR@K and NDCG@K on the last item over every held-out user (no list: a miss)."""
    hits, gains = [], []
    for h in held:
        items = lists.get(h["user"], {}).get("items", [])[:K]
        rank = items.index(h["last"]) if h["last"] in items else None
        hits.append(0.0 if rank is None else 1.0)
        gains.append(0.0 if rank is None else 1.0 / math.log2(rank + 2))
    reasons: dict[str, int] = {}
    for h in held:
        reason = lists.get(h["user"], {}).get("reason", "no list")
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "users": len(held),
        "with_list": sum(1 for h in held if h["user"] in lists),
        "hr": sum(hits) / max(1, len(hits)),
        "ndcg": sum(gains) / max(1, len(gains)),
        "reasons": reasons,
        "_hits": hits,
        "_gains": gains,
    }


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b - a per user: the mean differences and their standard errors; hits gained and lost."""
    out: dict[str, Any] = {}
    for metric, key in (("hr", "_hits"), ("ndcg", "_gains")):
        diffs = [y - x for x, y in zip(a[key], b[key], strict=True)]
        n = len(diffs)
        mean = sum(diffs) / n
        var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
        out[metric] = mean
        out[f"{metric}_se"] = math.sqrt(var / n) if n else 0.0
    out["hits_gained"] = sum(1 for x, y in zip(a["_hits"], b["_hits"], strict=True) if y > x)
    out["hits_lost"] = sum(1 for x, y in zip(a["_hits"], b["_hits"], strict=True) if y < x)
    return out


def model_summary(target: Any) -> dict[str, Any]:
    """The champion's kind and, for a blend, its members and weights."""
    import mlflow
    import mlflow.pyfunc

    from recspark.models.encoders import BlendSpec

    mlflow.set_tracking_uri(target.tracking_uri)
    mlflow.set_registry_uri(target.tracking_uri)
    scoring = mlflow.pyfunc.load_model(target.model_uri).unwrap_python_model().scoring_model
    spec = getattr(scoring, "encoder_spec", None)
    summary: dict[str, Any] = {
        "kind": str(scoring.model_name),
        "model_version": target.model_version,
    }
    if isinstance(spec, BlendSpec):
        name, number = target.model_uri.removeprefix("models:/").rsplit("/", 1)
        client = mlflow.MlflowClient()
        run_id = client.get_model_version(name, number).run_id
        params = client.get_run(run_id).data.params if run_id else {}
        summary["blend_weights"] = {
            kind: round(float(params[f"weight.{kind}"]), 4)
            for kind in BLEND_KINDS
            if f"weight.{kind}" in params
        }
        summary["blend_raw_score_weights"] = {m.kind: round(m.weight, 4) for m in spec.members}
    return summary


# -- the run -----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) // 2**20
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": memory,
        "python": platform.python_version(),
        "load_at_start": os.getloadavg(),
    }


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "recspark", "conf"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return done.stdout.strip() + (f" + uncommitted {', '.join(changed)}" if changed else "")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Hold out, run the night, stream the events, run the refresh; then `evaluate`."""
    from recspark.config import load_config
    from recspark.io.delta import read_table
    from recspark.online.export import store_of
    from recspark.online.refresh import current_target, run_refresh
    from recspark.pipeline import run_stages
    from recspark.results import EvaluateResult, ScoreResult, TrainResult
    from recspark.session import build_spark
    from recspark.stages import NIGHTLY

    root = Path(args.root) / args.dataset
    night_root = root / "night"
    timings: dict[str, Any] = {}
    deviations = [f"--set {s}" for s in args.set]
    if args.from_export:
        if (night_root / "lakehouse" / "refresh_batches").exists():
            raise SystemExit(f"{root}: a refresh already read this root; run without --from-export")
        deviations.append("--from-export: the night of an earlier run of this script, re-exported")
    else:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    base = [f"spark.conf.spark.driver.memory={args.driver_memory}", *args.set]
    night_sets = [f"paths.root={night_root}", *DATASETS[args.dataset]]
    started, host = time.perf_counter(), machine()
    spark = build_spark(load_config(CONF, "local", [*base, *night_sets]))
    held_file = root / "heldout.json"
    if args.from_export:
        prepared = json.loads(held_file.read_text())
    else:
        say(f"{args.dataset}: holding out each user's last two items")
        t0 = time.perf_counter()
        if args.dataset == "beauty":
            night_file, held, skipped = prepare_beauty(Path(args.data).resolve(), root / "input")
            counts: dict[str, int] = {}
        else:
            held, skipped, counts = prepare_synthetic(
                spark, base, root / "prep", night_root / "data" / "raw"
            )
            night_file = None
        prepared = {"held": held, "not_measured": skipped, "counts": counts}
        prepared["night_source"] = str(night_file) if night_file else None
        held_file.write_text(json.dumps(prepared))
        timings["prepare_s"] = round(time.perf_counter() - t0, 1)
    held = prepared["held"]
    if prepared.get("night_source"):
        night_sets.append(f"source.path={prepared['night_source']}")

    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(
            redis_server(root / "servers" / "redis", secrets.token_hex(16))
        )
        online = ["online.store=redis", f"online.redis_url={redis_url}"]
        night_config = load_config(CONF, "local", [*base, *night_sets, *online])
        t0 = time.perf_counter()
        stages = ("export",) if args.from_export else NIGHTLY
        say(f"{args.dataset}: the night ({', '.join(stages)}) for {RUN_DATE}")
        night = run_stages(spark, night_config, RUN_DATE, stages)
        timings["night_s"] = round(time.perf_counter() - t0, 1)
        timings["night_stages_s"] = {s.stage: round(s.seconds, 1) for s in night.stages}
        trained = night.find(TrainResult)
        evaluated, scored = night.find(EvaluateResult), night.find(ScoreResult)
        store = store_of(night_config)
        assert store is not None
        version, night_lists = redis_lists(store)
        target = current_target(store, night_config)

        broker = KafkaBroker(root / "servers" / "kafka")
        stack.enter_context(broker.running())
        broker.create_topic(TOPIC, partitions=2)
        t0 = time.perf_counter()
        sent = broker.produce(TOPIC, [(h["user"], h["event"], None) for h in held])
        timings["produce_s"] = round(time.perf_counter() - t0, 1)
        refresh_sets = [
            *base,
            f"paths.root={night_root}",
            *(s for s in DATASETS[args.dataset] if not s.startswith("source.preset")),
            *online,
            f"stream.kafka.bootstrap_servers={broker.bootstrap}",
            f"stream.kafka.topic={TOPIC}",
            f"refresh.k={K}",
        ]
        refresh_config = load_config(CONF, "local", refresh_sets)
        say(f"{args.dataset}: {sent:,} events produced; the refresh")
        t0 = time.perf_counter()
        refresh = run_refresh(spark, refresh_config, available_now=True)
        timings["refresh_s"] = round(time.perf_counter() - t0, 1)
        after_version, fresh_lists = redis_lists(store)
        batches = [
            r.asDict()
            for r in read_table(spark, refresh_config.table_path("refresh_batches")).collect()
        ]
        fresh_table = read_table(spark, refresh_config.table_path("fresh_recommendations"))
        fresh_rows = fresh_table.select("user_id", "reason", "unknown_items", "written").collect()
    timings["pipeline_s"] = round(time.perf_counter() - started, 1)
    spark.stop()

    ingest = refresh.ingest
    by_reason: dict[str, int] = {}
    for batch in ingest:
        for reason, n in batch.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    context = {
        "dataset": args.dataset,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": host | {"load_at_end": os.getloadavg()},
        "deviations": deviations,
        "run_date": str(RUN_DATE),
        "night_overrides": [s for s in night_sets if not s.startswith("paths.root")],
        "refresh_overrides": [
            s for s in refresh_sets if not s.startswith(("paths.root", "online.redis_url"))
        ],
        "users": {"measured": len(held), "not_measured": prepared["not_measured"]},
        "prepare_counts": prepared.get("counts", {}),
        "target": dataclasses.asdict(target),
        "train": (
            {"selected": trained.model_name, "candidates_val_ndcg": dict(trained.candidates)}
            if trained
            else None
        ),
        "night_evaluate": (
            {"gate_passed": evaluated.gate_passed, "metrics": evaluated.metrics}
            if evaluated
            else None
        ),
        "night_score": (
            {"users": scored.users, "personalized": scored.personalized_users}
            | {"fallback": scored.fallback_users, "coverage": scored.coverage}
            if scored
            else None
        ),
        "online": {"version_before": version, "version_after": after_version},
        "refresh": {
            "messages": sum(r.rows_in for r in ingest),
            "clean": sum(r.clean for r in ingest),
            "quarantined": sum(r.quarantined for r in ingest),
            "quarantine_reasons": by_reason,
            "batches": len(ingest),
            "users_refreshed": len(fresh_rows),
            "written": sum(1 for r in fresh_rows if r["written"]),
            "fallback": sum(1 for r in fresh_rows if r["reason"] != "personalized"),
            "unknown_items": sum(int(r["unknown_items"]) for r in fresh_rows),
            "refresh_batches": [
                {k: v for k, v in b.items() if k in ("batch_id", "batch_s", "rows_in", "users")}
                for b in batches
            ],
        },
        "timings": timings,
    }
    (root / "context.json").write_text(json.dumps(context, indent=2, default=str))
    return evaluate(context, night_config, held, night_lists, fresh_lists, root)


def evaluate(
    context: dict[str, Any],
    config: Any,
    held: list[dict[str, Any]],
    night_lists: dict[str, dict[str, Any]],
    fresh_lists: dict[str, dict[str, Any]],
    root: Path,
) -> dict[str, Any]:
    """Every list measured on the last items; the result (also written to the root)."""
    from recspark.online.fresh import Target, worker_model

    say(f"{context['dataset']}: measuring")
    t0 = time.perf_counter()
    target = Target(**context["target"])
    lists = {
        "night": night_lists,
        "night_reencoded": offline_lists(config, target, held, "none"),
        "event_excluded_only": offline_lists(config, target, held, "seen"),
        "refreshed": fresh_lists,
        "refreshed_offline": offline_lists(config, target, held, "positive"),
    }
    measured = {name: measure(lists[name], held) for name in LISTS}

    def items(name: str, user: str) -> list[str]:
        return list(lists[name].get(user, {}).get("items", []))

    def identical(a: str, b: str) -> int:
        return sum(1 for h in held if items(a, h["user"]) == items(b, h["user"]))

    known = set(worker_model(target, config.features.sequence_length).items)
    users = context["users"] | {
        "night_lists": sum(1 for h in held if h["user"] in night_lists),
        "last_unknown_to_model": sum(1 for h in held if h["last"] not in known),
        "second_last_unknown_to_model": sum(1 for h in held if h["second_last"] not in known),
        "last_equals_second_last": sum(1 for h in held if h["last"] == h["second_last"]),
        "second_last_in_night_list": sum(
            1 for h in held if h["second_last"] in items("night", h["user"])
        ),
    }
    context["timings"]["measure_s"] = round(time.perf_counter() - t0, 1)
    result = context | {
        "users": users,
        "champion": model_summary(target),
        "identical_lists": {
            f"{a} = {b}": identical(a, b) for a, b in (*PAIRS, ("refreshed", "refreshed_offline"))
        },
        "metrics": {
            name: {k: v for k, v in m.items() if not k.startswith("_")}
            for name, m in measured.items()
        },
        "paired": {f"{a} - {b}": paired(measured[b], measured[a]) for a, b in PAIRS},
    }
    (root / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def remeasure(args: argparse.Namespace) -> dict[str, Any]:
    """Measure a finished run's root again (its Redis is gone: the night's list from
    `recommendations_latest`, the refreshed one from `fresh_recommendations`, else the
    night's)."""
    from pyspark.sql import functions as F

    from recspark.config import load_config
    from recspark.io.delta import read_table
    from recspark.session import build_spark

    root = Path(args.root) / args.dataset
    context = json.loads((root / "context.json").read_text())
    held = json.loads((root / "heldout.json").read_text())["held"]
    config = load_config(
        CONF,
        "local",
        [f"spark.conf.spark.driver.memory={args.driver_memory}", f"paths.root={root / 'night'}"],
    )
    spark = build_spark(config)
    latest = read_table(spark, config.table_path("recommendations_latest"))
    night: dict[str, dict[str, Any]] = {}
    for r in latest.orderBy("user_id", "rank").collect():
        entry = night.setdefault(r["user_id"], {"items": [], "reason": r["reason"]})
        entry["items"].append(r["item_id"])
    fresh_rows = read_table(spark, config.table_path("fresh_recommendations")).orderBy(
        F.col("refreshed_at")
    )
    fresh = {u: dict(v) for u, v in night.items()}
    for r in fresh_rows.collect():
        fresh[r["user_id"]] = {"items": list(r["items"]), "reason": r["reason"]}
    spark.stop()
    context["remeasured"] = dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%d %H:%M UTC: the lists from recommendations_latest and fresh_recommendations"
    )
    return evaluate(context, config, held, night, fresh, root)


def table(result: dict[str, Any]) -> str:
    m, p = result["metrics"], result["paired"]
    users = result["users"]
    lines = [
        f"{result['dataset']}: {users['measured']:,} users measured "
        f"({users['not_measured']:,} with fewer than {MIN_ITEMS} items left out), champion "
        f"{result['champion']['kind']}"
        + (
            f", weights on scaled scores {result['champion']['blend_weights']}"
            if "blend_weights" in result["champion"]
            else ""
        ),
        "",
        f"| list | HR@{K} | NDCG@{K} | users with a list | reasons |",
        "|---|---|---|---|---|",
    ]
    for name in LISTS:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(m[name]["reasons"].items()))
        lines.append(
            f"| {LABELS[name]} | {m[name]['hr']:.4f} | {m[name]['ndcg']:.4f} | "
            f"{m[name]['with_list']:,} | {reasons} |"
        )
    lines += [
        "",
        f"| paired difference | HR@{K} | NDCG@{K} | hits gained / lost |",
        "|---|---|---|---|",
    ]
    for name, d in p.items():
        lines.append(
            f"| {name} | {d['hr']:+.4f} ± {d['hr_se']:.4f} | {d['ndcg']:+.4f} ± "
            f"{d['ndcg_se']:.4f} | {d['hits_gained']:,} / {d['hits_lost']:,} |"
        )
    r = result["refresh"]
    lines += [
        "",
        f"refresh: {r['messages']:,} messages, {r['clean']:,} clean, {r['quarantined']:,} "
        f"quarantined {r['quarantine_reasons'] or ''}; {r['users_refreshed']:,} users refreshed, "
        f"{r['written']:,} written, {r['fallback']:,} popularity fallback, "
        f"{r['unknown_items']:,} unknown items",
        f"identical lists (users): {json.dumps(result['identical_lists'])}",
        f"users: {json.dumps(users)}",
        f"night: train {json.dumps(result['train'])}, score {json.dumps(result['night_score'])}",
        f"timings: {json.dumps(result['timings'])}",
        f"deviations from the protocol: {result['deviations'] or 'none'}",
        f"{result['date']}, commit {result['commit']}, {result['machine']['cpus']} CPUs "
        f"({result['machine']['cpu']}), load {result['machine']['load_at_start']}",
        *([f"remeasured {result['remeasured']}"] if "remeasured" in result else []),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="synthetic")
    parser.add_argument("--data", help="beauty: the S3Rec file (../shared/data/s3rec-amazon/)")
    parser.add_argument("--root", default="/tmp/recspark-fresh-quality")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--set", action="append", default=[], help="config override (a deviation)")
    parser.add_argument("--from-export", action="store_true", help="reuse the root's night")
    parser.add_argument(
        "--remeasure", action="store_true", help="measure the root's finished run again"
    )
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if args.dataset == "beauty" and not (args.data or args.from_export or args.remeasure):
        parser.error("--dataset beauty needs --data (the S3Rec Beauty.txt)")
    result = remeasure(args) if args.remeasure else run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
