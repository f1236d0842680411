"""Raw event sources: any configured file format or Delta table, mapped onto recspark's columns.

Every column is read as text so that nothing is lost before validation; malformed text lines
keep their raw content. A new source needs configuration only (`source` in conf/): a format,
the field order for headerless text, a mapping from recspark's column names to the source's,
constants for columns the source lacks, and a timestamp format. The public MovieLens and Amazon
layouts are presets (`source.preset`).
"""

from __future__ import annotations

import datetime as dt
import re

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Config, SourceConfig
from recspark.schemas import (
    EVENT_TS,
    EVENT_TYPE,
    ITEM_ID,
    RAW_COLUMNS,
    RAW_RECORD,
    SOURCE_FILE,
    USER_ID,
    VALUE,
)
from recspark.vocab import SourcePreset

CORRUPT = "_corrupt_record"
LINE = "value"  # the column of Spark's text source
TEXT_FORMATS = ("csv", "tsv", "text")
RUN_DATE_CONSTANT = "@run_date"
EPOCH_FORMATS = ("epoch_seconds", "epoch_millis")

# Public dataset layouts. Each overrides the listed SourceConfig fields.
PRESETS: dict[SourcePreset, dict[str, object]] = {
    # MovieLens 100k `u.data`: user id | item id | rating | timestamp, tab-separated, no header.
    "movielens_udata": {
        "format": "tsv",
        "header": False,
        "delimiter": "\t",
        "columns": [USER_ID, ITEM_ID, VALUE, EVENT_TS],
        "mapping": {},
        "constants": {EVENT_TYPE: "rating"},
        "timestamp_format": "epoch_seconds",
    },
    # MovieLens 1M/10M `ratings.dat`: UserID::MovieID::Rating::Timestamp.
    "movielens_dat": {
        "format": "text",
        "header": False,
        "delimiter": "::",
        "columns": [USER_ID, ITEM_ID, VALUE, EVENT_TS],
        "mapping": {},
        "constants": {EVENT_TYPE: "rating"},
        "timestamp_format": "epoch_seconds",
    },
    # MovieLens latest / 20M / 25M `ratings.csv`: userId,movieId,rating,timestamp with a header.
    "movielens_csv": {
        "format": "csv",
        "header": True,
        "delimiter": ",",
        "columns": [],
        "mapping": {USER_ID: "userId", ITEM_ID: "movieId", VALUE: "rating", EVENT_TS: "timestamp"},
        "constants": {EVENT_TYPE: "rating"},
        "timestamp_format": "epoch_seconds",
    },
    # Amazon Review Data 2018 ratings-only CSV: item,user,rating,unix time; no header.
    "amazon_ratings": {
        "format": "csv",
        "header": False,
        "delimiter": ",",
        "columns": [ITEM_ID, USER_ID, VALUE, EVENT_TS],
        "mapping": {},
        "constants": {EVENT_TYPE: "rating"},
        "timestamp_format": "epoch_seconds",
    },
    # HetRec 2011 Last.fm `user_artists.dat`: userID<TAB>artistID<TAB>weight (play count), header,
    # no timestamps: events are stamped with the run date.
    "lastfm_user_artists": {
        "format": "tsv",
        "header": True,
        "delimiter": "\t",
        "columns": [],
        "mapping": {USER_ID: "userID", ITEM_ID: "artistID", VALUE: "weight"},
        "constants": {EVENT_TYPE: "play", EVENT_TS: RUN_DATE_CONSTANT},
        "timestamp_format": "yyyy-MM-dd HH:mm:ss",
    },
    # S3Rec (CIKM 2020) sequence files, e.g. Beauty.txt: one line per user, `user item item ...`,
    # space-separated, items oldest first, no timestamps. Each item becomes one `purchase` event
    # (value null) stamped SEQUENCE_BASE_TS + position x SEQUENCE_SPACING_S (2000-01-01 00:00:00
    # UTC, one hour apart), which keeps each user's order, passes ingest.min_timestamp (1995),
    # is before any run date, and triggers neither near_duplicate_window_s (seconds) nor
    # max_events_per_user_day (at most 24 a day). Times are not comparable between users.
    "s3rec_sequences": {
        "format": "sequence_lines",
        "header": False,
        "delimiter": " ",
        "columns": [],
        "mapping": {},
        "constants": {EVENT_TYPE: "purchase"},
        "timestamp_format": "epoch_seconds",
    },
}
SEQUENCE_BASE_TS = 946_684_800  # 2000-01-01 00:00:00 UTC, epoch seconds
SEQUENCE_SPACING_S = 3600
SEQUENCE_LINES = "sequence_lines"


class SourceError(ValueError):
    """A raw source cannot be read as configured."""


def resolve_source(source: SourceConfig) -> SourceConfig:
    """Apply `source.preset` (if any) on top of the configured fields (validated again)."""
    if not source.preset:
        return source
    return SourceConfig.model_validate({**source.model_dump(), **PRESETS[source.preset]})


