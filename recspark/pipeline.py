"""Stage registry, the whole-pipeline runner and the summary it prints."""

from __future__ import annotations

import datetime as dt
import functools
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.etl.ingest import run_ingest
from recspark.etl.stream import run_ingest_stream
from recspark.evaluation.evaluate import run_evaluate
from recspark.features.featurize import run_featurize
from recspark.io.delta import read_table
from recspark.io.synthetic import write_synthetic
from recspark.runs import CURRENT_RUN_ID, record_stage_run
from recspark.schemas import RANK, USER_ID
from recspark.scoring.score import run_score
from recspark.training.train import run_train

Stage = Callable[[SparkSession, Config, dt.date], dict[str, Any]]


def run_generate(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Write the seeded synthetic dataset where the ingest source reads it.

    With a nightly `source.path` such as `events/date={run_date}`, the generator writes the
    whole landing zone (`events/`, one `date=` folder per arrival day).
    """
    src = config.source
    catalog = src.item_catalog or "items"
    parts = Path(src.path).parts
    templated = [i for i, part in enumerate(parts) if "{run_date}" in part]
    events = str(Path(*parts[: templated[0]])) if templated else src.path
    if events in ("", "."):
        raise ValueError(f"source.path: {src.path!r} leaves no folder for generated events")
    return write_synthetic(spark, config.synthetic, config.raw_path, events, catalog)


STAGES: dict[str, Stage] = {
    "ingest": run_ingest,
    "ingest_stream": run_ingest_stream,
    "featurize": run_featurize,
    "train": run_train,
    "evaluate": run_evaluate,
    "score": run_score,
}


def progress(message: str) -> None:
    print(f"[recspark] {message}", file=sys.stderr, flush=True)


def run_stages(
    spark: SparkSession, config: Config, run_date: dt.date, stages: list[str]
) -> dict[str, dict[str, Any]]:
    """Run the named stages in order; returns each stage's result with its duration.

    Every stage run, failed ones too, is appended to the `pipeline_runs` table under one run id.
    """
    results: dict[str, dict[str, Any]] = {}
    run_id = str(uuid.uuid4())
    token = CURRENT_RUN_ID.set(run_id)
    try:
        for name in stages:
            results[name] = _run_stage(spark, config, run_date, name, run_id)
    finally:
        CURRENT_RUN_ID.reset(token)
    return results


def _run_stage(
    spark: SparkSession, config: Config, run_date: dt.date, name: str, run_id: str
) -> dict[str, Any]:
    """One stage, recorded in `pipeline_runs` (failed runs too)."""
    stage = run_generate if name == "generate" else STAGES[name]
    progress(f"stage {name} ({run_date}) ...")
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    started = time.perf_counter()
    record = functools.partial(
        record_stage_run,
        spark,
        config,
        run_id=run_id,
        run_date=run_date,
        stage=name,
        started_at=started_at,
    )
    try:
        result = stage(spark, config, run_date)
    except Exception as exc:
        record(
            status="failed",
            duration_s=time.perf_counter() - started,
            result={"error": f"{type(exc).__name__}: {exc}"[:2000]},
        )
        raise
    result["seconds"] = round(time.perf_counter() - started, 1)
    record(status="succeeded", duration_s=result["seconds"], result=result)
    progress(f"stage {name} done in {result['seconds']}s")
    return result


def run_backfill(
    spark: SparkSession, config: Config, first: dt.date, last: dt.date, stages: list[str]
) -> dict[dt.date, dict[str, dict[str, Any]]]:
    """Run `stages` for every date from `first` to `last` inclusive, oldest first.

    Each date is processed exactly as its nightly run would have been, so a backfill gives the
    same tables as the nightly runs did; rerunning dates that already ran changes nothing.
    """
    if last < first:
        raise ValueError(f"backfill: --to {last} is before --from {first}")
    results = {}
    day = first
    while day <= last:
        results[day] = run_stages(spark, config, day, stages)
        day += dt.timedelta(days=1)
    return results


def format_summary(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    results: dict[str, dict[str, Any]],
    n_users: int = 3,
    n_recs: int = 5,
) -> str:
    """The demo's closing report: counts, training, evaluation, a few users' recommendations."""
    lines = [
        f"recspark summary for run date {run_date} (lakehouse: "
        f"{Path(config.table_path('interactions')).parent})"
    ]
    if "generate" in results:
        g = results["generate"]
        lines.append(f"  generated    {g['lines']:,} raw lines ({g['defects']:,} with a defect)")
    if "ingest" in results:
        i = results["ingest"]
        reasons = ", ".join(f"{k} {v:,}" for k, v in i["by_reason"].items()) or "none"
        lines.append(
            f"  ingest       rows in {i['rows_in']:,} = clean {i['clean']:,} + "
            f"quarantined {i['quarantined']:,} ({reasons}); "
            f"{i['inserted']:,} new events merged"
        )
    if "featurize" in results:
        f = results["featurize"]
        lines.append(
            f"  featurize    {f['users']:,} users, {f['items']:,} items, "
            f"{f['train_pairs']:,} train pairs, {f['holdout_pairs']:,} held out, "
            f"{f['training_rows']:,} training rows (with negatives); below the minimum "
            f"interactions (kept, marked): {f['users_below_min']:,} users, "
            f"{f['items_below_min']:,} items"
        )
    if "train" in results:
        t = results["train"]
        lines.append(
            f"  train        {t['model_name']} version {t['model_version']}, {t['ranks']} "
            f"{t['launcher']} ranks on {t['device']}, {t['seconds']:.0f}s"
        )
        for row in t["history"]:
            lines.append(
                f"                 epoch {row['epoch']}: loss {row['loss']:.4f}, "
                f"validation ndcg {row['val_ndcg']:.4f}, {row['samples_per_s']:,.0f} samples/s"
            )
    if "evaluate" in results:
        e = results["evaluate"]
        k = e["k"]
        lines.append(f"  evaluate     {e['users']:,} held-out users, K={k}")
        lines.append(
            f"                 {'':12}" + "".join(f"{m:>10}" for m in e["model"]) + f"   (@{k})"
        )
        for label, values in e["metrics"].items():
            lines.append(
                f"                 {label:12}" + "".join(f"{v:>10.4f}" for v in values.values())
            )
        for segment, values in sorted(e["segments"][e["model_name"]].items()):
            lines.append(
                f"                 {e['model_name']}, {segment} users ({int(values['users']):,}): "
                f"ndcg@{k} {values['ndcg']:.4f}, hit_rate@{k} {values['hit_rate']:.4f}"
            )
        lines.append(
            "                 gate: "
            + ("passed, now the champion" if e["gate_passed"] else "REFUSED, champion unchanged")
            + f" ({e['gate_reason']})"
        )
    if "score" in results:
        s = results["score"]
        lines.append(
            f"  score        {s['rows']:,} recommendations for {s['users']:,} users "
            f"({s['personalized_users']:,} personalized, {s['fallback_users']:,} popular "
            f"fallback; catalog coverage {s['coverage']:.1%}), model version "
            f"{s['model_version']}; validated and published to recommendations_latest"
        )
        recs = read_table(spark, config.table_path("recommendations"), run_date)
        sample_users = [
            r[USER_ID]
            for r in recs.select(USER_ID).distinct().orderBy(USER_ID).limit(n_users).collect()
        ]
        for user in sample_users:
            top = recs.filter((F.col(USER_ID) == user) & (F.col(RANK) <= n_recs)).orderBy(RANK)
            items = ", ".join(
                f"{r['item_id']} ({r['score']:.2f}"
                + (f", because of {r['explanation']})" if r["explanation"] else ")")
                for r in top.collect()
            )
            lines.append(f"                 {user}: {items}")
    return "\n".join(lines)


__all__ = ["STAGES", "format_summary", "run_generate", "run_stages"]
