"""The synthetic generator: seeded, partitioning-independent, with defects of every kind."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import SyntheticConfig
from recspark.io.synthetic import DEFECT_KINDS, generate_events, with_defects


def test_same_seed_same_rows_whatever_the_partitioning(spark: SparkSession) -> None:
    a = generate_events(spark, SyntheticConfig(n_interactions=3000, partitions=1))
    b = generate_events(spark, SyntheticConfig(n_interactions=3000, partitions=3))
    assert_df_equality(a, b, ignore_row_order=True)
    c = generate_events(spark, SyntheticConfig(n_interactions=3000, partitions=1, seed=8))
    assert a.exceptAll(c).count() > 0


def test_shape_of_the_data(spark: SparkSession) -> None:
    cfg = SyntheticConfig(
        n_users=100, n_items=80, n_interactions=20000, n_clusters=4, defect_rate=0.1
    )
    events = generate_events(spark, cfg).persist()
    assert events.select(F.max(F.substring("user_id", 2, 7).cast("int"))).first()[0] < 100
    assert events.select(F.max(F.substring("item_id", 2, 6).cast("int"))).first()[0] < 80
    counts = [
        r["count"] for r in events.groupBy("item_id").count().orderBy(F.desc("count")).collect()
    ]
    assert counts[0] > 10 * counts[len(counts) // 2]  # power-law: the head dwarfs the median
    assert events.select(F.to_date("event_ts")).distinct().count() > 30
    assert {r[0] for r in events.select("event_type").distinct().collect()} == {
        "view",
        "click",
        "add_to_cart",
        "purchase",
        "rating",
    }
    assert {r[0] for r in events.select("defect").distinct().collect()} == {None, *DEFECT_KINDS}
    broken = with_defects(events)
    n_dup = events.filter(F.col("defect") == "duplicate").count()
    assert broken.count() == 20000 + n_dup
