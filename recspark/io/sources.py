"""Raw event sources: every column read as text so that nothing is lost before validation."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import SourceConfig
from recspark.schemas import RAW_COLUMNS, RAW_RECORD, SOURCE_FILE

CORRUPT = "_corrupt_record"


class SourceError(ValueError):
    """A raw source cannot be read as configured."""


def read_raw_events(spark: SparkSession, source: SourceConfig, path: str) -> DataFrame:
    """Read raw events: the RAW_COLUMNS as strings, the raw line of malformed rows, the file.

    CSV is read PERMISSIVE with a corrupt-record column, so a line with too few or too many
    fields, or an unclosed quote, comes through with its text in `raw_record` instead of failing
    the job or vanishing. Parquet columns are cast to strings; validation parses them.
    """
    if source.format == "csv":
        fields = [T.StructField(c, T.StringType()) for c in source.columns]
        schema = T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])
        df = (
            spark.read.schema(schema)
            .option("header", source.header)
            .option("sep", source.delimiter)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .csv(path)
        )
        raw_record = F.col(CORRUPT)
    elif source.format == "parquet":
        df = spark.read.parquet(path)
        missing = [c for c in RAW_COLUMNS if c not in df.columns]
        if missing:
            raise SourceError(f"{path}: parquet source lacks columns {missing}; has {df.columns}")
        raw_record = F.lit(None).cast("string")
    else:
        raise SourceError(f"source.format: unsupported {source.format!r}")
    return df.select(
        *[F.col(c).cast("string").alias(c) for c in RAW_COLUMNS],
        raw_record.alias(RAW_RECORD),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )


def read_item_catalog(spark: SparkSession, path: str) -> DataFrame:
    """The item catalog (CSV with a header and an `item_id` column)."""
    df = spark.read.option("header", True).csv(path)
    if "item_id" not in df.columns:
        raise SourceError(f"{path}: item catalog needs an item_id column; has {df.columns}")
    return df
