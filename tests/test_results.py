"""Typed stage results: what `pipeline_runs` and the printed summary read from them (no Spark)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from recspark.results import (
    EpochStats,
    EvaluateResult,
    GenerateResult,
    IngestResult,
    PipelineRun,
    ScoreResult,
    StageRun,
    TrainResult,
)
from recspark.runs import StageOutcome, stage_run_row
from recspark.schemas import PIPELINE_RUNS
from recspark.scoring.publish import UserSample
from recspark.summary import format_summary

DAY = dt.date(2026, 1, 1)
STARTED = dt.datetime(2026, 1, 2, 3, 4, 5)
INGEST = IngestResult(
    rows_in=10, clean=7, quarantined=3, inserted=6, already_present=1,
    by_reason={"duplicate": 1, "null_key": 2},
)  # fmt: skip
TRAIN = TrainResult(
    mlflow_run_id="r1", model_version="4", model_name="two_tower",
    history=(EpochStats(1, 2.5, 0.125, 1000.0, 1.5), EpochStats(2, 2.0, 0.25, 2000.0, 1.0, 512.0)),
    best_val_ndcg=0.25, seconds=12.0, ranks=2, launcher="horovod", device="cpu",
)  # fmt: skip
EVALUATE = EvaluateResult(
    model_version="4", model_name="two_tower", k=10, users=500,
    metrics={"two_tower": {"ndcg": 0.3, "recall": 0.5}, "popularity": {"ndcg": 0.1, "recall": 0.2}},
    segments={"two_tower": {"active": {"users": 500.0, "ndcg": 0.3, "hit_rate": 0.5}}},
    champion_version=None, report=None, gate_passed=True, gate_reason="passed",
)  # fmt: skip
SCORE = ScoreResult(
    model_version="4", run_id="run-1", users=600, personalized_users=590, fallback_users=10,
    rows=6000, ranked="whole catalog", coverage=0.25,
)  # fmt: skip


def _row(outcome: StageOutcome) -> dict[str, object]:
    row = stage_run_row(outcome, "run-1", DAY, "hash", "0.1.0")
    assert len(row) == len(PIPELINE_RUNS.fields)
    return dict(zip(PIPELINE_RUNS.fieldNames(), row, strict=True))


def test_ingest_counts_land_in_their_columns() -> None:
    row = _row(StageOutcome("ingest", STARTED, 3.25, INGEST))
    assert (row["stage"], row["status"], row["duration_s"]) == ("ingest", "succeeded", 3.25)
    assert (row["rows_in"], row["rows_clean"], row["rows_quarantined"]) == (10, 7, 3)
    assert row["quarantined_by_reason"] == {"duplicate": 1, "null_key": 2}
    details = json.loads(str(row["details"]))
    assert details == {
        "rows_in": 10, "clean": 7, "quarantined": 3, "inserted": 6, "already_present": 1,
        "batches": None, "seconds": 3.2,
    }  # fmt: skip


def test_other_stages_have_no_counts_and_keep_their_result_as_details() -> None:
    row = _row(StageOutcome("train", STARTED, 12.0, TRAIN))
    assert row["rows_in"] is row["rows_clean"] is row["quarantined_by_reason"] is None
    details = json.loads(str(row["details"]))
    assert details["model_version"] == "4"
    assert details["history"][1] == {
        "epoch": 2, "loss": 2.0, "val_ndcg": 0.25, "samples_per_s": 2000.0, "seconds": 1.0,
        "sent_bytes_per_step": 512.0, "input_s": 0.0, "compute_s": 0.0, "exchange_s": 0.0,
        "update_s": 0.0, "idle_s": 0.0, "val_ndcg_se": 0.0,
    }  # fmt: skip


def test_a_failed_stage_records_its_error() -> None:
    row = _row(StageOutcome("score", STARTED, 1.0, error="ValidationError: no"))
    assert row["status"] == "failed"
    assert json.loads(str(row["details"])) == {"error": "ValidationError: no"}


def test_results_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        INGEST.clean = 0  # type: ignore[misc]


def test_pipeline_run_finds_results_by_kind_and_by_stage() -> None:
    run = PipelineRun(
        "run-1", DAY, (StageRun("ingest", INGEST, 2.0), StageRun("train", TRAIN, 9.0))
    )
    assert run.of(TrainResult) is TRAIN and run["ingest"] is INGEST
    assert run.find(ScoreResult) is None
    assert run.seconds(TrainResult) == 9.0
    with pytest.raises(LookupError, match="no ScoreResult"):
        run.of(ScoreResult)
    with pytest.raises(KeyError, match="did not run stage 'score'"):
        run["score"]


def test_summary_lines_of_every_stage() -> None:
    run = PipelineRun(
        "run-1",
        DAY,
        tuple(
            StageRun(stage, result, 1.0)  # type: ignore[arg-type]
            for stage, result in [
                ("generate", GenerateResult(lines=12, defects=2)),
                ("ingest", INGEST),
                ("train", TRAIN),
                ("evaluate", EVALUATE),
                ("score", SCORE),
            ]
        ),
    )
    samples = [UserSample("u1", (("i1", 2.5, "i9"), ("i2", 1.25, None)))]
    lines = format_summary(run, "/lake", samples).splitlines()
    assert lines[0] == "recspark summary for run date 2026-01-01 (lakehouse: /lake)"
    assert lines[1] == "  generated    12 raw lines (2 with a defect)"
    assert lines[2] == (
        "  ingest       rows in 10 = clean 7 + quarantined 3 (duplicate 1, null_key 2); "
        "6 new events merged"
    )
    assert lines[3] == "  train        two_tower version 4, 2 horovod ranks on cpu, 12s"
    assert lines[5] == (
        "                 epoch 2: loss 2.0000, validation ndcg 0.2500, 2,000 samples/s"
    )
    assert lines[7].split() == ["ndcg", "recall", "(@10)"]
    assert lines[8].split() == ["two_tower", "0.3000", "0.5000"]
    assert lines[10] == (
        "                 two_tower, active users (500): ndcg@10 0.3000, hit_rate@10 0.5000"
    )
    assert lines[11] == "                 gate: passed, now the champion (passed)"
    assert lines[12].startswith("  score        6,000 recommendations for 600 users (590 personal")
    assert "catalog coverage 25.0%" in lines[12]
    assert lines[13] == "                 u1: i1 (2.50, because of i9), i2 (1.25)"
    assert len(lines) == 14
