"""Raw event sources: any configured file format or Delta table, mapped onto recspark's columns.

Every column is read as text so that nothing is lost before validation; malformed text lines
keep their raw content (a line of up to MAX_FIELDS fields: far past the parser's default limit).
A batch read lists the source's files (through Hadoop's file system, so object stores work too)
and names each one literally: `[`, `{`, `*`, `?` in a file name are not patterns. Files are read
in groups that share a layout and the groups are unioned: text files with `source.header` by
their own header (columns are mapped by name, so a file with its columns in another order or
with extra columns reads right; a file lacking a mapped column stops the read with a
`SourceError` naming the file and the column), Parquet files by their own schema (a column may
be an int in one file and a string in another). Typed timestamps (Parquet or Delta timestamp,
timestamp without time zone taken as UTC, or date taken as midnight UTC) are kept typed in
`EVENT_TS_TYPED` and used as they are, whatever `source.timestamp_format` says. The streaming
ingest reads a landing folder with one layout (`reader_spec`): see `etl/stream.py`.

A new source needs configuration only (`source` in conf/): a format,
the field order for headerless text, a mapping from recspark's column names to the source's,
constants for columns the source lacks, and a timestamp format. The public MovieLens and Amazon
layouts are presets (`source.preset`).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from functools import reduce
from typing import Any

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
# The event time of a source whose time column is typed (a timestamp, or a date): null for text.
EVENT_TS_TYPED = "_event_ts_typed"
# univocity's limit on the fields of one line (Spark's default 20,480 fails the whole read on a
# wider line). Past the schema's width a line is malformed anyway and keeps its text. The parser
# allocates arrays of this many entries for every file it opens (at 1,000,000, 3x the time of a
# day of small files), so a batch read asks for no more than its largest file can hold
# (`fields_limit`).
MAX_FIELDS = 1_000_000
SPARK_MAX_COLUMNS = 20_480  # Spark's default
ISO_8601 = "iso8601"
# ISO 8601 date and time: `T` or a space between, fractional seconds (to the microsecond; more
# digits are truncated), an offset Z, +hh, +hh:mm or +hhmm; none means UTC.
ISO_8601_PATTERN = (
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)(Z|[+-]\d{2}(?::?\d{2})?)?$"
)
# Hadoop's glob characters, escaped with a backslash so that a path is read as named.
GLOB_CHARACTERS = re.compile(r"([\\{}\[\]*?])")
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
    """Text fields as strings + the corrupt-record column: the header of the first data file
    under `path` (by name), or `source.columns`."""
    if source.header:
        files = data_files(spark, path)
        names = header_names(first_line(spark, files[0]), source) if files else []
    else:
        names = list(source.columns)
    if not names:
        raise SourceError(f"{path}: no field names (set source.columns or source.header: true)")
    return _with_corrupt(names)


def header_names(line: str, source: SourceConfig) -> list[str]:
    """The field names of a header line as Spark names them: an empty name is `_c<i>`, a
    repeated one (any case) gets its position appended."""
    delimiter = _delimiter(source)
    if len(delimiter) == 1:
        fields = next(csv.reader([line], delimiter=delimiter, quotechar='"', doublequote=True))
    else:
        fields = line.split(delimiter)
    names: list[str] = []
    for i, field in enumerate(fields):
        name = field or f"_c{i}"
        if name.lower() in {n.lower() for n in names}:
            name = f"{name}{i}"
        names.append(name)
    return names


def first_line(spark: SparkSession, file: str) -> str:
    """The first line of `file` (decompressed as Spark would; a UTF-8 BOM dropped, as Spark's
    line reader drops it), read through Hadoop's file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path(file)
    stream = hadoop_path.getFileSystem(conf).open(hadoop_path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(hadoop_path)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
    try:
        line = reader.readLine()
    finally:
        reader.close()
    return str(line or "").removeprefix("\ufeff")


def path_of_file_uri(spark: SparkSession, uri: str) -> str:
    """The file path (as `data_files` gives it) of a URI as `_metadata.file_path` holds it
    (percent-encoded: `a%20b.csv` for `a b.csv`)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return str(jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri)).toString())


def json_field_names(source: SourceConfig) -> list[str]:
    """The fields read from a JSON object: `source.columns`, else the mapped names of the raw
    columns that are not constants."""
    return list(source.columns) or [
        _source_name(source, c) for c in RAW_COLUMNS if c not in source.constants
    ]


def _json_schema(source: SourceConfig) -> T.StructType:
    return _with_corrupt(json_field_names(source))


def _with_corrupt(names: list[str]) -> T.StructType:
    fields = [T.StructField(name, T.StringType()) for name in names]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def literal_path(path: str) -> str:
    """`path` with Hadoop's glob characters escaped, so that Spark reads the file as named."""
    return GLOB_CHARACTERS.sub(r"\\\1", path)


def _data_files(spark: SparkSession, path: str) -> Iterator[tuple[str, int]]:
    """The files under `path` (a file, or a folder searched recursively) Spark would read, each
    with its size in bytes.

    Names starting with `.` or `_` (`_SUCCESS`, `.crc`, `_delta_log` entries) and empty files
    are not data.
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hadoop_path):
        return
    root = str(fs.makeQualified(hadoop_path).toUri().getPath())
    files = fs.listFiles(hadoop_path, True)
    while files.hasNext():
        status = files.next()
        below = str(status.getPath().toUri().getPath()).removeprefix(root).split("/")
        if status.getLen() > 0 and not any(n.startswith((".", "_")) for n in below if n):
            yield str(status.getPath().toString()), int(status.getLen())


def data_files(spark: SparkSession, path: str) -> list[str]:
    """The data files under `path` (see `has_data_files`), qualified, sorted."""
    return sorted(file for file, _ in _data_files(spark, path))


def fields_limit(spark: SparkSession, listed: list[tuple[str, int]]) -> int:
    """The most fields a line of the `listed` (file, bytes) can have: one more than the bytes of
    the largest file (each field after the first costs a delimiter byte), MAX_FIELDS where a file
    is compressed (its lines may be longer than the file); never below Spark's default."""
    factory = _codecs(spark)
    widest = max(
        (
            MAX_FIELDS if factory.getCodec(_hadoop_path(spark, f)) else size + 1
            for f, size in listed
        ),
        default=0,
    )
    return max(SPARK_MAX_COLUMNS, min(MAX_FIELDS, widest))


def _hadoop_path(spark: SparkSession, file: str) -> Any:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return jvm.org.apache.hadoop.fs.Path(file)


def _codecs(spark: SparkSession) -> Any:
    """Hadoop's compression codecs by file name, as Spark's readers choose them."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)


def has_data_files(spark: SparkSession, path: str) -> bool:
    """Whether `path` (a file, or a folder searched recursively) holds a file Spark would read.

    Through Hadoop's file system, so object stores count too; names starting with `.` or `_`
    (`_SUCCESS`, `.crc`, `_delta_log` entries) are not data.
    """
    return any(True for _ in _data_files(spark, path))


def reader_spec(
    spark: SparkSession, source: SourceConfig, path: str
) -> tuple[str, T.StructType | None, dict[str, str]]:
    """(Spark format, schema, options) to read `source` at `path`, batch or streaming.

    Text and JSON are read PERMISSIVE with a corrupt-record column: a line with too few or too
    many fields, an unclosed quote or broken JSON keeps its text instead of failing the job.
    With `source.header`, the schema is the header of the first data file under `path`.
    """
    fmt, options = _reader_format(source)
    return fmt, _reader_schema(spark, source, path), options


def _reader_format(
    source: SourceConfig, max_fields: int = MAX_FIELDS
) -> tuple[str, dict[str, str]]:
    permissive = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    if source.format in TEXT_FORMATS:
        options = {
            "header": str(source.header).lower(),
            "enforceSchema": "true",
            "maxColumns": str(max_fields),
            # Parse every field: with pruning, a short line in a file with unmapped columns
            # would not count as malformed.
            "columnPruning": "false",
            **rfc4180_options(source),
            **permissive,
        }
        return "csv", options
    if source.format == "json":
        return "json", permissive
    if source.format in ("parquet", "delta"):
        return source.format, {}
    if source.format == SEQUENCE_LINES:
        return "text", {}
    raise SourceError(f"source.format: unsupported {source.format!r}")


def _reader_schema(spark: SparkSession, source: SourceConfig, path: str) -> T.StructType | None:
    if source.format in TEXT_FORMATS:
        return _text_schema(spark, source, path)
    if source.format == "json":
        return _json_schema(source)
    if source.format == SEQUENCE_LINES:
        # One line per user: read whole lines, expanded into events by `map_to_raw_columns`.
        return T.StructType([T.StructField(LINE, T.StringType())])
    return None  # Parquet and Delta carry their own


def read_source_frame(spark: SparkSession, source: SourceConfig, path: str) -> DataFrame:
    """The source as Spark reads it (source column names), before mapping; `path` is literal."""
    fmt, schema, options = reader_spec(spark, source, path)
    reader = spark.read.format(fmt).options(**options)
    if schema is not None:
        reader = reader.schema(schema)
    return reader.load(path if fmt == "delta" else literal_path(path))


def _read_files(
    spark: SparkSession,
    source: SourceConfig,
    files: list[str] | str,
    schema: T.StructType | None,
    max_fields: int,
) -> DataFrame:
    """`files` (a list of files of one layout, or a file or folder holding only such files),
    named literally, read with `schema` (None: the format's)."""
    # One location is listed by Spark itself; a list of paths costs a listing job past 32 paths.
    named = [files] if isinstance(files, str) else files
    fmt, options = _reader_format(source, max_fields)
    reader = spark.read.format(fmt).options(**options)
    schema = schema or _reader_schema(spark, source, named[0])
    if schema is not None:
        reader = reader.schema(schema)
    paths = [literal_path(f) for f in named]
    return reader.load(paths[0] if isinstance(files, str) else paths)


def file_groups(
    spark: SparkSession, source: SourceConfig, files: list[str]
) -> list[tuple[T.StructType | None, list[str]]]:
    """`files` in groups that share a layout, each with its schema (None: the format's).

    Text files with a header are grouped by their header, Parquet files by their schema; other
    formats are one group.
    """
    if source.format in TEXT_FORMATS and source.header:
        layouts = [_with_corrupt(header_names(first_line(spark, f), source)) for f in files]
    elif source.format == "parquet":
        layouts = [spark.read.parquet(literal_path(f)).schema for f in files]
    else:
        return [(None, files)]
    groups: dict[str, tuple[T.StructType | None, list[str]]] = {}
    for file, layout in zip(files, layouts, strict=True):
        groups.setdefault(layout.json(), (layout, []))[1].append(file)
    return list(groups.values())


def map_to_raw_columns(
    frame_df: DataFrame, source: SourceConfig, path: str, run_date: dt.date | None = None
) -> DataFrame:
    """Map a source frame onto RAW_COLUMNS (as text) + raw_record + source_file, and the typed
    event time (EVENT_TS_TYPED) where the source's time column is a timestamp or a date.

    A `sequence_lines` frame (one line per user) becomes one row per item first.

    Raises:
        SourceError: a mapped column is missing from the source (names the column and the path).
    """
    if source.format == SEQUENCE_LINES:
        frame_df = expand_sequence_lines(frame_df, source)
    selected = [_mapped_column(frame_df, source, column, path, run_date) for column in RAW_COLUMNS]
    raw_record = F.col(CORRUPT) if CORRUPT in frame_df.columns else F.lit(None).cast("string")
    if SOURCE_FILE in frame_df.columns:
        source_file = F.col(SOURCE_FILE)
    elif source.format == "delta":
        source_file = F.lit(path)
    else:
        source_file = F.col("_metadata.file_path")
    return frame_df.select(
        *selected,
        raw_record.alias(RAW_RECORD),
        source_file.alias(SOURCE_FILE),
        _typed_event_ts(frame_df, source).alias(EVENT_TS_TYPED),
    )


def _mapped_column(
    frame_df: DataFrame, source: SourceConfig, column: str, path: str, run_date: dt.date | None
) -> Column:
    """RAW column `column` as text: a constant, the mapped source column, or null for a value."""
    if column in source.constants:
        constant = source.constants[column]
        if constant == RUN_DATE_CONSTANT:
            if run_date is None:
                raise SourceError(
                    f"source.constants.{column}: {RUN_DATE_CONSTANT} needs a run date"
                )
            constant = f"{run_date.isoformat()} 00:00:00"
        return F.lit(constant).alias(column)
    name = _source_name(source, column)
    if name not in frame_df.columns:
        if column == VALUE:
            return F.lit(None).cast("string").alias(column)
        raise SourceError(
            f"{path}: source has no column {name!r} for {column} (columns: "
            f"{[c for c in frame_df.columns if c != CORRUPT]}); set source.mapping.{column} "
            f"or source.constants.{column}"
        )
    return F.col(f"`{name}`").cast("string").alias(column)


def _typed_event_ts(frame_df: DataFrame, source: SourceConfig) -> Column:
    """The source's event time where it is typed: a timestamp as it is, a timestamp without
    time zone as UTC, a date as midnight UTC (whatever the session time zone); else null."""
    name = _source_name(source, EVENT_TS)
    fields = {f.name: f.dataType for f in frame_df.schema.fields}
    data_type = None if EVENT_TS in source.constants else fields.get(name)
    col = F.col(f"`{name}`")
    if isinstance(data_type, T.TimestampType):
        return col
    if isinstance(data_type, T.TimestampNTZType | T.DateType):
        return F.concat(col.cast("timestamp_ntz").cast("string"), F.lit("Z")).try_cast("timestamp")
    return F.lit(None).cast("timestamp")


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
    """Read raw events: RAW_COLUMNS as text, the raw line of malformed rows, the source file,
    the typed event time of typed sources.

    Text formats are read PERMISSIVE with a corrupt-record column, so a line with too few or too
    many fields, or an unclosed quote, comes through with its text in `raw_record` instead of
    failing the job or vanishing. Files are named literally and read in groups of one layout
    (see the module docstring): each text file by its own header, each Parquet file by its own
    schema, every column cast to text; validation parses everything the same way.

    Raises:
        SourceError: `path` holds no data files, or a file lacks a mapped column (both named).
    """
    source = resolve_source(source)
    if source.format == "delta":
        return map_to_raw_columns(read_source_frame(spark, source, path), source, path, run_date)
    listed = sorted(_data_files(spark, path))
    groups = file_groups(spark, source, [file for file, _ in listed])
    if not groups or not groups[0][1]:
        raise SourceError(f"{path}: no data files")
    max_fields = fields_limit(spark, listed) if source.format in TEXT_FORMATS else MAX_FIELDS
    if len(groups) == 1:  # one layout: read the location as it is named
        schema, files = groups[0]
        frame_df = _read_files(spark, source, path, schema, max_fields)
        return map_to_raw_columns(frame_df, source, _files_named(files), run_date)
    frames = [
        map_to_raw_columns(
            _read_files(spark, source, files, schema, max_fields),
            source,
            _files_named(files),
            run_date,
        )
        for schema, files in groups
    ]
    return reduce(DataFrame.union, frames)


def _files_named(files: list[str]) -> str:
    more = len(files) - 1
    return files[0] + (f" (and {more} more file(s) of its layout)" if more else "")


def parse_timestamp(col: Column, timestamp_format: str) -> Column:
    """Text -> timestamp: a Spark datetime pattern, epoch_seconds / epoch_millis, or iso8601;
    null if bad."""
    text = F.trim(col)
    # Out-of-range epochs would overflow (an error under ANSI mode): null them first.
    if timestamp_format == "epoch_seconds":
        seconds = text.try_cast("double")
        return F.when(F.abs(seconds) < 1e11, F.timestamp_seconds(seconds))
    if timestamp_format == "epoch_millis":
        millis = text.try_cast("long")
        return F.when(F.abs(millis) < 1e14, F.timestamp_millis(millis))
    if timestamp_format == ISO_8601:
        return parse_iso8601(text)
    return F.try_to_timestamp(text, F.lit(timestamp_format))


def parse_iso8601(text: Column) -> Column:
    """ISO 8601 text (ISO_8601_PATTERN) -> timestamp; null for anything else.

    Spark's string-to-timestamp cast reads every offset form, but also dates alone, region ids
    and, without an offset, the session time zone: so the text must match the pattern first,
    and a missing offset becomes `Z` (UTC, whatever the session time zone).
    """
    zone = F.regexp_extract(text, ISO_8601_PATTERN, 3)
    normalised = F.concat(
        F.regexp_extract(text, ISO_8601_PATTERN, 1),
        F.lit("T"),
        F.regexp_extract(text, ISO_8601_PATTERN, 2),
        F.when(zone == "", F.lit("Z")).otherwise(zone),
    )
    return F.when(text.rlike(ISO_8601_PATTERN), normalised.try_cast("timestamp"))


def read_item_catalog(spark: SparkSession, path: str) -> DataFrame:
    """The item catalog (CSV with a header and an `item_id` column)."""
    df = spark.read.option("header", True).csv(literal_path(path))
    if ITEM_ID not in df.columns:
        raise SourceError(f"{path}: item catalog needs an item_id column; has {df.columns}")
    return df


def item_catalog(spark: SparkSession, config: Config) -> DataFrame | None:
    """The configured item catalog (`source.item_catalog` under paths.raw), or None when unset."""
    if not config.source.item_catalog:
        return None
    return read_item_catalog(spark, config.raw_file(config.source.item_catalog))
