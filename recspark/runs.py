"""The `pipeline_runs` table: one row per stage run: counts, config hash, code version."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import subprocess
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

import recspark
from recspark.config import Config
from recspark.schemas import PIPELINE_RUNS

CURRENT_RUN_ID: ContextVar[str | None] = ContextVar("recspark_run_id", default=None)


def current_run_id() -> str:
    """The pipeline run id of the stages running now (`run_stages` sets it), or a fresh one."""
    return CURRENT_RUN_ID.get() or str(uuid.uuid4())


def config_hash(config: Config) -> str:
    """A short, stable hash of everything in the configuration that shapes the output."""
    data = dataclasses.asdict(config)
    data.pop("project_root", None)
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


def record_stage_run(
    spark: SparkSession,
    config: Config,
    *,
    run_id: str,
    run_date: dt.date,
    stage: str,
    status: str,
    started_at: dt.datetime,
    duration_s: float,
    result: dict[str, Any] | None,
) -> None:
    """Append one row to `pipeline_runs` (a log: reruns add rows, never replace them)."""
    result = result or {}
    row = (
        run_id,
        run_date,
        stage,
        status,
        started_at,
        float(duration_s),
        result.get("rows_in"),
        result.get("clean"),
        result.get("quarantined"),
        result.get("by_reason"),
        config_hash(config),
        code_version(),
        json.dumps({k: v for k, v in result.items() if k != "by_reason"}, default=str),
    )
    df = spark.createDataFrame([row], PIPELINE_RUNS)
    df.write.format("delta").mode("append").save(config.table_path("pipeline_runs"))
