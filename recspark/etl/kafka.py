"""Kafka as the streaming ingest's source (`stream.source: kafka`): a topic's messages as raw
events, cleaned by the same batch logic as files (`etl/stream.py`).

Each message value is one event, in the format the `source` settings describe:

- `json`: one JSON object whose fields are named as in a JSON file (`source.columns`, else the
  `source.mapping` names). Numbers and booleans are read as their text.
- `csv`, `tsv`, `text`: one delimited line, RFC 4180 quoting, fields in the order of
  `source.columns`. `source.header` is ignored: a message has no header line.

A message that does not parse is quarantined as `malformed_record`, its value (as UTF-8 text;
an empty text for a null value) in `raw_record`: JSON that is not one object (broken JSON, an
array, a number, two objects, text after the object), a field holding an object or a list, raw
control characters inside a JSON string (JSON forbids them; escaped ones reach the id checks
like any other), a delimited line with too few or too many fields or an unclosed quote, a line
break inside a delimited line (one at its end is dropped; allowed with `source.multiline`), an
empty or null value (a tombstone).

Every row keeps where it came from: `source_file` is `kafka://<topic>/<partition>/<offset>`,
in `interactions` and in `interactions_quarantine` alike.

Offsets live in the Structured Streaming checkpoint (`stream.kafka.checkpoint`), so each run
reads what arrived since the last one. Before a run, the topic is described with the query's own
consumer settings, bounded by `stream.kafka.start_timeout_s`: an unknown topic, brokers that do
not answer or a refused login stop the run with one `SourceError` line instead of a query that
waits on them. Once a query runs, a broker that
goes away is waited for: its consumers reconnect by themselves, and the query goes on from its
offsets when the broker is back (tests/test_kafka.py restarts the broker between runs; a
long-running query with a processing-time trigger was seen to wait through a 75 s outage). An
outage longer than the connector's own timeouts fails the query; the next run resumes from the
checkpoint, and nothing is lost or ingested twice (etl/stream.py). Messages the topic's retention
deleted before they were read fail the run (the connector's `failOnDataLoss`) instead of being
skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, KafkaConfig, SourceConfig
from recspark.credentials import redact
from recspark.io.sources import (
    CORRUPT,
    TEXT_FORMATS,
    SourceError,
    json_field_names,
    map_to_raw_columns,
    resolve_source,
    rfc4180_options,
)
from recspark.schemas import SOURCE_FILE

log = logging.getLogger(__name__)

PAYLOAD = "_payload"  # a message's value as text
PAYLOAD_FORMATS = ("json", *TEXT_FORMATS)
_SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def kafka_uri(topic: str) -> str:
    return f"kafka://{topic}"


def kafka_options(kafka: KafkaConfig) -> dict[str, str]:
    """The options of Spark's Kafka source for `stream.kafka` (they may hold secrets: never log
    them)."""
    assert kafka.topic is not None  # StreamConfig requires it with source kafka
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap_servers,
        "subscribe": kafka.topic,
        "startingOffsets": kafka.starting_offsets,
        "kafka.fetch.max.wait.ms": str(kafka.fetch_max_wait_ms),
        **{f"kafka.{key}": value for key, value in kafka.options.items()},
    }
    if kafka.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(kafka.max_offsets_per_trigger)
    return options


def check_topic(spark: SparkSession, kafka: KafkaConfig) -> int:
    """Describe the topic with the query's consumer settings (Kafka's Java admin client, on the
    driver), waiting at most `start_timeout_s`.

    Returns:
        The topic's number of partitions.

    Raises:
        SourceError: the topic does not exist, the brokers do not answer in time, or they refuse
            the connection (one line, secrets redacted).
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None and kafka.topic is not None
    timeout_ms = str(kafka.start_timeout_s * 1000)
    props = jvm.java.util.Properties()
    settings = {
        **kafka.options,
        "bootstrap.servers": kafka.bootstrap_servers,
        "request.timeout.ms": timeout_ms,
        "default.api.timeout.ms": timeout_ms,
    }
    for key, value in settings.items():
        props.setProperty(key, value)
    admin = None
    try:
        admin = jvm.org.apache.kafka.clients.admin.AdminClient.create(props)
        topics = jvm.java.util.Collections.singletonList(kafka.topic)
        described = (
            admin.describeTopics(topics)
            .allTopicNames()
            .get(kafka.start_timeout_s, jvm.java.util.concurrent.TimeUnit.SECONDS)
        )
        return int(described.get(kafka.topic).partitions().size())
    except Py4JJavaError as error:
        raise SourceError(redact(_topic_problem(error, kafka))) from None
    finally:
        if admin is not None:
            admin.close(jvm.java.time.Duration.ofSeconds(5))


