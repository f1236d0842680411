"""Stage registry and the runner: stages in order, each recorded in `pipeline_runs`."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.credentials import redact
from recspark.io.catalog import register_tables
from recspark.io.delta import first_line
from recspark.io.synthetic import write_synthetic
from recspark.results import GenerateResult, PipelineRun, StageResult, StageRun
from recspark.runs import CURRENT_RUN_ID, StageOutcome, record_stage_run
from recspark.stages import StageName

Stage = Callable[[SparkSession, Config, dt.date], StageResult]

# The note a failed stage's error gets when recording it in pipeline_runs failed too (a full
# disk): the CLI prints it after the stage's own error, which stays first.
UNRECORDED = "recording this failure in pipeline_runs failed too: "


def events_folder(source_path: str) -> str:
    """The folder the generator writes events to: the part of `source.path` before the first
    `{run_date}` folder (the whole nightly landing zone), or the path itself.

    Raises:
        ValueError: the path leaves no folder (it starts with the template).
    """
    parts = Path(source_path).parts
    templated = [i for i, part in enumerate(parts) if "{run_date}" in part]
    events = str(Path(*parts[: templated[0]])) if templated else source_path
    if events in ("", "."):
        raise ValueError(f"source.path: {source_path!r} leaves no folder for generated events")
    return events


def run_generate(spark: SparkSession, config: Config, run_date: dt.date) -> GenerateResult:
    """Write the seeded synthetic dataset where the ingest source reads it.

    With a nightly `source.path` such as `events/date={run_date}`, the generator writes the
    whole landing zone (`events/`, one `date=` folder per arrival day).
    """
    src = config.source
    events = events_folder(src.path)
    return write_synthetic(
        spark, config.synthetic, config.raw_path, events, src.item_catalog or "items"
    )


# Each stage's function as "module:name", imported when the stage first runs: a process that runs
# one stage (a DAG task's spark-submit) loads only that stage's code. Importing every stage
# costs about 4.5 s of CPU (training's torch and MLflow); ingest's own module about 1 s.
STAGES: dict[StageName, str] = {
    "generate": "recspark.pipeline:run_generate",
    "ingest": "recspark.etl.ingest:run_ingest",
    "ingest_stream": "recspark.etl.stream:run_ingest_stream",
    "featurize": "recspark.features.featurize:run_featurize",
    "train": "recspark.training.train:run_train",
    "evaluate": "recspark.evaluation.evaluate:run_evaluate",
    "score": "recspark.scoring.score:run_score",
    "export": "recspark.online.export:run_export",
    "report": "recspark.report.stage:run_report",
}


def stage_function(name: StageName) -> Stage:
    """The function that runs stage `name` (its module imported on first use)."""
    module, function = STAGES[name].split(":")
    return cast(Stage, getattr(importlib.import_module(module), function))


def progress(message: str) -> None:
    print(f"[recspark] {message}", file=sys.stderr, flush=True)


def run_stages(
    spark: SparkSession, config: Config, run_date: dt.date, stages: Sequence[StageName]
) -> PipelineRun:
    """Run the named stages in order; returns each stage's result with its duration.

    Every stage run, failed ones too, is appended to the `pipeline_runs` table under one run id.
    """
    run_id = str(uuid.uuid4())
    token = CURRENT_RUN_ID.set(run_id)
    try:
        runs = tuple(_run_stage(spark, config, run_date, name, run_id) for name in stages)
    finally:
        CURRENT_RUN_ID.reset(token)
    return PipelineRun(run_id, run_date, runs)


def _run_stage(
    spark: SparkSession, config: Config, run_date: dt.date, name: StageName, run_id: str
) -> StageRun:
    """One stage, recorded in `pipeline_runs` (failed runs too)."""
    progress(f"stage {name} ({run_date}) ...")
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    started = time.perf_counter()
    try:
        result = stage_function(name)(spark, config, run_date)
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")[:2000]
        failed = StageOutcome(name, started_at, time.perf_counter() - started, error=error)
        try:
            record_stage_run(spark, config, failed, run_id, run_date)
        except Exception as unrecorded:  # the stage's own error stays the one raised
            what = f"{type(unrecorded).__name__}: {first_line(unrecorded, 500)}"
            exc.add_note(UNRECORDED + redact(what))
        exc.add_note(f"stage {name} ({run_date})")  # the CLI's one line names the stage
        raise
    seconds = round(time.perf_counter() - started, 1)
    record_stage_run(
        spark, config, StageOutcome(name, started_at, seconds, result), run_id, run_date
    )
    register_tables(spark, config)  # the tables it wrote, by name (new ones only)
    progress(f"stage {name} done in {seconds}s")
    return StageRun(name, result, seconds)


def run_backfill(
    spark: SparkSession, config: Config, first: dt.date, last: dt.date, stages: Sequence[StageName]
) -> list[PipelineRun]:
    """Run `stages` for every date from `first` to `last` inclusive, oldest first.

    Each date is processed exactly as its nightly run would have been, so a backfill gives the
    same tables as the nightly runs did; rerunning dates that already ran changes nothing.
    """
    if last < first:
        raise ValueError(f"backfill: --to {last} is before --from {first}")
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    return [run_stages(spark, config, day, stages) for day in days]


__all__ = [
    "STAGES",
    "UNRECORDED",
    "events_folder",
    "run_backfill",
    "run_generate",
    "run_stages",
    "stage_function",
]
