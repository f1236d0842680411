"""Stage registry and the runner: stages in order, each recorded in `pipeline_runs`."""

from __future__ import annotations

import datetime as dt
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.credentials import redact
from recspark.etl.ingest import run_ingest
from recspark.etl.stream import run_ingest_stream
from recspark.evaluation.evaluate import run_evaluate
from recspark.features.featurize import run_featurize
from recspark.io.catalog import register_tables
from recspark.io.delta import first_line
from recspark.io.synthetic import write_synthetic
from recspark.online.export import run_export
from recspark.report.stage import run_report
from recspark.results import GenerateResult, PipelineRun, StageResult, StageRun
from recspark.runs import CURRENT_RUN_ID, StageOutcome, record_stage_run
from recspark.scoring.score import run_score
from recspark.stages import StageName
from recspark.training.train import run_train

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


STAGES: dict[StageName, Stage] = {
    "generate": run_generate,
    "ingest": run_ingest,
    "ingest_stream": run_ingest_stream,
    "featurize": run_featurize,
    "train": run_train,
    "evaluate": run_evaluate,
    "score": run_score,
    "export": run_export,
    "report": run_report,
}


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
        result = STAGES[name](spark, config, run_date)
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


__all__ = ["STAGES", "UNRECORDED", "events_folder", "run_backfill", "run_generate", "run_stages"]
