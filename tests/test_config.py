from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from recspark.config import ConfigError, TableKey, TablesConfig, TrainConfig, load_config
from recspark.vocab import choices

from .conftest import CONF_DIR


def _conf_dir(tmp_path: Path, base: str, overlay: str | None = None) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    if overlay is not None:
        (tmp_path / "dev.yaml").write_text(overlay)
    return tmp_path


def test_project_conf_loads_for_each_env() -> None:
    for env in ("base", "local", "test"):
        config = load_config(CONF_DIR, env)
        assert config.env == env
    assert load_config(CONF_DIR, "test").train.epochs == 6


def test_overlay_and_override_win_in_order(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, "train:\n  epochs: 3\n  embedding_dim: 8\n", "train:\n  epochs: 4\n")
    config = load_config(conf, "dev", ["train.embedding_dim=16"])
    assert (config.train.epochs, config.train.embedding_dim) == (4, 16)
    assert config.train.batch_size == TrainConfig().batch_size  # default kept


def test_override_of_a_dotted_spark_setting() -> None:
    config = load_config(
        CONF_DIR,
        "test",
        ["spark.conf.spark.driver.memory=3g", "spark.conf.spark.sql.shuffle.partitions=16"],
    )
    assert config.spark.conf["spark.driver.memory"] == "3g"
    assert config.spark.conf["spark.sql.shuffle.partitions"] == "16"
    assert config.spark.conf["spark.driver.host"] == "127.0.0.1"  # the overlay's others stay


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, "train:\n  epochs: 3\n", "train:\n  epoch: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.epoch' in .*dev\.yaml"):
        load_config(conf, "dev")


def test_unknown_section_named(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, "trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian' in .*base\.yaml"):
        load_config(conf, "base")


def test_wrong_type_names_key_and_origin(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, "train:\n  epochs: three\n")
    num_proc = r"train\.num_proc \(from override 'train\.num_proc=0'\): must be at least 1"
    with pytest.raises(ConfigError, match=num_proc):
        load_config(conf, "base", ["train.num_proc=0"])
    with pytest.raises(ConfigError, match=r"source\.format"):
        load_config(conf, "base", ["source.format=xml"])


def test_paths_resolve_against_root(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, f"paths:\n  root: {tmp_path}/r\n")
    config = load_config(conf, "base")
    assert config.table_path("interactions") == f"{tmp_path}/r/lakehouse/interactions"
    assert config.mlflow_tracking_uri == f"sqlite:///{tmp_path}/r/mlruns/mlflow.db"
    relative = load_config(_conf_dir(tmp_path, "paths:\n  root: out\n"), "base")
    assert relative.raw_path == str(tmp_path.parent / "out" / "data" / "raw")


def test_uri_locations_keep_their_scheme(tmp_path: Path) -> None:
    """A lakehouse or raw folder on object storage (a cluster's usual case) stays a valid URI."""
    conf = _conf_dir(tmp_path, "paths:\n  lakehouse: s3a://bucket/lake/\n  raw: abfss://c@a/raw\n")
    config = load_config(conf, "base")
    assert config.table_path("interactions") == "s3a://bucket/lake/interactions"
    assert config.raw_file("events/2026-01-01") == "abfss://c@a/raw/events/2026-01-01"
    assert config.raw_file("/mnt/x.csv") == "/mnt/x.csv"
    assert config.raw_file("hdfs://nn/x.csv") == "hdfs://nn/x.csv"
    local = load_config(_conf_dir(tmp_path, f"paths:\n  root: {tmp_path}/r\n"), "base")
    assert local.raw_file("events") == f"{tmp_path}/r/data/raw/events"


def test_numbers_and_dates_where_text_is_expected(tmp_path: Path) -> None:
    conf = _conf_dir(
        tmp_path, "spark:\n  conf:\n    spark.x: 8\nsynthetic:\n  start_date: 2025-12-01\n"
    )
    config = load_config(conf, "base")
    assert config.spark.conf["spark.x"] == "8"
    assert config.synthetic.start_date == "2025-12-01"
    with pytest.raises(
        ConfigError, match=r"train\.use_history \(from .*\): expected true or false"
    ):
        load_config(conf, "base", ["train.use_history=1"])
    with pytest.raises(ConfigError, match=r"train\.epochs .*: expected an integer, got True"):
        load_config(conf, "base", ["train.epochs=true"])


def test_words_are_checked_against_their_vocabulary(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, "train:\n  candidates: [two_towers]\n")
    with pytest.raises(
        ConfigError, match=r"train\.candidates\.0 \(from .*base\.yaml\): expected one of"
    ):
        load_config(conf, "base")
    for override in ("score.precision=fp8", "train.loss=hinge", "evaluate.baselines=[svd]"):
        with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
            load_config(CONF_DIR, "test", [override])


def test_candidates_are_a_list_of_distinct_models_and_replace_train_model() -> None:
    with pytest.raises(
        ConfigError, match=r"train\.model .*replaced by train\.candidates.*\[ease\]"
    ):
        load_config(CONF_DIR, "test", ["train.model=ease"])
    with pytest.raises(ConfigError, match=r"train\.candidates .*lists a model twice"):
        load_config(CONF_DIR, "test", ["train.candidates=[ease,ease]"])
    with pytest.raises(ConfigError, match=r"train\.candidates .*blend needs at least two"):
        load_config(CONF_DIR, "test", ["train.candidates=[ease,blend]"])
    assert load_config(CONF_DIR, "test", ["train.candidates=[sasrec]"]).train.candidates == [
        "sasrec"
    ]


def test_rules_across_fields_name_the_field_and_its_origin() -> None:
    with pytest.raises(
        ConfigError, match=r"score\.max_candidates \(from override .*\): must be at least score\.k"
    ):
        load_config(CONF_DIR, "test", ["score.max_candidates=3"])
    with pytest.raises(ConfigError, match=r"train\.candidates \(from .*base\.yaml\): sasrec"):
        load_config(CONF_DIR, "test", ["train.loss=bpr"])
    with pytest.raises(ConfigError, match=r"features\.external_test .*exactly when"):
        load_config(CONF_DIR, "test", ["features.split=external"])


def test_config_is_frozen_and_project_fields_are_not_keys() -> None:
    config = load_config(CONF_DIR, "test")
    with pytest.raises(ValidationError):
        config.train.epochs = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"unknown key 'project_root'"):
        load_config(CONF_DIR, "test", ["project_root=/x"])


def test_table_keys_are_the_tables_section() -> None:
    assert set(choices(TableKey)) == set(TablesConfig.model_fields)
