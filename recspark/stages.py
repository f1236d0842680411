"""The stage vocabulary: one list of stages for the CLI, the pipeline runner and the Airflow DAG.

Standard library only: the DAG runs in Airflow's own environment, which has none of recspark's
dependencies, and loads this file by its path (`airflow_dags/recspark_nightly.py`).
"""

from __future__ import annotations

from typing import Literal, get_args

NightlyStage = Literal["ingest", "featurize", "train", "evaluate", "score", "export", "report"]
"""The nightly batch stages, in the order they run (`recspark run --stage all`, the DAG)."""

StageName = Literal[
    "generate",
    "ingest",
    "ingest_stream",
    "featurize",
    "train",
    "evaluate",
    "score",
    "export",
    "report",
]
"""Every stage a run can record in `pipeline_runs`."""

NIGHTLY: tuple[NightlyStage, ...] = get_args(NightlyStage)
"""The nightly stages in order: ingest, featurize, train, evaluate, score, export, report."""

DEMO: tuple[StageName, ...] = ("generate", *NIGHTLY)
"""`recspark demo`: the synthetic data first, then the nightly stages."""

__all__ = ["DEMO", "NIGHTLY", "NightlyStage", "StageName"]
