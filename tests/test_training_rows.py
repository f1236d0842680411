"""Training rows: histories and the validation hold-out, on small in-memory tables and on the
shared run's tables (the sequential protocol)."""

from __future__ import annotations

from pyspark.sql import SparkSession

from recspark.config import Config, load_config
from recspark.io.delta import read_table
from recspark.schemas import ITEM_INDEX, ITEM_SEQ, USER_INDEX
from recspark.training.data import (
    HISTORY,
    batched,
    shape_rows,
    training_inputs,
    validation_arrays,
    validation_targets,
)

from .conftest import CONF_DIR, RUN_DATE

PAD = 9  # n_items: the padding index


def _sequences(spark: SparkSession):  # user 0: items 1, 2, 3 in time order; user 1: item 4
    return spark.createDataFrame([(0, [1, 2, 3]), (1, [4])], "user_index int, item_seq array<int>")


def _positives(spark: SparkSession):
    return spark.createDataFrame([(0, 1), (0, 2), (0, 3), (1, 4)], "user_index int, item_index int")


def test_latest_validation_target(spark: SparkSession) -> None:
    targets = validation_targets(_sequences(spark), n_users=10, seed=1, latest=True)
    assert [tuple(r) for r in targets.collect()] == [(0, 3)]  # user 1 has one item: none


def test_random_validation_target_is_one_of_the_users_items_and_seeded(spark: SparkSession) -> None:
    sequences = spark.createDataFrame(
        [(u, list(range(u, u + 6))) for u in range(40)], "user_index int, item_seq array<int>"
    )
    first = {r[0]: r[1] for r in validation_targets(sequences, 40, 7, latest=False).collect()}
    again = {r[0]: r[1] for r in validation_targets(sequences, 40, 7, latest=False).collect()}
    assert first == again and len(first) == 40
    assert all(u <= item < u + 6 for u, item in first.items())
    assert len({item - u for u, item in first.items()}) > 1  # not always the same position
    assert len(validation_targets(sequences, 5, 7, latest=False).collect()) == 5


def test_pairs_leave_the_target_out_of_rows_and_histories(spark: SparkSession) -> None:
    targets = spark.createDataFrame([(0, 3)], "user_index int, _validation_item int")
    shaped = shape_rows(_sequences(spark), _positives(spark), targets, "pairs", PAD, length=3)
    rows = sorted((r["user_index"], r["item_index"], r[HISTORY]) for r in shaped.rows.collect())
    assert rows == [(0, 1, [PAD, 1, 2]), (0, 2, [PAD, 1, 2]), (1, 4, [PAD, PAD, 4])]
    assert [tuple(r) for r in shaped.validation.collect()] == [(0, 3, [PAD, 1, 2])]


def test_sequences_are_one_row_per_user_cut_to_the_latest(spark: SparkSession) -> None:
    targets = spark.createDataFrame([], "user_index int, _validation_item int")
    shaped = shape_rows(_sequences(spark), _positives(spark), targets, "sequences", PAD, length=2)
    rows = sorted((r["user_index"], r["item_index"], r[HISTORY]) for r in shaped.rows.collect())
    assert rows == [(0, PAD, [2, 3]), (1, PAD, [PAD, 4])]
    assert shaped.validation.count() == 0


def test_validation_arrays_and_batches(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [(5, 1, [PAD, 2]), (2, 3, [4, 6])], "user_index int, item_index int, history array<int>"
    ).collect()
    arrays = validation_arrays(rows, length=2)
    assert arrays["user_index"].tolist() == [2, 5]
    assert arrays["item_index"].tolist() == [3, 1]
    assert arrays[HISTORY].tolist() == [[4, 6], [PAD, 2]]
    assert validation_arrays([], length=2)[HISTORY].shape == (0, 2)
    got = [(u.tolist(), h.tolist()) for u, h in batched(rows, batch=1)]
    assert got == [([5], [[PAD, 2]]), ([2], [[4, 6]])]


def test_sequential_protocol_keeps_validation_and_test_items_out_of_training(
    spark: SparkSession, nightly_run: object, base_config: Config
) -> None:
    """The next-item protocol on the shared run's leave-last-one split, every user validated:
    the test item is each user's last, the validation item the second-last, and neither is ever
    a training target; the model's input at validation is exactly the items before the target."""
    assert base_config.features.split == "leave_last_k"
    config = load_config(
        CONF_DIR, "test", [f"paths.root={base_config.paths.root}", "train.validation_users=10000"]
    )
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    inputs = training_inputs(spark, config, RUN_DATE, n_users, n_items)
    try:
        rows = {r[USER_INDEX]: list(r[HISTORY]) for r in inputs.rows("sequences").collect()}
    finally:
        inputs.release()
    train = {
        r[USER_INDEX]: list(r[ITEM_SEQ])
        for r in read_table(spark, config.table_path("user_sequences"), RUN_DATE).collect()
    }
    test_items = {
        r[USER_INDEX]: r[ITEM_INDEX]
        for r in read_table(spark, config.table_path("holdout"), RUN_DATE).collect()
    }
    validation = inputs.validation
    assert set(validation[USER_INDEX]) == {u for u, seq in train.items() if len(seq) >= 2}
    length = config.features.sequence_length
    for user, target, history in zip(
        validation[USER_INDEX], validation[ITEM_INDEX], validation[HISTORY], strict=True
    ):
        earlier = [item for item in train[user] if item != target]
        assert target == train[user][-1]  # the item just before the test item
        assert [i for i in history if i != n_items] == earlier[-length:]
        trained_on = [i for i in rows[user] if i != n_items]
        assert target not in trained_on and test_items.get(user) not in trained_on
        assert trained_on == earlier[-length:]


def test_several_validation_items_per_user_leave_training_and_histories(
    spark: SparkSession,
) -> None:
    sequences = spark.createDataFrame(
        [(0, [1, 2, 3, 2]), (1, [4, 5]), (2, [6])], "user_index int, item_seq array<int>"
    )
    latest = validation_targets(sequences, n_users=10, seed=1, latest=True, per_user=2)
    # user 0's two latest distinct items; user 1 would keep nothing to train on; user 2 neither
    assert sorted(tuple(r) for r in latest.collect()) == [(0, 2), (0, 3)]
    drawn = validation_targets(sequences, n_users=10, seed=1, latest=False, per_user=2)
    assert {r[1] for r in drawn.collect()} <= {1, 2, 3} and drawn.count() == 2
    positives = spark.createDataFrame(
        [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6)], "user_index int, item_index int"
    )
    shaped = shape_rows(sequences, positives, latest, "pairs", PAD, length=3)
    rows = sorted((r[USER_INDEX], r[ITEM_INDEX], list(r[HISTORY])) for r in shaped.rows.collect())
    assert rows[0] == (0, 1, [PAD, PAD, 1])  # both targets (and the repeat of 2) are gone
    validation = sorted((r[ITEM_INDEX], list(r[HISTORY])) for r in shaped.validation.collect())
    assert validation == [(2, [PAD, PAD, 1]), (3, [PAD, PAD, 1])]