def _source_name(source: SourceConfig, column: str) -> str:
    return {str(k): v for k, v in source.mapping.items()}.get(column, column)


def _delimiter(source: SourceConfig) -> str:
    return "\t" if source.format == "tsv" and source.delimiter == "," else source.delimiter


def rfc4180_options(source: SourceConfig) -> dict[str, str]:
    """Spark CSV options for RFC 4180 fields: quoted, a doubled quote inside is one quote.

    Spark's default escape is a backslash, which would keep `""` in a value (and its quotes).
    The reader keeps the spaces around fields (ingest trims those of ids and event types).
    """
    return {
        "sep": _delimiter(source),
        "quote": '"',
        "escape": '"',
        "multiLine": str(source.multiline).lower(),
        "ignoreLeadingWhiteSpace": "false",
        "ignoreTrailingWhiteSpace": "false",
    }


def _text_schema(spark: SparkSession, source: SourceConfig, path: str) -> T.StructType:
    if source.header:
        # Field names come from the header: read it once (the first file's first line).
        header = spark.read.options(**rfc4180_options(source)).option("header", True).csv(path)
        names = header.columns
    else:
        names = list(source.columns)
    if not names:
        raise SourceError(f"{path}: no field names (set source.columns or source.header: true)")
    return _with_corrupt(names)


def _json_schema(source: SourceConfig) -> T.StructType:
    names = list(source.columns) or [
        _source_name(source, c) for c in RAW_COLUMNS if c not in source.constants
    ]
    return _with_corrupt(names)


