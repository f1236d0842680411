"""The pure steps of the featurize, evaluate and score stages on small in-memory inputs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import SparkSession

from recspark.config import FeaturesConfig
from recspark.etl.ingest import AccountingError, tally
from recspark.etl.stream import sum_results
from recspark.evaluation.evaluate import Challenger, metric_table_rows, mlflow_metrics
from recspark.evaluation.report import ModelResult
from recspark.features.featurize import IS_BELOW_MIN, item_profiles, split_pairs, user_profiles
from recspark.pipeline import events_folder
from recspark.results import IngestResult
from recspark.rules import is_positive, run_date_end
from recspark.scoring.score import RunStamp, expected_rows, split_cold_users, with_ids

AS_OF = dt.datetime(2026, 1, 3)
EVENTS = "user_id string, item_id string, event_type string, value double, event_ts timestamp"


def _events(spark: SparkSession):
    rows = [
        ("u1", "i1", "view", None, dt.datetime(2026, 1, 1)),
        ("u1", "i2", "view", None, dt.datetime(2026, 1, 2)),
        ("u1", "i3", "view", None, dt.datetime(2026, 1, 2)),
        ("u2", "i1", "view", None, dt.datetime(2026, 1, 2)),
    ]
    return spark.createDataFrame(rows, EVENTS)


def test_run_date_end_and_positive_pairs(spark: SparkSession) -> None:
    assert run_date_end(dt.date(2026, 1, 31)) == dt.datetime(2026, 2, 1)
    pairs = spark.createDataFrame(
        [(1, 0.0), (2, 0.5), (3, -1.0)], "user_index int, strength double"
    )
    assert [r[0] for r in pairs.filter(is_positive()).collect()] == [2]


def test_user_profiles_mark_users_below_the_minimum(spark: SparkSession) -> None:
    user_map = spark.createDataFrame([("u1", 0), ("u2", 1)], "user_id string, user_index int")
    feats = FeaturesConfig(min_user_interactions=2, windows_days=[7])
    got = user_profiles(_events(spark), user_map, AS_OF, ["view"], feats)
    rows = {r["user_id"]: (r["user_index"], r["n_items"], r[IS_BELOW_MIN]) for r in got.collect()}
    assert rows == {"u1": (0, 3, False), "u2": (1, 1, True)}


def test_item_profiles_count_positive_users(spark: SparkSession) -> None:
    item_map = spark.createDataFrame([("i1", 0), ("i2", 1)], "item_id string, item_index int")
    positives = spark.createDataFrame(
        [("u1", "i1"), ("u2", "i1"), ("u1", "i2")], "user_id string, item_id string"
    )
    feats = FeaturesConfig(min_item_interactions=2, windows_days=[7])
    got = item_profiles(_events(spark), positives, item_map, AS_OF, None, feats)
    rows = {r["item_id"]: (r["item_index"], r[IS_BELOW_MIN]) for r in got.collect()}
    # i3 has events but no index yet (not in the map) and no positive user
    assert rows == {"i1": (0, False), "i2": (1, True), "i3": (None, True)}


def test_global_time_split_cuts_back_from_the_end_of_the_run_date(spark: SparkSession) -> None:
    pairs = spark.createDataFrame(
        [(0, 1, dt.datetime(2026, 1, 4, 23)), (0, 2, dt.datetime(2026, 1, 5, 1)),
         (1, 3, dt.datetime(2026, 1, 5, 2))],
        "user_index int, item_index int, last_ts timestamp",
    )  # fmt: skip
    feats = FeaturesConfig(split="global_time", holdout_days=1)
    train, test = split_pairs(pairs, feats, dt.date(2026, 1, 5))  # cut: 2026-01-05 00:00
    assert [r["item_index"] for r in train.collect()] == [1]
    assert [r["item_index"] for r in test.collect()] == [2]  # user 1 has no train row: dropped
    with pytest.raises(ValueError, match="split_external"):
        split_pairs(pairs, FeaturesConfig(split="external", external_test="t.csv"), dt.date.today())


def test_cold_users_and_expected_rows(spark: SparkSession) -> None:
    users = spark.createDataFrame(
        [(0, [1, 2]), (1, None), (2, [0, 1, 2, 3]), (3, [1])],
        "user_index int, seen_items array<int>",
    )
    positives = spark.createDataFrame([(0, 1), (2, 0), (3, 1)], "user_index int, item_index int")
    warm, cold = split_cold_users(users, positives, known_users=3)
    assert sorted(r[0] for r in warm.collect()) == [0, 2]
    assert sorted(r[0] for r in cold.collect()) == [1, 3]  # no positive; unknown to the model
    expected = {r[0]: r[1] for r in expected_rows(users, n_items=5, k=3, warm=None).collect()}
    assert expected == {0: 3, 1: 3, 2: 1, 3: 3}
    shortlisted = warm.select("user_index").join(
        spark.createDataFrame([(0, [4, 3])], "user_index int, shortlist array<int>"),
        "user_index",
        "left",
    )
    expected = {r[0]: r[1] for r in expected_rows(users, 5, 3, warm=shortlisted).collect()}
    assert expected == {0: 2, 1: 3, 2: 0, 3: 3}  # a warm user without a shortlist gets none


def test_with_ids_gives_recommendation_rows(spark: SparkSession) -> None:
    recs = spark.createDataFrame(
        [(0, 1, 1, 0.5, 0, "personalized"), (0, 0, 2, 0.25, -1, "personalized")],
        "user_index int, item_index int, rank int, score float, explanation_index int, "
        "reason string",
    )
    user_map = spark.createDataFrame([("u", 0)], "user_id string, user_index int")
    item_map = spark.createDataFrame([("a", 0), ("b", 1)], "item_id string, item_index int")
    stamp = RunStamp("m", "3", "run-1", dt.date(2026, 1, 1))
    got = sorted(tuple(r) for r in with_ids(recs, user_map, item_map, stamp).collect())
    assert got == [
        ("u", 1, "b", 0.5, "personalized", "a", "m", "3", "run-1", dt.date(2026, 1, 1)),
        ("u", 2, "a", 0.25, "personalized", None, "m", "3", "run-1", dt.date(2026, 1, 1)),
    ]


def test_metric_rows_name_models_versions_and_segments() -> None:
    result = ModelResult(
        at_k={10: {"ndcg": 0.5}},
        beyond={"coverage": 0.25},
        segments={"new": {"ndcg": 0.125, "users": 4.0}},
        exposure=np.zeros(1),
    )
    chosen = Challenger(version="7", run_id="r", model_name="ease", champion="6")
    measured = {"ease": result, "champion": result, "popularity": result}
    rows = metric_table_rows(measured, 10, dt.date(2026, 1, 1), chosen)
    assert (dt.date(2026, 1, 1), "ease", "7", "ndcg", 10, 0.5, "r", "all") in rows
    assert (dt.date(2026, 1, 1), "champion", "6", "coverage", 10, 0.25, "r", "all") in rows
    assert (dt.date(2026, 1, 1), "popularity", None, "users", 10, 4.0, "r", "new") in rows
    assert len(rows) == 3 * 4
    logged = mlflow_metrics(measured, 10, "ease")
    assert logged["ndcg_at_10"] == 0.5 and logged["new_users_at_10"] == 4.0
    assert logged["champion_coverage_at_10"] == 0.25
    assert logged["popularity_new_ndcg_at_10"] == 0.125


def test_ingest_tally_refuses_counts_that_do_not_add_up() -> None:
    counts = {None: 7, "duplicate": 1, "null_key": 2}
    assert tally(counts, 10, dt.date(2026, 1, 1)) == (7, 3, {"duplicate": 1, "null_key": 2})
    with pytest.raises(AccountingError, match=r"rows in 11 != clean 7 \+ quarantined 3"):
        tally(counts, 11, dt.date(2026, 1, 1))


def test_streaming_totals_add_up_the_batches() -> None:
    one = IngestResult(4, 3, 1, 3, 0, {"duplicate": 1})
    two = IngestResult(2, 1, 1, 0, 1, {"duplicate": 1, "null_key": 0})
    total = sum_results([one, two])
    assert total == IngestResult(6, 4, 2, 3, 1, {"duplicate": 2, "null_key": 0}, batches=2)
    assert sum_results([]) == IngestResult(0, 0, 0, 0, 0, {}, batches=0)


def test_generated_events_go_to_the_landing_zone_above_the_nightly_folder() -> None:
    assert events_folder("events/date={run_date}") == "events"
    assert events_folder("raw/events") == "raw/events"
    with pytest.raises(ValueError, match="leaves no folder"):
        events_folder("{run_date}/x")
