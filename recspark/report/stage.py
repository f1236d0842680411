"""The report stage: one self-contained HTML page per run date, what the night did.

Ingest accounting and quarantine reasons, every stage's time and status, the candidates'
validation NDCG and training curves, the holdout metrics of the model, the champion and the
baselines, the exposure (Lorenz curve) of the published recommendations and their churn against
the previous run. Written to `<paths.reports>/<run_date>/run_report.html` (beside the lakehouse;
a rerun replaces it) and logged to the MLflow run of the model trained that night (artifact
`report/run_report.html`).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.report.data import gather
from recspark.report.html import render
from recspark.results import ReportResult
from recspark.tracking import setup_mlflow

FILE_NAME = "run_report.html"
ARTIFACT_DIR = "report"


def report_path(config: Config, run_date: dt.date) -> Path:
    return Path(config.path(config.paths.reports)) / run_date.isoformat() / FILE_NAME


def run_report(spark: SparkSession, config: Config, run_date: dt.date) -> ReportResult:
    """Write the run report of `run_date` and log it to the night's model run."""
    mlflow = setup_mlflow(config)
    data = gather(spark, config, run_date)
    page = render(data)
    target = report_path(config, run_date)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, target)  # readers see the old page or the new one, never half of one
    run_id = data.details("train").get("mlflow_run_id")
    if run_id:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_artifact(str(target), artifact_path=ARTIFACT_DIR)
    print(f"[report] {target}", file=sys.stderr, flush=True)
    return ReportResult(path=str(target), bytes=len(page.encode()), mlflow_run_id=run_id)


__all__ = ["FILE_NAME", "report_path", "run_report"]