def _with_corrupt(names: list[str]) -> T.StructType:
    fields = [T.StructField(name, T.StringType()) for name in names]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def has_data_files(spark: SparkSession, path: str) -> bool:
    """Whether `path` (a file, or a folder searched recursively) holds a file Spark would read.

    Through Hadoop's file system, so object stores count too; names starting with `.` or `_`
    (`_SUCCESS`, `.crc`, `_delta_log` entries) are not data.
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hadoop_path):
        return False
    root = str(fs.makeQualified(hadoop_path).toUri().getPath())
    files = fs.listFiles(hadoop_path, True)
    while files.hasNext():
        status = files.next()
        below = str(status.getPath().toUri().getPath()).removeprefix(root).split("/")
        if status.getLen() > 0 and not any(n.startswith((".", "_")) for n in below if n):
            return True
    return False


def reader_spec(
    spark: SparkSession, source: SourceConfig, path: str
) -> tuple[str, T.StructType | None, dict[str, str]]:
    """(Spark format, schema, options) to read `source` at `path`, batch or streaming.

    Text and JSON are read PERMISSIVE with a corrupt-record column: a line with too few or too
    many fields, an unclosed quote or broken JSON keeps its text instead of failing the job.
    """
    permissive = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    if source.format in TEXT_FORMATS:
        options = {
            "header": str(source.header).lower(),
            "enforceSchema": "true",
            **rfc4180_options(source),
            **permissive,
        }
        return "csv", _text_schema(spark, source, path), options
    if source.format == "json":
        return "json", _json_schema(source), permissive
    if source.format in ("parquet", "delta"):
        return source.format, None, {}
    if source.format == SEQUENCE_LINES:
        # One line per user: read whole lines, expanded into events by `map_to_raw_columns`.
        return "text", T.StructType([T.StructField(LINE, T.StringType())]), {}
    raise SourceError(f"source.format: unsupported {source.format!r}")


def read_source_frame(spark: SparkSession, source: SourceConfig, path: str) -> DataFrame:
    """The source as Spark reads it (source column names), before mapping."""
    fmt, schema, options = reader_spec(spark, source, path)
    reader = spark.read.format(fmt).options(**options)
    if schema is not None:
        reader = reader.schema(schema)
    return reader.load(path)


def map_to_raw_columns(
    frame_df: DataFrame, source: SourceConfig, path: str, run_date: dt.date | None = None
) -> DataFrame:
    """Map a source frame onto RAW_COLUMNS (as text) + raw_record + source_file.

    A `sequence_lines` frame (one line per user) becomes one row per item first.

    Raises:
        SourceError: a mapped column is missing from the source (names the column and the path).
    """
    if source.format == SEQUENCE_LINES:
        frame_df = expand_sequence_lines(frame_df, source)
    selected: list[Column] = []
    for column in RAW_COLUMNS:
        if column in source.constants:
            constant = source.constants[column]
            if constant == RUN_DATE_CONSTANT:
                if run_date is None:
                    raise SourceError(
                        f"source.constants.{column}: {RUN_DATE_CONSTANT} needs a run date"
                    )
                constant = f"{run_date.isoformat()} 00:00:00"
            selected.append(F.lit(constant).alias(column))
            continue
        name = _source_name(source, column)
        if name not in frame_df.columns:
            if column == VALUE:
                selected.append(F.lit(None).cast("string").alias(column))
                continue
            raise SourceError(
                f"{path}: source has no column {name!r} for {column} (columns: "
                f"{[c for c in frame_df.columns if c != CORRUPT]}); set source.mapping.{column} "
                f"or source.constants.{column}"
            )
        selected.append(F.col(f"`{name}`").cast("string").alias(column))
    raw_record = F.col(CORRUPT) if CORRUPT in frame_df.columns else F.lit(None).cast("string")
    if SOURCE_FILE in frame_df.columns:
        source_file = F.col(SOURCE_FILE)
    elif source.format == "delta":
        source_file = F.lit(path)
    else:
        source_file = F.col("_metadata.file_path")
    return frame_df.select(*selected, raw_record.alias(RAW_RECORD), source_file.alias(SOURCE_FILE))


def expand_sequence_lines(lines_df: DataFrame, source: SourceConfig) -> DataFrame:
    """`user item item ...` lines -> one row per item: user_id, item_id, event_ts, the file.

    The n-th item (from 0) of a line is stamped SEQUENCE_BASE_TS + n x SEQUENCE_SPACING_S (epoch
    seconds), so a user's order survives. A line without a user and at least one item (an empty
    or blank line, a user id alone) gives one row with its text in the corrupt-record column,
    which cleaning quarantines as `malformed_record`, instead of no row at all.
    """
    blank = source.delimiter.strip() == ""
    separator = r"\s+" if blank else re.escape(source.delimiter)
    text = F.regexp_replace(F.col(LINE), r"^\s+|\s+$", "") if blank else F.col(LINE)
    tokens = F.split(text, separator)
    items = F.slice(tokens, 2, F.greatest(F.size(tokens) - 1, F.lit(1)))
    is_bad = (F.size(tokens) < 2) | F.exists(tokens, lambda t: F.trim(t) == "")
    with_items = lines_df.select(
        F.col(LINE),
        F.element_at(tokens, 1).alias(USER_ID),
        F.when(~is_bad, items).alias("_items"),
        is_bad.alias("_is_bad"),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )
    # posexplode_outer: a bad line (null items) still gives one row.
    exploded = with_items.select("*", F.posexplode_outer("_items").alias("_pos", ITEM_ID))
    ts = F.lit(SEQUENCE_BASE_TS) + F.col("_pos").cast("long") * SEQUENCE_SPACING_S
    return exploded.select(
        F.when(F.trim(F.col(USER_ID)) != "", F.col(USER_ID)).alias(USER_ID),
        F.col(ITEM_ID),
        F.when(~F.col("_is_bad"), ts.cast("string")).alias(EVENT_TS),
        F.when(F.col("_is_bad"), F.col(LINE)).alias(CORRUPT),
        F.col(SOURCE_FILE),
    )


def read_raw_events(
    spark: SparkSession, source: SourceConfig, path: str, run_date: dt.date | None = None
) -> DataFrame:
    """Read raw events: RAW_COLUMNS as text, the raw line of malformed rows, the source file.

    Text formats are read PERMISSIVE with a corrupt-record column, so a line with too few or too
    many fields, or an unclosed quote, comes through with its text in `raw_record` instead of
    failing the job or vanishing. Typed sources (Parquet, Delta) are cast to text; validation
    parses everything the same way.
    """
    source = resolve_source(source)
    return map_to_raw_columns(read_source_frame(spark, source, path), source, path, run_date)


def parse_timestamp(col: Column, timestamp_format: str) -> Column:
    """Text -> timestamp: a Spark datetime pattern, or epoch_seconds / epoch_millis; null if bad."""
    text = F.trim(col)
    # Out-of-range epochs would overflow (an error under ANSI mode): null them first.
    if timestamp_format == "epoch_seconds":
        seconds = text.try_cast("double")
        return F.when(F.abs(seconds) < 1e11, F.timestamp_seconds(seconds))
    if timestamp_format == "epoch_millis":
        millis = text.try_cast("long")
        return F.when(F.abs(millis) < 1e14, F.timestamp_millis(millis))
    return F.try_to_timestamp(text, F.lit(timestamp_format))


def read_item_catalog(spark: SparkSession, path: str) -> DataFrame:
    """The item catalog (CSV with a header and an `item_id` column)."""
    df = spark.read.option("header", True).csv(path)
    if ITEM_ID not in df.columns:
        raise SourceError(f"{path}: item catalog needs an item_id column; has {df.columns}")
    return df


def item_catalog(spark: SparkSession, config: Config) -> DataFrame | None:
    """The configured item catalog (`source.item_catalog` under paths.raw), or None when unset."""
    if not config.source.item_catalog:
        return None
    return read_item_catalog(spark, config.raw_file(config.source.item_catalog))
