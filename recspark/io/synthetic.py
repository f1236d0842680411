"""Seeded synthetic interaction data: latent tastes, power-law popularity, realistic defects.

Every random draw is a hash of (seed, row id, salt), so the output depends only on the config,
never on partitioning or on which executor ran what, and nothing is collected to the driver:
10k to 10M rows scale with the cluster.

The model of the data: each user has a taste cluster; each item belongs to one cluster. A share
`cluster_affinity` of a user's events fall in their cluster, the rest anywhere. Inside a cluster,
item popularity follows a power law. A small share `defect_rate` of rows is broken in one of the
ways real event logs break (see DEFECT_KINDS), so ingest has something real to quarantine.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import SyntheticConfig
from recspark.draws import uniform
from recspark.results import GenerateResult
from recspark.schemas import EVENT_TS, EVENT_TYPE, ITEM_ID, RAW_COLUMNS, USER_ID, VALUE

EVENT_MIX = [("view", 0.62), ("click", 0.2), ("add_to_cart", 0.09), ("purchase", 0.05)]
# the rest: "rating"
DEFECT_KINDS = [
    "duplicate",
    "null_user",
    "unknown_item",
    "rating_out_of_range",
    "bad_timestamp",
    "unknown_event_type",
    "malformed_line",
]
ARRIVAL_DATE = "date"


# With synthetic.hostile_ids, one user in HOSTILE_EVERY gets one of these ids (with " #<index>"
# appended, so each is unique): what ingest must keep byte for byte, through every table and
# into the recommendations.
HOSTILE_USER_IDS = (
    "=SUM(A1:A9)",
    "'; DROP TABLE users; --",
    'say "hi", then leave',
    "名前の利用者",
    "مستخدم عربي",
    "👩‍💻 dev",
    "+cmd|' /C calc'!A0",
    "<b>bold</b> & co",
    "@formula",
)
HOSTILE_EVERY = 97


def user_id_col(index: Column, hostile: bool = False) -> Column:
    plain = F.format_string("u%07d", index)
    if not hostile:
        return plain
    names = F.array(*map(F.lit, HOSTILE_USER_IDS))
    pick = F.pmod(F.floor(index / HOSTILE_EVERY), F.lit(len(HOSTILE_USER_IDS))) + 1
    odd = F.concat(F.element_at(names, pick.cast("int")), F.lit(" #"), index.cast("string"))
    return F.when(F.pmod(index, F.lit(HOSTILE_EVERY)) == 13, odd).otherwise(plain)


def hostile_user_id(index: int) -> str | None:
    """The id `user_id_col(index, hostile=True)` gives, where it is a hostile one."""
    if index % HOSTILE_EVERY != 13:
        return None
    return f"{HOSTILE_USER_IDS[(index // HOSTILE_EVERY) % len(HOSTILE_USER_IDS)]} #{index}"


def item_id_col(index: Column) -> Column:
    return F.format_string("i%06d", index)


def generate_events(spark: SparkSession, cfg: SyntheticConfig) -> DataFrame:
    """Clean events as strings (user_id, item_id, event_type, value, event_ts) plus a `defect`.

    Returns:
        One row per event; `defect` is null for good rows, else the defect the writer applies.
    """
    seed = cfg.seed
    n_clusters = cfg.n_clusters
    items_per_cluster = max(1, cfg.n_items // n_clusters)
    rid = F.col("id")
    start = dt.datetime.combine(dt.date.fromisoformat(cfg.start_date), dt.time())
    start_epoch = int(start.replace(tzinfo=dt.UTC).timestamp())

    df = spark.range(0, cfg.n_interactions, numPartitions=cfg.partitions)
    # Mildly skewed user activity: some users are far more active than others.
    df = df.withColumn("u_idx", F.floor(uniform(seed, "user", rid) ** 1.3 * cfg.n_users))
    user_cluster = F.pmod(F.xxhash64(F.lit(seed), F.lit("taste"), F.col("u_idx")), n_clusters)
    in_taste = uniform(seed, "affinity", rid) < cfg.cluster_affinity
    any_cluster = F.floor(uniform(seed, "cluster", rid) * n_clusters)
    df = df.withColumn("cluster", F.when(in_taste, user_cluster).otherwise(any_cluster))
    df = df.withColumn("in_taste", in_taste)
    rank = F.floor(uniform(seed, "pop", rid) ** cfg.popularity_exponent * items_per_cluster)
    df = df.withColumn("i_idx", F.col("cluster") + F.lit(n_clusters) * rank)

    draw = uniform(seed, "type", rid)
    event_type = F.lit("rating")
    edge = 0.0
    edges = []
    for name, share in EVENT_MIX:
        edge += share
        edges.append((name, edge))
    for name, upper in reversed(edges):
        event_type = F.when(draw < upper, F.lit(name)).otherwise(event_type)
    rating = F.when(F.col("in_taste"), 4 + F.floor(uniform(seed, "stars", rid) * 2)).otherwise(
        1 + F.floor(uniform(seed, "stars", rid) * 3)
    )
    seconds = F.floor(uniform(seed, "time", rid) * cfg.n_days * 86400).cast("long")
    event_time = F.timestamp_seconds(F.lit(start_epoch) + seconds)
    ts = F.date_format(event_time, "yyyy-MM-dd HH:mm:ss")
    # Most events land in the folder of their own day; a share `late_rate` 1-3 days later.
    is_late = uniform(seed, "late", rid) < cfg.late_rate
    late_days = 1 + F.floor(uniform(seed, "late_days", rid) * 3).cast("int")
    arrival = F.date_add(F.to_date(event_time), F.when(is_late, late_days).otherwise(0))
    defect_draw = uniform(seed, "defect", rid)
    defect_kind = F.floor(uniform(seed, "defect_kind", rid) * len(DEFECT_KINDS)).cast("int")
    defect = F.when(
        defect_draw < cfg.defect_rate,
        F.element_at(F.array(*map(F.lit, DEFECT_KINDS)), defect_kind + 1),
    )
    return df.select(
        "id",
        user_id_col(F.col("u_idx"), cfg.hostile_ids).alias(USER_ID),
        item_id_col(F.col("i_idx")).alias(ITEM_ID),
        event_type.alias(EVENT_TYPE),
        F.when(event_type == "rating", rating.cast("int").cast("string")).alias(VALUE),
        ts.alias(EVENT_TS),
        defect.alias("defect"),
        F.date_format(arrival, "yyyy-MM-dd").alias(ARRIVAL_DATE),
    )


def with_defects(events_df: DataFrame) -> DataFrame:
    """Apply each row's `defect` to its fields; duplicates are emitted twice."""
    d = F.col("defect")
    broken = events_df.select(
        "id",
        F.when(d == "null_user", F.lit(None)).otherwise(F.col(USER_ID)).alias(USER_ID),
        F.when(d == "unknown_item", F.lit("i9999999")).otherwise(F.col(ITEM_ID)).alias(ITEM_ID),
        F.when(d == "unknown_event_type", F.lit("teleport"))
        .when(d == "rating_out_of_range", F.lit("rating"))
        .otherwise(F.col(EVENT_TYPE))
        .alias(EVENT_TYPE),
        F.when(d == "rating_out_of_range", F.lit("9")).otherwise(F.col(VALUE)).alias(VALUE),
        F.when(d == "bad_timestamp", F.lit("not-a-time"))
        .otherwise(F.col(EVENT_TS))
        .alias(EVENT_TS),
        d,
        ARRIVAL_DATE,
    )
    duplicates = broken.filter(d == "duplicate")
    return broken.unionByName(duplicates)


