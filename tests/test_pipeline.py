"""The whole pipeline on a small synthetic set: every stage for real, output tables checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import schemas
from recspark.config import Config
from recspark.io.delta import read_table
from recspark.pipeline import run_stages
from recspark.results import PipelineRun
from recspark.tracking import setup_mlflow

from .conftest import RUN_DATE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results(nightly_run: PipelineRun) -> PipelineRun:
    """The shared default run (tests/conftest.py): these tests only read what it wrote."""
    return nightly_run


def _table(spark: SparkSession, config: Config, key: str) -> DataFrame:
    return read_table(spark, config.table_path(key), RUN_DATE)


def _names_and_types(schema: T.StructType) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


@pytest.mark.parametrize(
    "key, schema",
    [
        ("interactions", schemas.INTERACTIONS),
        ("interactions_quarantine", schemas.INTERACTIONS_QUARANTINE),
        ("train_interactions", schemas.TRAIN_INTERACTIONS),
        ("holdout", schemas.HOLDOUT),
        ("training_set", schemas.TRAINING_SET),
        ("model_metrics", schemas.MODEL_METRICS),
        ("recommendations", schemas.RECOMMENDATIONS),
    ],
)
def test_output_table_schemas(
    results: Any, spark: SparkSession, base_config: Config, key: str, schema: T.StructType
) -> None:
    df = _table(spark, base_config, key)
    assert _names_and_types(df.schema) == _names_and_types(schema)
    assert df.count() > 0


def test_profile_and_sequence_tables(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    users = _table(spark, base_config, "user_features")
    user_ids = read_table(spark, base_config.table_path("user_ids"))
    assert users.count() == users.select("user_id").distinct().count()
    assert user_ids.join(users, "user_id", "left_anti").count() == 0
    below = users.filter("is_below_min_interactions")
    assert below.filter(F.col("n_items") >= base_config.features.min_user_interactions).count() == 0
    items = _table(spark, base_config, "item_features")
    assert "category" in items.columns  # from the item catalog
    sequences = _table(spark, base_config, "user_sequences")
    assert sequences.filter(F.size("item_seq") != F.col("seq_len")).count() == 0
    assert sequences.filter(F.col("seq_len") > base_config.features.sequence_length).count() == 0
    # the stage's counts (read from its writes' commits) are the tables' sizes
    featurized = results["featurize"]
    assert featurized.users == user_ids.count()
    assert featurized.items == read_table(spark, base_config.table_path("item_ids")).count()
    assert featurized.users_below_min == below.count()
    for key, count in (
        ("train_interactions", featurized.train_pairs),
        ("holdout", featurized.holdout_pairs),
        ("training_set", featurized.training_rows),
    ):
        assert _table(spark, base_config, key).count() == count > 0, key


def test_every_raw_line_is_clean_or_quarantined(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    raw_lines = spark.read.text(f"{base_config.raw_path}/{base_config.source.path}").count()
    clean = _table(spark, base_config, "interactions").count()
    quarantined = _table(spark, base_config, "interactions_quarantine")
    assert clean + quarantined.count() == raw_lines
    assert results["ingest"].rows_in == raw_lines
    reasons = {r[0] for r in quarantined.select("reason").distinct().collect()}
    # the generator plants every kind of defect; each must land under its own reason (random
    # events may also make a rare near-duplicate)
    planted = {
        "malformed_record",
        "null_key",
        "bad_timestamp",
        "unknown_event_type",
        "rating_out_of_range",
        "unknown_item",
        "duplicate",
    }
    assert planted <= reasons <= planted | {"near_duplicate"}


def test_rerun_of_a_date_changes_nothing(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    before = _table(spark, base_config, "interactions").count()
    again = run_stages(spark, base_config, RUN_DATE, ["ingest"])["ingest"]
    assert again.clean == results["ingest"].clean
    assert (again.inserted, again.already_present) == (0, again.clean)
    assert _table(spark, base_config, "interactions").count() == before


def _recommended_and_seen(spark: SparkSession, config: Config) -> tuple[DataFrame, DataFrame]:
    recs = _table(spark, config, "recommendations")
    users = read_table(spark, config.table_path("user_ids"))
    items = read_table(spark, config.table_path("item_ids"))
    seen = (
        _table(spark, config, "train_interactions")
        .unionByName(_table(spark, config, "holdout"))
        .join(users, "user_index")
        .join(items, "item_index")
        .select("user_id", "item_id")
    )
    return recs, seen


def test_recommendations_k_per_user_unseen_unique(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    k = base_config.score.k
    recs, seen = _recommended_and_seen(spark, base_config)
    holdout_users = (
        _table(spark, base_config, "holdout")
        .join(read_table(spark, base_config.table_path("user_ids")), "user_index")
        .select("user_id")
        .distinct()
    )
    per_user = recs.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.countDistinct("item_id").alias("items"),
        F.countDistinct("rank").alias("ranks"),
        F.min("rank").alias("lo"),
        F.max("rank").alias("hi"),
    )
    got = holdout_users.join(per_user, "user_id", "left")
    assert (
        got.filter(
            ~(
                (F.col("n") == k)
                & (F.col("items") == k)
                & (F.col("ranks") == k)
                & (F.col("lo") == 1)
                & (F.col("hi") == k)
            )
        ).count()
        == 0
    )
    assert holdout_users.count() == results["evaluate"].users > 0
    assert recs.join(seen, ["user_id", "item_id"]).count() == 0
    assert recs.groupBy("user_id", "item_id").count().filter("count > 1").count() == 0
    assert recs.filter(F.isnan("score") | F.col("score").isNull()).count() == 0


def test_model_clearly_beats_popularity(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    metrics = {
        (r["model"], r["metric"]): r["value"]
        for r in _table(spark, base_config, "model_metrics").collect()
    }
    name = results["train"].model_name
    model, popularity = metrics[(name, "ndcg")], metrics[("popularity", "ndcg")]
    assert model > 1.3 * popularity, (model, popularity)
    assert ("als", "ndcg") in metrics  # the default baselines are measured beside it
    assert results["evaluate"].gate_passed


def test_mlflow_run_registry_and_champion(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    setup_mlflow(base_config)
    client = MlflowClient()
    name = base_config.mlflow.registered_model
    champion = client.get_model_version_by_alias(name, base_config.mlflow.champion_alias)
    assert str(champion.version) == results["train"].model_version
    recs = _table(spark, base_config, "recommendations")
    assert {r[0] for r in recs.select("model_version").distinct().collect()} == {
        str(champion.version)
    }
    run = client.get_run(results["train"].mlflow_run_id)
    assert run.data.tags["candidate"] == results["train"].model_name == champion.tags["model_name"]
    assert f"ndcg_at_{base_config.evaluate.k}" in run.data.metrics  # evaluate logs here
    # one parent run for the stage, a child per candidate; the best on validation registered
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_name = {child.data.tags["candidate"]: child for child in children}
    assert list(results["train"].candidates) == list(base_config.train.candidates)
    assert set(by_name) == set(base_config.train.candidates)
    validation = {name: parent.data.metrics[f"candidate_val_ndcg.{name}"] for name in by_name}
    assert validation == pytest.approx(dict(results["train"].candidates))
    # the best on validation; a blend only when strictly better than every member (a tie with
    # a member is that member, scored at a lower cost)
    chosen, best = results["train"].model_name, max(validation.values())
    assert validation[chosen] == best
    others = [v for name, v in validation.items() if name != "blend"]
    assert chosen != "blend" or best > max(others)
    assert chosen == "blend" or "blend" not in validation or validation["blend"] <= best
    tower = by_name["two_tower"]
    assert tower.data.params["embedding_dim"] == str(base_config.train.embedding_dim)
    losses = client.get_metric_history(tower.info.run_id, "train_loss")
    assert 1 < len(losses) <= base_config.train.epochs  # early stopping may end sooner
    assert losses[-1].value < losses[0].value
    assert len(client.get_metric_history(tower.info.run_id, "val_ndcg")) == len(losses)
    assert tower.data.params["num_proc"] == str(base_config.train.num_proc) == "2"


def test_evaluation_metrics_segments_and_report(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    ev = base_config.evaluate
    table = _table(spark, base_config, "model_metrics")
    rows = table.filter(F.col("model") == results["evaluate"].model_name)
    got = {(r["segment"], r["metric"], r["k"]): r["value"] for r in rows.collect()}
    # every candidate's validation NDCG is a row of its own
    validation = {
        r["model"]: r["value"] for r in table.filter(F.col("segment") == "validation").collect()
    }
    assert validation == pytest.approx(dict(results["train"].candidates))
    for k in ev.ks:
        for metric in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
            assert 0.0 <= got[("all", metric, k)] <= 1.0
        assert got[("all", "mrr", k)] <= got[("all", "hit_rate", k)]
    ndcg_at = [got[("all", "ndcg", k)] for k in sorted(ev.ks)]
    hits_at = [got[("all", "hit_rate", k)] for k in sorted(ev.ks)]
    assert hits_at == sorted(hits_at) and ndcg_at[0] > 0  # more places, more hits
    for metric in ("coverage", "novelty", "gini"):
        assert ("all", metric, ev.k) in got
    assert 0 < got[("all", "coverage", ev.k)] <= 1 and 0 <= got[("all", "gini", ev.k)] < 1
    # the segments partition the evaluated users; their NDCG averages back to the overall one
    users = {s: got[(s, "users", ev.k)] for s in ("new", "active") if (s, "users", ev.k) in got}
    assert sum(users.values()) == results["evaluate"].users
    weighted = sum(got[(s, "ndcg", ev.k)] * n for s, n in users.items()) / sum(users.values())
    assert weighted == pytest.approx(got[("all", "ndcg", ev.k)])
    # the report is in the model's MLflow run
    setup_mlflow(base_config)
    artifacts = {
        f.path for f in MlflowClient().list_artifacts(results["train"].mlflow_run_id, "evaluation")
    }
    assert artifacts == {
        "evaluation/evaluation_report.md",
        "evaluation/accuracy_at_k.png",
        "evaluation/exposure_lorenz.png",
        "evaluation/segments.png",
    }


def test_registered_model_has_signature_id_maps_and_data_versions(
    results: PipelineRun, spark: SparkSession, base_config: Config
) -> None:
    import mlflow
    import torch

    from recspark.models.served import load_scoring_model
    from recspark.training.settings import table_versions

    setup_mlflow(base_config)
    client = MlflowClient()
    run = client.get_run(results["train"].mlflow_run_id)
    for key, version in table_versions(spark, base_config).items():
        assert run.data.tags[f"data_version.{key}"] == str(version)
    assert run.data.tags["config_hash"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "id_maps")}
    assert artifacts == {"id_maps/user_ids", "id_maps/item_ids"}
    uri = f"models:/{base_config.mlflow.registered_model}/{results['train'].model_version}"
    assert mlflow.models.get_model_info(uri).signature is not None
    model = load_scoring_model(uri)  # the pyfunc's `scoring_model` artifact
    n_items = read_table(spark, base_config.table_path("item_ids")).count()
    if model.mixed:  # a blend: the user index, then the multi-hot of the seen items
        inputs = torch.zeros(2, 1 + n_items)
        inputs[:, 0] = torch.tensor([0, 1])
    elif model.history_based:
        inputs = torch.zeros(2, n_items)
    else:
        inputs = torch.tensor([0, 1])
    scores = model(inputs)
    assert scores.shape == (2, n_items)
    assert torch.isfinite(scores).all()


def test_hostile_ids_are_kept_byte_for_byte_into_the_recommendations(
    results: Any, spark: SparkSession, base_config: Config
) -> None:
    """Users with ids in other scripts, with quotes, commas and formula / SQL look-alikes
    (synthetic.hostile_ids, RFC 4180-quoted in the raw CSV) keep them in every table."""
    from recspark.io.synthetic import hostile_user_id

    assert base_config.synthetic.hostile_ids
    generated = {
        odd for i in range(base_config.synthetic.n_users) if (odd := hostile_user_id(i)) is not None
    }
    user_map = read_table(spark, base_config.table_path("user_ids"))
    mapped = {r[0] for r in user_map.filter(~F.col("user_id").startswith("u0")).collect()}
    assert mapped and mapped <= generated  # nothing changed on the way in
    assert any(not odd.isascii() for odd in mapped) and any('"' in odd for odd in mapped)
    for key in ("interactions", "user_features", "recommendations_latest"):
        ids = {r[0] for r in read_table(spark, base_config.table_path(key)).select("user_id")
               .filter(~F.col("user_id").startswith("u0")).distinct().collect()}  # fmt: skip
        assert ids == mapped, key
    indices = user_map.filter(F.col("user_id").isin(sorted(mapped))).select("user_index")
    for key in ("train_interactions", "user_sequences"):
        table = read_table(spark, base_config.table_path(key))
        assert table.join(indices, "user_index").select("user_index").distinct().count() == len(
            mapped
        ), key


def test_no_personal_data_in_the_summary_or_the_model_by_default(
    results: PipelineRun,
    spark: SparkSession,
    base_config: Config,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The printed summary (stdout, so Airflow's logs) has counts and no user's id unless
    examples are asked for; the registered model's input example is a synthetic id that the
    model answers with the popular fallback."""
    import mlflow
    import pandas as pd

    from recspark.cli import _print_summary
    from recspark.scoring.publish import sample_recommendations
    from recspark.training.registration import EXAMPLE_USER_ID

    examples = [s.user_id for s in sample_recommendations(spark, base_config, RUN_DATE)]
    assert len(examples) == 3
    capsys.readouterr()
    _print_summary(spark, base_config, results)
    summary = capsys.readouterr().out
    assert "  score        " in summary
    assert not [user for user in examples if f"{user}: " in summary], summary
    _print_summary(spark, base_config, results, show_examples=True)
    shown = capsys.readouterr().out
    assert [user for user in examples if f"{user}: " in shown] == examples, shown

    setup_mlflow(base_config)
    uri = f"models:/{base_config.mlflow.registered_model}/{results['train'].model_version}"
    folder = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path))
    example = mlflow.models.Model.load(folder).load_input_example(folder)
    assert list(example["user_id"]) == [EXAMPLE_USER_ID]
    users = read_table(spark, base_config.table_path("user_ids"))
    assert users.where(F.col("user_id") == EXAMPLE_USER_ID).count() == 0
    answer = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame(example))
    assert set(answer["reason"]) == {"popular_fallback"} and len(answer) == 3
