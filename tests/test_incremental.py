"""Nightly incremental ingest: MERGE on the event key, reruns, late events, backfill."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, load_config
from recspark.io.delta import read_table
from recspark.pipeline import run_backfill, run_generate, run_stages

from .conftest import CONF_DIR

pytestmark = pytest.mark.integration
FIRST = dt.date(2025, 11, 1)
LAST = dt.date(2025, 11, 6)  # 3 days of events, arriving up to 3 days late


NIGHTLY_SETTINGS = [
    "source.path=events/date={run_date}",
    "synthetic.n_days=3",
    "synthetic.n_interactions=3000",
    "synthetic.late_rate=0.2",
    "synthetic.defect_rate=0.05",
    # The last days' landings hold only late events (a few percent of a usual day): monitoring
    # would rightly stop them (tests/test_health.py); these tests are about the MERGE.
    "monitoring.enabled=false",
]


def _config(root: Path) -> Config:
    return load_config(CONF_DIR, "test", [f"paths.root={root}", *NIGHTLY_SETTINGS])


def _dates(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _nightly_landing(spark: SparkSession, config: Config) -> None:
    """Generate, then give each date a folder (an empty one where nothing arrived)."""
    run_generate(spark, config, FIRST)
    for day in _dates(FIRST, LAST):
        folder = Path(config.raw_path) / "events" / f"date={day}"
        if not folder.exists():
            folder.mkdir(parents=True)
            (folder / "empty.txt").write_text("")


@pytest.fixture(scope="module")
def nightly(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = _config(tmp_path_factory.mktemp("nightly"))
    _nightly_landing(spark, config)
    for day in _dates(FIRST, LAST):
        run_stages(spark, config, day, ["ingest"])
    return config


def _interactions(spark: SparkSession, config: Config):
    return read_table(spark, config.table_path("interactions")).drop("source_file")


def test_late_events_are_merged_into_their_own_day(spark: SparkSession, nightly: Config) -> None:
    df = _interactions(spark, nightly)
    late = df.filter(F.col("event_date") < F.col("run_date"))
    assert late.count() > 0
    assert df.filter(F.col("event_date") > F.col("run_date")).count() == 0
    assert df.groupBy("event_id").count().filter("count > 1").count() == 0


def test_rerun_of_a_date_changes_nothing(spark: SparkSession, nightly: Config) -> None:
    before = _interactions(spark, nightly).persist()
    quarantine_before = read_table(spark, nightly.table_path("interactions_quarantine")).count()
    result = run_stages(spark, nightly, dt.date(2025, 11, 3), ["ingest"])["ingest"]
    assert result.inserted == 0 and result.already_present == result.clean > 0
    assert_df_equality(_interactions(spark, nightly), before, ignore_row_order=True)
    assert read_table(spark, nightly.table_path("interactions_quarantine")).count() == (
        quarantine_before
    )


def test_backfill_gives_the_nightly_tables(
    spark: SparkSession, nightly: Config, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    _nightly_landing(spark, config)
    run_backfill(spark, config, FIRST, LAST, ["ingest"])
    assert_df_equality(
        _interactions(spark, config), _interactions(spark, nightly), ignore_row_order=True
    )
    for table in ("interactions_quarantine",):
        assert_df_equality(
            read_table(spark, config.table_path(table)).drop("source_file"),
            read_table(spark, nightly.table_path(table)).drop("source_file"),
            ignore_row_order=True,
        )


def test_pipeline_runs_logs_every_run(spark: SparkSession, nightly: Config) -> None:
    runs = read_table(spark, nightly.table_path("pipeline_runs")).filter("stage = 'ingest'")
    assert runs.filter("status != 'succeeded'").count() == 0
    assert {r[0] for r in runs.select("run_date").distinct().collect()} == set(_dates(FIRST, LAST))
    bad = runs.filter(F.col("rows_in") != F.col("rows_clean") + F.col("rows_quarantined"))
    assert bad.count() == 0
    by_reason = runs.select(
        "rows_quarantined",
        F.aggregate(
            F.map_values("quarantined_by_reason"), F.lit(0).cast("long"), lambda acc, x: acc + x
        ).alias("summed"),
    )
    assert by_reason.filter(F.col("summed") != F.col("rows_quarantined")).count() == 0
    assert runs.filter(F.length("config_hash") != 16).count() == 0


def test_failed_stage_is_logged_and_raised(spark: SparkSession, tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(Exception, match="does not exist"):
        run_stages(spark, config, FIRST, ["ingest"])
    row = read_table(spark, config.table_path("pipeline_runs")).first()
    assert (row["stage"], row["status"]) == ("ingest", "failed")
    assert "does not exist" in row["details"]


def test_featurize_with_random_split_and_popularity_negatives(
    spark: SparkSession, nightly: Config
) -> None:
    config = load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={nightly.paths.root}",
            *NIGHTLY_SETTINGS,
            "features.split=random_by_user",
            "features.negatives=popularity",
        ],
    )
    result = run_stages(spark, config, LAST, ["featurize"])["featurize"]
    train = read_table(spark, config.table_path("train_interactions"), LAST)
    holdout = read_table(spark, config.table_path("holdout"), LAST)
    assert result.holdout_pairs == holdout.count() > 0
    assert holdout.join(train, ["user_index", "item_index"]).count() == 0
    assert holdout.select("user_index").join(train, "user_index", "left_anti").count() == 0
    negatives = read_table(spark, config.table_path("training_set"), LAST).filter("label = 0")
    assert negatives.count() > 0
    assert negatives.join(train, ["user_index", "item_index"]).count() == 0
