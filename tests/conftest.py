"""One Spark + Delta session for the whole test run, on the `test` config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.config import Config, load_config
from recspark.session import build_spark

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture(scope="session")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("recspark")
    return load_config(CONF_DIR, "test", [f"paths.root={root}"])


@pytest.fixture(scope="session")
def spark(base_config: Config) -> Iterator[SparkSession]:
    session = build_spark(base_config)
    yield session
    session.stop()
