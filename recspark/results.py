"""What each stage returns: frozen, typed results, read by attribute.

The summary the CLI prints (`recspark.summary`) and the `pipeline_runs` table (`recspark.runs`)
read these fields by name, so renaming one is a type error (mypy, `make lint`), never a silent
NULL. `details` of `pipeline_runs` holds each result as JSON (`as_details`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from recspark.stages import StageName


@dataclass(frozen=True)
class GenerateResult:
    """The synthetic data written."""

    lines: int  # raw lines, duplicates included
    defects: int  # lines given a defect


@dataclass(frozen=True)
class IngestResult:
    """Rows in = clean + quarantined; the clean ones MERGEd (inserted or already present)."""

    rows_in: int
    clean: int
    quarantined: int
    inserted: int
    already_present: int
    by_reason: dict[str, int]  # quarantined rows per reason, sorted by reason
    batches: int | None = None  # micro-batches of a streaming ingest (None: a batch ingest)


@dataclass(frozen=True)
class FeaturizeResult:
    """Counts of the id maps, the split and the training set of the run date."""

    users: int
    items: int
    users_below_min: int  # kept but marked is_below_min_interactions
    items_below_min: int
    train_pairs: int
    holdout_pairs: int
    training_rows: int  # positives and negatives
    external_test_missing: int | None = None  # split external: test pairs not in the data


@dataclass(frozen=True)
class EpochStats:
    """One training epoch, as every rank agrees on it."""

    epoch: int
    loss: float  # mean over the epoch's rows of all ranks
    val_ndcg: float  # NaN without validation rows
    samples_per_s: float
    seconds: float
    sent_bytes_per_step: float = 0.0  # gradient bytes one rank hands to the exchange per step
    # Rank 0's seconds of the epoch by phase (the rest of `seconds` is bookkeeping).
    input_s: float = 0.0  # waiting for batches
    compute_s: float = 0.0  # forward and backward
    exchange_s: float = 0.0  # waiting for the ranks' gradients
    update_s: float = 0.0  # the optimizer step
    idle_s: float = 0.0  # waiting for the slowest rank (measured in benchmarks only)
    val_ndcg_se: float = 0.0  # the standard error of val_ndcg (over the validation rows)


@dataclass(frozen=True)
class TrainResult:
    """The registered model version and how it was trained."""

    mlflow_run_id: str
    model_version: str
    model_name: str
    history: tuple[EpochStats, ...]
    best_val_ndcg: float | None  # the selected candidate's validation NDCG
    seconds: float
    ranks: int
    launcher: str  # horovod | torch_distributor | closed_form | kept
    device: str  # cpu | cuda
    resumed_from_epoch: int | None = None
    # Validation NDCG@evaluate.k of every candidate trained, and those left out with the reason.
    candidates: Mapping[str, float] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)
    # Candidates served by a fit of an earlier run (`train.retrain_every`), and which.
    kept: Mapping[str, str] = field(default_factory=dict)


Metrics = Mapping[str, float]


@dataclass(frozen=True)
class EvaluateResult:
    """The model, the champion and the baselines measured on one split; the gate's decision."""

    model_version: str
    model_name: str
    k: int
    users: int  # held-out users evaluated
    metrics: dict[str, dict[str, float]]  # label -> accuracy at k and coverage/novelty/gini
    segments: dict[str, dict[str, dict[str, float]]]  # label -> segment -> metrics at k, users
    champion_version: str | None
    report: str | None  # the report's path among the MLflow run's artifacts
    gate_passed: bool
    gate_reason: str
    # The train stage's candidates: validation NDCG@k of each (the selected one among them).
    candidates: Mapping[str, float] = field(default_factory=dict)

    @property
    def model(self) -> Metrics:
        """The metrics of the model under evaluation."""
        return self.metrics[self.model_name]

    @property
    def popularity(self) -> Metrics | None:
        return self.metrics.get("popularity")


@dataclass(frozen=True)
class ScoreResult:
    """The published run of recommendations."""

    model_version: str
    run_id: str
    users: int
    personalized_users: int
    fallback_users: int
    rows: int
    ranked: str  # "whole catalog" | "candidates"
    coverage: float  # share of the catalog recommended to someone


@dataclass(frozen=True)
class ExportResult:
    """The online export: the version current in the store after it."""

    store: str | None  # online.store (None: export off)
    version: str | None  # <run_date>.<run_id> of the published run
    users: int  # users written this time (0 when nothing had to be written)
    action: str  # written | kept (already current) | switched (made current again) | off


@dataclass(frozen=True)
class ReportResult:
    """The run report: where it was written and the MLflow run it was logged to."""

    path: str
    bytes: int
    mlflow_run_id: str | None


StageResult = (
    GenerateResult
    | IngestResult
    | FeaturizeResult
    | TrainResult
    | EvaluateResult
    | ScoreResult
    | ExportResult
    | ReportResult
)
R = TypeVar(
    "R",
    GenerateResult,
    IngestResult,
    FeaturizeResult,
    TrainResult,
    EvaluateResult,
    ScoreResult,
    ExportResult,
    ReportResult,
)


@dataclass(frozen=True)
class StageRun:
    """One stage of a pipeline run: its result and how long it took."""

    stage: StageName
    result: StageResult
    seconds: float


@dataclass(frozen=True)
class PipelineRun:
    """The stages of one run (one run id, one run date), in the order they ran."""

    run_id: str
    run_date: dt.date
    stages: tuple[StageRun, ...]

    def find(self, kind: type[R]) -> R | None:
        """The result of the first stage that returned a `kind`, or None."""
        return next((s.result for s in self.stages if isinstance(s.result, kind)), None)

    def of(self, kind: type[R]) -> R:
        """The result of the first stage that returned a `kind`.

        Raises:
            LookupError: no stage of this run returned one.
        """
        found = self.find(kind)
        if found is None:
            raise LookupError(f"run {self.run_id} has no {kind.__name__}")
        return found

    def __getitem__(self, stage: StageName) -> StageResult:
        """The result of the stage named `stage` (the last, if it ran twice).

        Raises:
            KeyError: the stage did not run.
        """
        found = [s.result for s in self.stages if s.stage == stage]
        if not found:
            raise KeyError(f"run {self.run_id} did not run stage {stage!r}")
        return found[-1]

    def seconds(self, kind: type[StageResult]) -> float | None:
        return next((s.seconds for s in self.stages if isinstance(s.result, kind)), None)


def as_details(result: StageResult, **extra: Any) -> dict[str, Any]:
    """A result as a JSON-ready mapping (nested dataclasses as mappings), plus `extra`."""
    return {**dataclasses.asdict(result), **extra}


__all__ = [
    "EpochStats",
    "EvaluateResult",
    "ExportResult",
    "FeaturizeResult",
    "GenerateResult",
    "IngestResult",
    "PipelineRun",
    "ReportResult",
    "ScoreResult",
    "StageResult",
    "StageRun",
    "TrainResult",
    "as_details",
]
