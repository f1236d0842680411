"""The `pipeline_runs` table: one row per stage run: counts, config hash, code version."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import subprocess
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

import recspark
from recspark.config import Config
from recspark.results import IngestResult, StageResult, as_details
from recspark.schemas import PIPELINE_RUNS
from recspark.stages import StageName

CURRENT_RUN_ID: ContextVar[str | None] = ContextVar("recspark_run_id", default=None)


def current_run_id() -> str:
    """The pipeline run id of the stages running now (`run_stages` sets it), or a fresh one."""
    return CURRENT_RUN_ID.get() or str(uuid.uuid4())


def config_hash(config: Config) -> str:
    """A short, stable hash of everything in the configuration that shapes the output."""
    data = config.model_dump(mode="json")  # project_root is excluded from dumps
    data["paths"].pop("root", None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    version = recspark.__version__
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{sha}" if sha else version


@dataclass(frozen=True)
class StageOutcome:
    """How one stage run ended: its result (succeeded) or its error (failed)."""

    stage: StageName
    started_at: dt.datetime
    seconds: float
    result: StageResult | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        return "failed" if self.result is None else "succeeded"


def stage_run_row(
    outcome: StageOutcome, run_id: str, run_date: dt.date, config_digest: str, version: str
) -> tuple[Any, ...]:
    """The `pipeline_runs` row of one stage run (columns in `schemas.PIPELINE_RUNS` order).

    The row counts of the ingest stages come from their `IngestResult`; `details` holds the
    whole result (or the error) as JSON.
    """
    result = outcome.result
    counts = result if isinstance(result, IngestResult) else None
    if result is None:
        details: dict[str, Any] = {"error": outcome.error}
    else:
        details = as_details(result, seconds=round(outcome.seconds, 1))
        details.pop("by_reason", None)  # a column of its own
    return (
        run_id,
        run_date,
        outcome.stage,
        outcome.status,
        outcome.started_at,
        float(outcome.seconds),
        None if counts is None else counts.rows_in,
        None if counts is None else counts.clean,
        None if counts is None else counts.quarantined,
        None if counts is None else counts.by_reason,
        config_digest,
        version,
        json.dumps(details, default=str),
    )


def record_stage_run(
    spark: SparkSession, config: Config, outcome: StageOutcome, run_id: str, run_date: dt.date
) -> None:
    """Append one row to `pipeline_runs` (a log: reruns add rows, never replace them)."""
    row = stage_run_row(outcome, run_id, run_date, config_hash(config), code_version())
    df = spark.createDataFrame([row], PIPELINE_RUNS)
    df.write.format("delta").mode("append").save(config.table_path("pipeline_runs"))
