from __future__ import annotations

from pathlib import Path

import pytest

from recspark.config import ConfigError, TrainConfig, load_config

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
    with pytest.raises(
        ConfigError, match=r"train\.epochs \(from .*base\.yaml\): expected an integer"
    ):
        load_config(conf, "base")
    conf = _conf_dir(tmp_path, "train:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"override 'train\.epochs=x'"):
        load_config(conf, "base", ["train.epochs=x"])


def test_missing_overlay_and_bad_values(tmp_path: Path) -> None:
    conf = _conf_dir(tmp_path, "train:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="no such environment overlay"):
        load_config(conf, "prod")
    with pytest.raises(ConfigError, match=r"train\.num_proc: must be at least 1"):
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
