"""The ingest stage on a Parquet source and on a missing source."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.config import load_config
from recspark.etl.ingest import run_ingest
from recspark.io.delta import read_table
from recspark.io.sources import SourceError
from recspark.pipeline import run_generate

from .conftest import CONF_DIR

RUN_DATE = dt.date(2026, 2, 1)


def test_parquet_source_every_row_accounted(spark: SparkSession, tmp_path: Path) -> None:
    config = load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={tmp_path}",
            "synthetic.format=parquet",
            "source.format=parquet",
            "synthetic.n_interactions=4000",
        ],
    )
    run_generate(spark, config, RUN_DATE)
    result = run_ingest(spark, config, RUN_DATE)
    raw_rows = spark.read.parquet(f"{config.raw_path}/{config.source.path}").count()
    clean = read_table(spark, config.table_path("interactions"), RUN_DATE).count()
    quarantined = read_table(spark, config.table_path("interactions_quarantine"), RUN_DATE)
    assert result.rows_in == raw_rows == clean + quarantined.count()
    # Parquet has no malformed lines, but every other planted defect is caught
    assert "malformed_record" not in result.by_reason
    assert {"duplicate", "null_key", "unknown_item"} <= set(result.by_reason)


def test_missing_source_names_the_path(spark: SparkSession, tmp_path: Path) -> None:
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    with pytest.raises(SourceError, match=f"{tmp_path}/data/raw/events does not exist"):
        run_ingest(spark, config, RUN_DATE)