def _topic_problem(error: Py4JJavaError, kafka: KafkaConfig) -> str:
    """One line saying why the topic could not be described, from the Java exception chain."""
    names: list[str] = []
    cause = error.java_exception
    while cause is not None and len(names) < 8:
        names.append(f"{cause.getClass().getSimpleName()}: {cause.getMessage()}")
        cause = cause.getCause()
    where = f"stream.kafka: topic {kafka.topic!r} on {kafka.bootstrap_servers}"
    if any(n.startswith("UnknownTopicOrPartitionException") for n in names):
        return f"{where} does not exist (create it, or fix stream.kafka.topic)"
    if any(n.startswith("TimeoutException") for n in names):
        return (
            f"{where}: no broker answered within {kafka.start_timeout_s} s (is it up and "
            "reachable from here? do stream.kafka.options hold the right security settings?)"
        )
    return f"{where} cannot be read: {names[-1] if names else error}"


def payload_source(source: SourceConfig) -> SourceConfig:
    """The `source` settings, preset applied, checked as a format for message values.

    Raises:
        SourceError: a format whose events cannot be one message each (parquet, delta,
            sequence_lines), or delimited text without `source.columns`.
    """
    source = resolve_source(source)
    if source.format not in PAYLOAD_FORMATS:
        raise SourceError(
            f"source.format {source.format!r}: stream.source kafka reads each message value as "
            f"one event in one of {list(PAYLOAD_FORMATS)}"
        )
    if source.format in TEXT_FORMATS and not source.columns:
        raise SourceError(
            "source.columns: stream.source kafka reads delimited messages by position (a "
            "message has no header): list the fields in order"
        )
    return source


def with_payload(messages_df: DataFrame) -> DataFrame:
    """Kafka's rows -> the value as text and the message's place as `source_file`."""
    place = F.concat(
        F.lit("kafka://"),
        F.col("topic"),
        F.lit("/"),
        F.col("partition").cast("string"),
        F.lit("/"),
        F.col("offset").cast("string"),
    )
    return messages_df.select(
        F.col("value").cast("string").alias(PAYLOAD), place.alias(SOURCE_FILE)
    )


def _json_path(name: str) -> str:
    if _SIMPLE_NAME.fullmatch(name):
        return f"$.{name}"
    if "'" in name:
        raise SourceError(f"source field {name!r}: a JSON field name with ' cannot be read")
    return f"$['{name}']"


def _is_container(variant: Column) -> Column:
    return F.coalesce(F.schema_of_variant(variant).rlike("^(OBJECT|ARRAY)"), F.lit(False))