def csv_field(value: Column, delimiter: str = ",") -> Column:
    """A field as RFC 4180 writes it: in double quotes (inner quotes doubled) where it holds
    the delimiter, a quote or a line break; as it is otherwise."""
    special = F.instr(value, delimiter) + F.instr(value, '"') + F.instr(value, "\n")
    quoted = F.concat(F.lit('"'), F.regexp_replace(value, '"', '""'), F.lit('"'))
    return F.when(special > 0, quoted).otherwise(value)


def to_csv_lines(df: DataFrame, delimiter: str = ",") -> DataFrame:
    """One RFC 4180 text line per row; `malformed_line` rows lose their last two fields."""
    fields = [csv_field(F.coalesce(F.col(c), F.lit("")), delimiter) for c in RAW_COLUMNS]
    full = F.concat_ws(delimiter, *fields)
    short = F.concat_ws(delimiter, *fields[:3])
    line = F.when(F.col("defect") == "malformed_line", short).otherwise(full)
    return df.select(line.alias("value"), ARRIVAL_DATE)


def items_catalog(spark: SparkSession, cfg: SyntheticConfig) -> DataFrame:
    """The item catalog: every generated item id with its category (its taste cluster)."""
    n_clusters = cfg.n_clusters
    n_items = n_clusters * max(1, cfg.n_items // n_clusters)
    return spark.range(0, n_items, numPartitions=1).select(
        item_id_col(F.col("id")).alias(ITEM_ID),
        F.format_string("category_%02d", F.pmod(F.col("id"), F.lit(n_clusters))).alias("category"),
    )


def write_synthetic(
    spark: SparkSession,
    cfg: SyntheticConfig,
    raw_dir: str,
    events_subdir: str = "events",
    catalog_subdir: str = "items",
) -> GenerateResult:
    """Generate events (with defects) and the item catalog under `raw_dir`.

    Events go into one folder per arrival day, `<events_subdir>/date=YYYY-MM-DD/`, as a nightly
    landing zone would hold them: `source.path: events/date={run_date}` ingests one night,
    `source.path: events` everything at once.

    Returns:
        Counts: `lines` written (duplicates included) and `defects` applied.
    """
    events_path = str(Path(raw_dir) / events_subdir)
    catalog_path = str(Path(raw_dir) / catalog_subdir)
    events = with_defects(generate_events(spark, cfg)).persist()
    try:
        if cfg.format == "csv":
            to_csv_lines(events).write.mode("overwrite").partitionBy(ARRIVAL_DATE).text(events_path)
        else:
            events.filter((F.col("defect") != "malformed_line") | F.col("defect").isNull()).select(
                *RAW_COLUMNS, ARRIVAL_DATE
            ).write.mode("overwrite").partitionBy(ARRIVAL_DATE).parquet(events_path)
        items_catalog(spark, cfg).write.mode("overwrite").option("header", True).csv(catalog_path)
        lines = events.count() if cfg.format == "csv" else spark.read.parquet(events_path).count()
        defects = events.filter(F.col("defect").isNotNull()).count()
    finally:
        events.unpersist()
    return GenerateResult(lines=lines, defects=defects)
