"""Global-time and stratified random splits: hand-worked cases and invariants."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from recspark.features import transforms
from recspark.features.featurize import read_external_test, split_external
from recspark.features.splits import (
    split_global_time,
    split_leave_last_k,
    split_random_stratified,
)

PAIRS_SCHEMA = "user_index int, item_index int, strength double, n_events long, last_ts timestamp"
PAIR = ["user_index", "item_index"]


def _day(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day)


def _pairs(spark: SparkSession, rows: Sequence[tuple[int, int, dt.datetime | None]]) -> DataFrame:
    return spark.createDataFrame([(u, i, 1.0, 1, ts) for u, i, ts in rows], PAIRS_SCHEMA)


def _keys(spark: SparkSession, keys: list[tuple[int, int]]) -> DataFrame:
    return spark.createDataFrame(keys, "user_index int, item_index int")


def _assert_keys(df: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(df.select(PAIR), expected, ignore_row_order=True, ignore_nullable=True)


def test_leave_last_k_is_re_exported() -> None:
    assert split_leave_last_k is transforms.split_leave_last_k


def test_global_time_split(spark: SparkSession) -> None:
    pairs = _pairs(
        spark,
        [
            (0, 1, _day(1)),
            (0, 2, _day(5)),  # exactly at the cut: test
            (1, 1, _day(4)),
            (1, 3, _day(9)),
            (2, 2, _day(6)),  # user 2 has no train row: cold
            (3, 1, None),  # no timestamp: test
        ],
    )
    train, test = split_global_time(pairs, _day(5))
    assert_df_equality(
        train,
        _pairs(spark, [(0, 1, _day(1)), (1, 1, _day(4))]),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    _assert_keys(test, _keys(spark, [(0, 2), (1, 3), (2, 2), (3, 1)]))
    warm_train, warm_test = split_global_time(pairs, _day(5), drop_cold_test=True)
    _assert_keys(warm_train, _keys(spark, [(0, 1), (1, 1)]))
    _assert_keys(warm_test, _keys(spark, [(0, 2), (1, 3)]))


def _generated(spark: SparkSession) -> tuple[DataFrame, list[tuple[int, int, dt.datetime]]]:
    rows = [
        (u, i, dt.datetime(2026, 1, 1) + dt.timedelta(hours=(u * 37 + i * 11) % 500))
        for u in range(60)
        for i in range(u % 13 + 1)
    ]
    return _pairs(spark, rows), rows


def _assert_partition_of(
    pairs: DataFrame, train: DataFrame, test: DataFrame
) -> tuple[list[Row], list[Row]]:
    """Every input row is in exactly one side (the input rows are distinct); returns the sides."""
    train_rows, test_rows = train.collect(), test.collect()
    assert sorted(map(tuple, train_rows + test_rows)) == sorted(map(tuple, pairs.collect()))
    return train_rows, test_rows


def test_global_time_split_has_no_leakage(spark: SparkSession) -> None:
    pairs, _ = _generated(spark)
    cut = dt.datetime(2026, 1, 11)
    train_rows, test_rows = _assert_partition_of(pairs, *split_global_time(pairs, cut))
    assert train_rows
    assert test_rows
    assert max(r["last_ts"] for r in train_rows) < cut <= min(r["last_ts"] for r in test_rows)


def _rule(n: int, ratio: float, min_rows: int = 2) -> int:
    """The documented test size of a group of n rows."""
    if n < min_rows:
        return 0
    return min(max(math.floor(n * ratio + 0.5), 1), n - 1)


def test_stratified_test_size_per_user(spark: SparkSession) -> None:
    # Group sizes 1..5, 10, 13 with ratio 0.2: 0 (below min_rows), 1 (0 raised to 1), 1, 1, 1,
    # 2 (floor(2.5)), 3 (floor(3.1)).
    sizes = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 10, 6: 13}
    pairs = _pairs(spark, [(u, i, _day(1)) for u, n in sizes.items() for i in range(n)])
    train, test = split_random_stratified(pairs, test_ratio=0.2, seed=3)
    expected = spark.createDataFrame(
        [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 3)], "user_index int, n long"
    )
    assert_df_equality(
        test.groupBy("user_index").agg(F.count(F.lit(1)).alias("n")),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    _assert_partition_of(pairs, train, test)


def test_stratified_never_puts_a_whole_group_in_test(spark: SparkSession) -> None:
    # ratio 0.9: 2 rows -> floor(2.3) = 2, capped at 1; 3 rows -> floor(3.2) = 3, capped at 2.
    pairs = _pairs(spark, [(0, 1, _day(1)), (0, 2, _day(1))] + [(1, i, _day(1)) for i in range(3)])
    _, test = split_random_stratified(pairs, test_ratio=0.9, seed=1)
    expected = spark.createDataFrame([(0, 1), (1, 2)], "user_index int, n long")
    assert_df_equality(
        test.groupBy("user_index").agg(F.count(F.lit(1)).alias("n")),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


@pytest.mark.parametrize("by", ["user_index", "item_index"])
def test_stratified_invariants(spark: SparkSession, by: str) -> None:
    pairs, rows = _generated(spark)
    ratio = 0.3
    train, test = split_random_stratified(pairs, ratio, seed=11, by=by, min_rows=3)
    _assert_partition_of(pairs, train, test)
    sizes: dict[int, int] = {}
    for user, item, _ in rows:
        group = user if by == "user_index" else item
        sizes[group] = sizes.get(group, 0) + 1
    expected_sizes = [(g, _rule(n, ratio, min_rows=3)) for g, n in sizes.items()]
    actual_sizes = (
        pairs.select(by)
        .distinct()
        .join(test.groupBy(by).agg(F.count(F.lit(1)).alias("n")), by, "left")
        .select(by, F.coalesce("n", F.lit(0)).alias("n"))
    )
    assert_df_equality(
        actual_sizes,
        spark.createDataFrame(expected_sizes, f"{by} int, n long"),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_stratified_is_partitioning_independent_and_seeded(spark: SparkSession) -> None:
    pairs, _ = _generated(spark)

    def test_keys(df: DataFrame, seed: int) -> list[tuple[int, int]]:
        _, test = split_random_stratified(df, 0.3, seed=seed)
        return sorted(map(tuple, test.select(PAIR).collect()))

    keys = test_keys(pairs, 5)
    assert test_keys(pairs.repartition(7, "item_index"), 5) == keys
    assert test_keys(pairs, 6) != keys


def test_stratified_rejects_bad_arguments(spark: SparkSession) -> None:
    pairs, _ = _generated(spark)
    for ratio in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_ratio"):
            split_random_stratified(pairs, ratio, seed=1)
    with pytest.raises(ValueError, match="by"):
        split_random_stratified(pairs, 0.2, seed=1, by="user_id")
    with pytest.raises(ValueError, match="min_rows"):
        split_random_stratified(pairs, 0.2, seed=1, min_rows=0)


def test_external_split_holds_out_exactly_the_listed_pairs(
    spark: SparkSession, tmp_path: Path
) -> None:
    pairs = _pairs(spark, [(0, 0, _day(1)), (0, 1, _day(2)), (1, 0, _day(1)), (1, 2, _day(3))])
    users = spark.createDataFrame([("a", 0), ("b", 1)], "user_id string, user_index int")
    items = spark.createDataFrame([("x", 0), ("y", 1), ("z", 2)], "item_id string, item_index int")
    test_file = tmp_path / "test.csv"
    test_file.write_text("user_id,item_id,rating\na,y,4\nb,x,5\nb,nowhere,3\n")
    test_ids = read_external_test(spark, str(test_file))
    train, holdout, missing = split_external(pairs, test_ids, users, items)
    assert sorted(tuple(r) for r in holdout.select(*PAIR).collect()) == [(0, 1), (1, 0)]
    assert sorted(tuple(r) for r in train.select(*PAIR).collect()) == [(0, 0), (1, 2)]
    assert missing == 1  # (b, nowhere) is not in the data: counted, not silently lost


def test_external_test_file_errors_name_the_file_and_column(
    spark: SparkSession, tmp_path: Path
) -> None:
    bad = tmp_path / "test.tsv"
    bad.write_text("user\titem_id\na\tx\n")
    with pytest.raises(ValueError, match=r"test\.tsv has no column 'user_id'"):
        read_external_test(spark, str(bad))
    empty = tmp_path / "gaps.csv"
    empty.write_text("user_id,item_id\na,\n")
    with pytest.raises(ValueError, match=r"gaps\.csv has 1 rows with an empty id"):
        read_external_test(spark, str(empty))


def test_external_split_config_needs_its_file(tmp_path: Path) -> None:
    from recspark.config import ConfigError, load_config

    from .conftest import CONF_DIR

    with pytest.raises(ConfigError, match=r"features\.external_test"):
        load_config(CONF_DIR, "test", [f"paths.root={tmp_path}", "features.split=external"])
    config = load_config(
        CONF_DIR,
        "test",
        [f"paths.root={tmp_path}", "features.split=external", "features.external_test=t.csv"],
    )
    assert config.features.external_test == "t.csv"