def parse_json_payloads(payload_df: DataFrame, source: SourceConfig) -> DataFrame:
    """One JSON object per value -> its fields as text, the value in CORRUPT when it does not
    parse (see the module docstring)."""
    names = json_field_names(source)
    # Wrapped in a list so that two objects in one value (`{..} {..}`) fail to parse instead of
    # the second being dropped; `}` last rules out text after the object.
    parsed_df = payload_df.select(
        "*", F.try_parse_json(F.concat(F.lit("["), F.col(PAYLOAD), F.lit("]"))).alias("_list")
    ).select(
        "*",
        F.try_variant_get(F.col("_list"), "$[0]", "variant").alias("_object"),
        F.try_variant_get(F.col("_list"), "$[1]", "variant").isNotNull().alias("_more"),
    )
    fields = {n: F.try_variant_get(F.col("_object"), _json_path(n), "variant") for n in names}
    is_bad = (
        F.coalesce(~F.schema_of_variant(F.col("_object")).startswith("OBJECT"), F.lit(True))
        | F.col("_more")
        | ~F.coalesce(F.col(PAYLOAD).rlike(r"\}\s*$"), F.lit(False))
    )
    for field in fields.values():
        is_bad = is_bad | _is_container(field)
    return parsed_df.select(
        *[F.when(~is_bad, field.cast("string")).alias(n) for n, field in fields.items()],
        F.when(is_bad, F.coalesce(F.col(PAYLOAD), F.lit(""))).alias(CORRUPT),
        F.col(SOURCE_FILE),
    )


def parse_delimited_payloads(payload_df: DataFrame, source: SourceConfig) -> DataFrame:
    """One delimited line per value -> its fields (`source.columns`) as text, the value in
    CORRUPT when it does not parse (see the module docstring)."""
    names = list(source.columns)
    ddl = ", ".join(f"`{n.replace('`', '``')}` STRING" for n in [*names, CORRUPT])
    options = {
        **rfc4180_options(source),
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": CORRUPT,
        "enforceSchema": "true",
        "columnPruning": "false",
    }
    # A producer that sends lines may end each with a line break: not part of the event.
    line = F.regexp_replace(F.col(PAYLOAD), r"\r?\n$", "")
    parsed = F.from_csv(line, ddl, options)
    is_bad = line.isNull() | (line == "") | parsed[CORRUPT].isNotNull()
    if not source.multiline:
        is_bad = is_bad | line.rlike("[\r\n]")
    return payload_df.select(
        *[F.when(~is_bad, parsed[n]).alias(n) for n in names],
        F.when(is_bad, F.coalesce(F.col(PAYLOAD), F.lit(""))).alias(CORRUPT),
        F.col(SOURCE_FILE),
    )


def kafka_events(
    messages_df: DataFrame, source: SourceConfig, topic: str, run_date: dt.date
) -> DataFrame:
    """Kafka's rows (batch or stream) -> raw events (RAW_COLUMNS as text, raw_record,
    source_file), through the same column mapping as files (`map_to_raw_columns`).

    Raises:
        SourceError: the payload format cannot be read from messages, or a mapped column is
            not a field of the payload.
    """
    source = payload_source(source)
    payload_df = with_payload(messages_df)
    if source.format == "json":
        frame_df = parse_json_payloads(payload_df, source)
    else:
        frame_df = parse_delimited_payloads(payload_df, source)
    return map_to_raw_columns(frame_df, source, kafka_uri(topic), run_date)


def kafka_stream(spark: SparkSession, config: Config, run_date: dt.date) -> DataFrame:
    """The messages of `stream.kafka.topic` as a stream of raw events (text columns), for a
    query that hands them to `etl.stream.batch_writer`.

    Raises:
        SourceError: the payload format cannot be read from messages, or the topic cannot be
            described within `stream.kafka.start_timeout_s` (see `check_topic`).
    """
    kafka = config.stream.kafka
    assert kafka.topic is not None
    source = payload_source(config.source)
    if source.format in TEXT_FORMATS and source.header:
        log.warning("stream.source kafka: source.header is ignored (a message has no header)")
    partitions = check_topic(spark, kafka)
    log.info("ingest_stream: kafka topic %s, %d partition(s)", kafka.topic, partitions)
    messages_df = spark.readStream.format("kafka").options(**kafka_options(kafka)).load()
    return kafka_events(messages_df, source, kafka.topic, run_date)
