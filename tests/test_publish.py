"""Publishing recommendations: reasons, explanations, validation before publish, rollback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import exit_codes
from recspark.config import Config, load_config
from recspark.health import HealthCheckError, check_before_publish
from recspark.io.delta import read_table
from recspark.models.base import ScoringModel
from recspark.pipeline import run_stages
from recspark.ranking.factors import IdFactors
from recspark.results import PipelineRun
from recspark.scoring.publish import (
    Expectation,
    ValidationError,
    published_run,
    rollback,
    stage_validate_publish,
    validate_recommendations,
)
from recspark.scoring.score import run_score
from recspark.scoring.shortlist import user_shortlists
from recspark.tracking import (
    NoModelError,
    champion_version,
    demote,
    promote,
    set_champion,
    setup_mlflow,
)

from .conftest import CONF_DIR, RUN_DATE

PROJECT = CONF_DIR.parent
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config(spark: SparkSession, featurized_copy: Callable[..., Config]) -> Config:
    """The shared run's featurized tables, an EASE champion of this module's own registry."""
    config = featurized_copy(*SETTINGS)
    run_stages(spark, config, RUN_DATE, ["train", "evaluate"])
    return config


SETTINGS = ["train.candidates=[ease]", "evaluate.baselines=[]"]  # fast: closed-form model only


def _with(config: Config, *overrides: str) -> Config:
    return load_config(CONF_DIR, "test", [f"paths.root={config.paths.root}", *SETTINGS, *overrides])


def _seen(spark: SparkSession, config: Config) -> DataFrame:
    users = read_table(spark, config.table_path("user_ids"))
    items = read_table(spark, config.table_path("item_ids"))
    return (
        read_table(spark, config.table_path("train_interactions"), RUN_DATE)
        .unionByName(read_table(spark, config.table_path("holdout"), RUN_DATE))
        .join(users, "user_index")
        .join(items, "item_index")
        .select("user_id", "item_id", "strength")
    )


def _rows(df: DataFrame) -> list[tuple[object, ...]]:
    cols = ["user_id", "rank", "item_id", "score", "reason", "explanation", "run_id"]
    return sorted(tuple(r) for r in df.select(*cols).collect())


def test_promote_and_demote(config: Config) -> None:
    # first in the module: only the gate has promoted a version so far
    setup_mlflow(config)
    n_users, n_items = 3, 4
    gate_champion = str(champion_version(config).version)
    manual = _register_id_model(config, n_users, n_items)
    assert str(promote(config, manual).version) == manual
    assert str(champion_version(config).version) == manual
    old, new = demote(config)  # back to the champion the gate chose
    assert new is not None and (str(old.version), str(new.version)) == (manual, gate_champion)
    assert str(champion_version(config).version) == gate_champion
    old, new = demote(config)  # nothing earlier left: no champion at all
    assert (str(old.version), new) == (gate_champion, None)
    with pytest.raises(NoModelError, match="no 'champion' alias"):
        champion_version(config)
    with pytest.raises(NoModelError, match="has no version '999'"):
        promote(config, "999")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    common = ["--conf", str(CONF_DIR), "--env", "test", "--set", f"paths.root={config.paths.root}"]
    done = subprocess.run(
        [sys.executable, "-m", "recspark", "promote", "--version", gate_champion, *common],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"version {gate_champion} is now the champion" in done.stdout
    assert str(champion_version(config).version) == gate_champion
    bad = subprocess.run(
        [sys.executable, "-m", "recspark", "promote", "--version", "999", *common],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == exit_codes.NO_MODEL and "has no version '999'" in bad.stderr


def test_score_publishes_explained_recommendations(spark: SparkSession, config: Config) -> None:
    result = run_stages(spark, config, RUN_DATE, ["score"])["score"]
    recs = read_table(spark, config.table_path("recommendations"), RUN_DATE)
    latest = read_table(spark, config.table_path("recommendations_latest"))
    assert _rows(latest) == _rows(recs)
    runs = read_table(spark, config.table_path("pipeline_runs"))
    score_run = runs.filter((F.col("stage") == "score") & (F.col("status") == "succeeded"))
    assert {r[0] for r in recs.select("run_id").distinct().collect()} == {
        score_run.orderBy(F.col("started_at").desc()).first()["run_id"]  # type: ignore[index]
    }
    assert result.coverage >= config.score.min_coverage
    personalized = recs.filter(F.col("reason") == "personalized")
    assert personalized.count() > 0
    # every explanation is an item the user has seen
    seen = _seen(spark, config)
    explained = personalized.select(
        "user_id", F.col("explanation").alias("item_id"), F.col("item_id").alias("recommended")
    )
    assert explained.filter(F.col("item_id").isNull()).count() == 0
    assert explained.join(seen, ["user_id", "item_id"], "left_anti").count() == 0
    # and not the same item for every recommendation of a user: it depends on the item
    varied = explained.groupBy("user_id").agg(F.countDistinct("item_id").alias("n"))
    assert varied.filter(F.col("n") > 1).count() > 0


def _register_id_model(config: Config, n_known_users: int, n_items: int) -> str:
    import mlflow.pytorch

    mlflow = setup_mlflow(config)
    rng = np.random.default_rng(0)
    factors = IdFactors(
        rng.normal(size=(n_known_users, 8)).astype(np.float32),
        rng.normal(size=(n_items, 8)).astype(np.float32),
    )
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            ScoringModel("two_tower", None, factors),
            name="model",
            registered_model_name=config.mlflow.registered_model,
            serialization_format="pickle",
        )
    version = str(info.registered_model_version)
    MlflowClient().set_model_version_tag(
        config.mlflow.registered_model, version, "model_name", "two_tower"
    )
    return version


def test_users_the_model_cannot_score_get_the_popularity_fallback(
    spark: SparkSession, config: Config
) -> None:
    users = read_table(spark, config.table_path("user_ids"))
    n_users = users.count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    champion = str(champion_version(config).version)
    older = _register_id_model(config, n_users - 7, n_items)  # knows all but the 7 newest users
    set_champion(config, older)
    try:
        result = run_score(spark, config, RUN_DATE)
    finally:
        set_champion(config, champion)
    recs = read_table(spark, config.table_path("recommendations"), RUN_DATE)
    fallback = recs.filter(F.col("reason") == "popular_fallback")
    newest = users.filter(F.col("user_index") >= n_users - 7).select("user_id")
    fallback_users = {r[0] for r in fallback.select("user_id").distinct().collect()}
    assert {r[0] for r in newest.collect()} <= fallback_users
    assert result.fallback_users == len(fallback_users)
    assert fallback.filter(F.col("explanation").isNotNull()).count() == 0
    # the fallback is the most popular items the user has not seen, best first
    popularity = (
        _seen(spark, config)
        .filter("strength > 0")
        .groupBy("item_id")
        .agg(F.countDistinct("user_id").alias("n"))
    )
    ranked = fallback.join(popularity, "item_id", "left").fillna(0, ["n"])
    user = sorted(fallback_users)[0]
    counts = [r["n"] for r in ranked.filter(F.col("user_id") == user).orderBy("rank").collect()]
    assert counts == sorted(counts, reverse=True) and len(counts) == config.score.k


def test_a_failed_validation_leaves_the_published_run(spark: SparkSession, config: Config) -> None:
    run_stages(spark, config, RUN_DATE, ["score"])
    recs_path = config.table_path("recommendations")
    before = _rows(read_table(spark, recs_path, RUN_DATE))
    latest_before = _rows(read_table(spark, config.table_path("recommendations_latest")))
    # no model recommends every item
    strict = _with(config, "score.min_coverage=1.0", "score.min_coverage_items=null")
    with pytest.raises(ValidationError, match=r"coverage .* below score.min_coverage"):
        run_stages(spark, strict, RUN_DATE, ["score"])
    assert _rows(read_table(spark, recs_path, RUN_DATE)) == before
    assert _rows(read_table(spark, config.table_path("recommendations_latest"))) == latest_before
    runs = read_table(spark, config.table_path("pipeline_runs"))
    last = runs.filter(F.col("stage") == "score").orderBy(F.col("started_at").desc()).first()
    assert last is not None and last["status"] == "failed"


def test_rollback_to_an_earlier_run(spark: SparkSession, config: Config) -> None:
    first = run_stages(spark, config, RUN_DATE, ["score"])["score"].run_id
    second = run_stages(spark, config, RUN_DATE, ["score"])["score"].run_id
    latest = config.table_path("recommendations_latest")
    published = published_run(spark, config)
    assert published is not None and published.run_id == second
    # the first run's partition was replaced by the rerun: found by time travel
    now, before = rollback(spark, config, first)
    assert now is not None and before is not None
    assert (now.run_id, before.run_id) == (first, second)
    assert {r[0] for r in read_table(spark, latest).select("run_id").distinct().collect()} == {
        first
    }
    rollback(spark, config, RUN_DATE.isoformat())  # by date: what the table holds for that day
    published = published_run(spark, config)
    assert published is not None and published.run_id == second
    with pytest.raises(ValueError, match="no published recommendations for run '2020-01-01'"):
        rollback(spark, config, "2020-01-01")


def test_rollback_command(config: Config) -> None:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    common = ["--conf", str(CONF_DIR), "--env", "test", "--set", f"paths.root={config.paths.root}"]
    bad = subprocess.run(
        [sys.executable, "-m", "recspark", "rollback", "--to-run", "no-such-run", *common],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "no published recommendations for run 'no-such-run'" in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "recspark", "rollback", "--to-run", RUN_DATE.isoformat(), *common],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert f"of {RUN_DATE}" in good.stdout


def _recs(spark: SparkSession, rows: list[tuple[str, int, str, float]]) -> DataFrame:
    return spark.createDataFrame(rows, "user_id string, rank int, item_id string, score float")


@pytest.mark.parametrize(
    "rows, problem",
    [
        ([("u1", 1, "a", 2.0), ("u2", 1, "b", 1.0), ("u2", 2, "c", 0.5)], None),
        ([("u1", 1, "a", 2.0), ("u2", 1, "b", 1.0)], "1 users do not have their K rows"),
        ([("u1", 1, "a", 2.0), ("u2", 1, "b", 1.0), ("u2", 3, "c", 0.5)], "ranked 1..n"),
        ([("u1", 1, "a", 2.0), ("u2", 1, "b", 1.0), ("u2", 2, "b", 0.5)], "1 duplicate"),
        ([("u1", 1, "s", 2.0), ("u2", 1, "b", 1.0), ("u2", 2, "c", 0.5)], "already seen"),
        ([("u1", 1, "a", float("nan")), ("u2", 1, "b", 1.0), ("u2", 2, "c", 0.5)], "finite"),
        # 2 of 4 items: enough for the floor of 50 % used in the other cases, not for 75 %
        ([("u1", 1, "a", 2.0), ("u2", 1, "a", 1.0), ("u2", 2, "c", 0.5)], "coverage 50.00%"),
        (
            [("u1", 1, "a", 2.0), ("u2", 1, "b", 1.0), ("u2", 2, "c", 0.5), ("u3", 1, "a", 1.0)],
            "1 users do not have",  # a user nobody asked for
        ),
    ],
)
def test_validation_rules(
    spark: SparkSession, rows: list[tuple[str, int, str, float]], problem: str | None
) -> None:
    expect = Expectation(
        users=spark.createDataFrame([("u1", 1), ("u2", 2)], "user_id string, n_expected int"),
        seen=spark.createDataFrame([("u1", "s")], "user_id string, item_id string"),
        n_items=4,
        min_coverage=0.75 if problem and "coverage" in problem else 0.5,
    )
    problems, _ = validate_recommendations(_recs(spark, rows), expect)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_big_catalogs_rank_a_shortlist(spark: SparkSession, config: Config) -> None:
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    champion = str(champion_version(config).version)
    set_champion(config, _register_id_model(config, n_users, n_items))
    try:
        shortlisted = _with(config, "score.exact_max_items=1", "score.max_candidates=40")
        result = run_score(spark, shortlisted, RUN_DATE)  # validated like any run
    finally:
        set_champion(config, champion)
    assert result.ranked == "candidates"
    recs = read_table(spark, config.table_path("recommendations"), RUN_DATE)
    seen = _seen(spark, config)
    positives = (
        read_table(spark, config.table_path("train_interactions"), RUN_DATE)
        .unionByName(read_table(spark, config.table_path("holdout"), RUN_DATE))
        .filter("strength > 0")
    )
    users = read_table(spark, config.table_path("user_ids"))
    items = read_table(spark, config.table_path("item_ids"))
    shortlist = user_shortlists(
        users.select("user_index"), positives, positives, 50, 100, 100, 40
    ).select("user_index", F.explode("shortlist").alias("item_index"))
    allowed = shortlist.join(users, "user_index").join(items, "item_index")
    personalized = recs.filter(F.col("reason") == "personalized").select("user_id", "item_id")
    assert personalized.count() > 0
    assert personalized.join(allowed, ["user_id", "item_id"], "left_anti").count() == 0
    assert recs.join(seen, ["user_id", "item_id"]).count() == 0


def test_users_with_a_short_shortlist_get_fewer_rows_and_the_run_publishes(
    spark: SparkSession, config: Config
) -> None:
    """A user whose shortlist has fewer unseen items than K gets just those; validation expects
    that many rows for it (not K), so the run is still published."""
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    champion = str(champion_version(config).version)
    set_champion(config, _register_id_model(config, n_users, n_items))
    tight = [
        "score.exact_max_items=1",
        "score.candidate_history=1",
        "score.neighbours_per_item=3",
        "score.popular_candidates=4",
    ]
    try:
        result = run_score(spark, _with(config, *tight), RUN_DATE)
    finally:
        set_champion(config, champion)
    assert result.ranked == "candidates"
    k = config.score.k
    recs = read_table(spark, config.table_path("recommendations"), RUN_DATE)
    got = recs.filter(F.col("reason") == "personalized").groupBy("user_id").count()
    seen_pairs = read_table(spark, config.table_path("train_interactions"), RUN_DATE).unionByName(
        read_table(spark, config.table_path("holdout"), RUN_DATE)
    )
    users = read_table(spark, config.table_path("user_ids"))
    sizes = user_shortlists(
        users.select("user_index"), seen_pairs.filter("strength > 0"), seen_pairs, 1, 3, 4, 500
    ).select("user_index", F.size("shortlist").alias("size"))
    compared = got.join(users, "user_id").join(sizes, "user_index", "left").fillna(0, ["size"])
    assert compared.filter(F.col("count") < k).count() > 0  # the case this test is about
    assert compared.filter(F.col("count") != F.least(F.lit(k), F.col("size"))).count() == 0


def test_the_coverage_floor_is_a_share_of_the_catalog_capped_in_items(spark: SparkSession) -> None:
    users = spark.createDataFrame([("u1", 1), ("u2", 1)], "user_id string, n_expected int")
    seen = spark.createDataFrame([], "user_id string, item_id string")
    recs = _recs(spark, [("u1", 1, "a", 1.0), ("u2", 1, "b", 1.0)])  # 2 distinct items

    def problems(n_items: int, cap: int | None) -> list[str]:
        return validate_recommendations(recs, Expectation(users, seen, n_items, 0.01, cap))[0]

    assert problems(200, None) == []  # floor 2 items
    assert "below score.min_coverage" in problems(300, None)[0]  # floor 3
    assert problems(100_000, 2) == []  # 1,000 items capped at 2
    assert "below score.min_coverage" in problems(100_000, 3)[0]
    assert "below score.min_coverage" in problems(0, None)[0]  # no catalog: nothing is covered


def test_recommendations_changed_for_everyone_are_not_published(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}", "catalog.enabled=false"])
    for key in ("recommendations", "recommendations_latest", "model_metrics"):
        shutil.copytree(base_config.table_path(key), config.table_path(key))
    published = read_table(spark, config.table_path("recommendations_latest"))
    day = published.first()["run_date"]
    version = published.first()["model_version"]
    # every user gets items nobody was recommended before
    changed = published.withColumn("item_id", F.concat(F.lit("new-"), "item_id"))
    n_items = published.select("item_id").distinct().count()
    expect = Expectation(
        users=published.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_expected")),
        seen=published.select("user_id", "item_id").limit(0),
        n_items=n_items,
        min_coverage=0.0,
    )
    same = check_before_publish(spark, config, day, published, version, 0.5)
    assert {o.figure.check: o.status for o in same}["churn"] == "ok"
    with pytest.raises(HealthCheckError, match=r"churn\[all\] = 1"):
        stage_validate_publish(spark, config, day, changed, expect, version)
    assert published_run(spark, config) is not None
    after = read_table(spark, config.table_path("recommendations_latest"))
    assert after.exceptAll(published).count() == 0 and published.exceptAll(after).count() == 0
