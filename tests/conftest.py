"""One Spark + Delta session for the whole test run, on the `test` config, and the one default
pipeline run whose tables the read-only tests share."""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pyspark.sql import SparkSession

from recspark.config import Config, TableKey, load_config
from recspark.results import PipelineRun
from recspark.session import build_spark
from recspark.stages import DEMO

if TYPE_CHECKING:
    from .kafka_broker import KafkaBroker

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
RUN_DATE = dt.date(2026, 1, 1)
# What ingest and featurize write: a copy of these is a lakehouse ready for training.
FEATURIZED: tuple[TableKey, ...] = (
    "interactions",
    "interactions_quarantine",
    "user_ids",
    "item_ids",
    "train_interactions",
    "holdout",
    "training_set",
    "user_features",
    "item_features",
    "user_sequences",
)


# Tiers (pyproject.toml's markers): a test that asks for one of these fixtures runs the pipeline
# or a real server, so it is `integration`; one that asks for `spark` starts the session. `make
# test-fast` runs the rest, the tests of plain Python, numpy and torch, in about a minute.
SHARED_NIGHT = frozenset({"nightly_run", "featurized_copy", "night_root", "kafka_broker"})
SERVER_FIXTURES = SHARED_NIGHT | {"redis_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if "spark" in names:
            item.add_marker(pytest.mark.spark)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker (make test: -n 2)
        items.sort(key=lambda item: _priority(_work_unit(item.nodeid)))  # stable


# `make test` runs two pytest-xdist workers: a sequential run kept the two cores 73 % busy (the
# Airflow tasks, the cluster and Horovod's ranks wait on each other and on their servers). A work
# unit goes whole to one worker, so each fixture is built once: the modules that name a fixture of
# SHARED_NIGHT (the shared night or the Kafka broker) are one unit, every other module is its own.
# (pytest-xdist 3.8's own `--dist loadgroup` does nothing under pytest 9.2, which no longer reads
# the node id it rewrites: hence this scheduler.) The workers take the shared night first, the
# longest unit, then the modules that run the pipeline or a server, then the rest, each in
# collection order.


@functools.cache
def _module_source(module: str) -> str:
    return (CONF_DIR.parent / module).read_text()


def _work_unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    source = _module_source(module)
    return "shared-night" if any(name in source for name in SHARED_NIGHT) else module


def _priority(unit: str) -> int:
    if unit == "shared-night":
        return 0
    return 1 if "pytest.mark.integration" in _module_source(unit) else 2


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (make test): the work units above."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    config.option.loadscopereorder = False  # the workers' collection order (_priority) stands
    return WorkUnits(config, log)


# The JVMs the tests start in subprocesses (spark-submit, the CLI, Airflow's tasks, the SQL
# server, a standalone cluster's executors) live seconds to a minute on tiny data.
# C2, the JIT's optimizing tier, spends a core compiling code they never run long enough to gain
# from: with C1 only, a cold `score` stage used 59 core-seconds instead of 92 and finished 7 s
# sooner; the DAG test alone went from 379 to 328 s and the cluster test from 169 to 146 s. The
# test session's own driver runs for the whole suite and keeps both tiers (C1 only made its warm
# stages 15-30 % slower), as does the notebook's kernel. Spark's launcher adds SPARK_SUBMIT_OPTS
# to every driver it starts, pyspark's included.
# The long-lived drivers use the parallel collector: G1's concurrent marking took 89 core-seconds
# of the shared night's driver in one run, and tests/test_pipeline.py used 235-261 core-seconds
# with it against 252-282 with G1. (C1 only there too used 209, but made the warm stages of the
# shared night's worker, the suite's longest, slower: its monitoring set-up 161 s against
# 114-125 s; and it needs larger thread stacks: with C1's frames the driver died of a
# StackOverflowError deserialising ALS's lineage at the default 1 MB.)
LONG_LIVED_JVM = "-XX:+UseParallelGC"
# Every Spark JVM of the tests, the session's own included, also maps the classes of the archive
# `make test` builds (scripts/spark_class_archive.sh) instead of loading them from the jars: a
# tiny night's seven spark-submit stages used 179 core-seconds with it, 218 without. Without the
# archive (pytest run directly, before `make`), the JVMs start as before.
SPARK_ARCHIVE = CONF_DIR.parent / ".spark-cds" / "spark.jsa"
SHARED_CLASSES = (
    f"-XX:SharedArchiveFile={SPARK_ARCHIVE} -Xlog:cds=off,cds+dynamic=off"
    if SPARK_ARCHIVE.is_file()
    else ""
)
SHORT_LIVED_JVM = " ".join(filter(None, ["-XX:TieredStopAtLevel=1", SHARED_CLASSES]))


@pytest.fixture(scope="session", autouse=True)
def short_lived_jvms() -> Iterator[str | None]:
    """SPARK_SUBMIT_OPTS for the tests' subprocesses; yields what it was before (the session's)."""
    before = os.environ.get("SPARK_SUBMIT_OPTS")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARK_SUBMIT_OPTS", " ".join(filter(None, [before, SHORT_LIVED_JVM])))
        yield before


def full_jit(mp: pytest.MonkeyPatch, before: str | None) -> None:
    """SPARK_SUBMIT_OPTS as it was before `short_lived_jvms` (`before`), LONG_LIVED_JVM and the
    shared classes, under `mp`: for a driver that lives long enough to gain from both JIT tiers."""
    opts = " ".join(filter(None, [before, LONG_LIVED_JVM, SHARED_CLASSES]))
    if opts:
        mp.setenv("SPARK_SUBMIT_OPTS", opts)
    else:
        mp.delenv("SPARK_SUBMIT_OPTS", raising=False)


@pytest.fixture(scope="session")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("recspark")
    return load_config(CONF_DIR, "test", [f"paths.root={root}"])


@pytest.fixture(scope="session")
def spark(base_config: Config, short_lived_jvms: str | None) -> Iterator[SparkSession]:
    with pytest.MonkeyPatch.context() as mp:  # this driver lives for the whole run: full JIT
        full_jit(mp, short_lived_jvms)
        session = build_spark(base_config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def nightly_run(spark: SparkSession, base_config: Config) -> PipelineRun:
    """The default pipeline on the test data for RUN_DATE: generate, then every nightly stage.

    Shared by the tests that only read its tables and registry (tests/test_pipeline.py), and,
    as a copy of its featurized tables, by those that train and publish on the same data.
    """
    from recspark.pipeline import run_stages

    return run_stages(spark, base_config, RUN_DATE, DEMO)


@pytest.fixture(scope="session")
def featurized_copy(
    nightly_run: PipelineRun, base_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Config]:
    """A function giving a fresh root with a copy of the shared run's ingested and featurized
    tables (no registry, no recommendations), configured with `overrides`."""

    def copy(*overrides: str) -> Config:
        root = tmp_path_factory.mktemp("featurized")
        config = load_config(CONF_DIR, "test", [f"paths.root={root}", *overrides])
        for key in FEATURIZED:
            shutil.copytree(base_config.table_path(key), config.table_path(key))
        return config

    return copy


@pytest.fixture(scope="session")
def redis_password() -> str:
    """The password the tests' redis-server requires (random per test run)."""
    import secrets

    return f"redis-pw-{secrets.token_hex(12)}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory, redis_password: str) -> Iterator[str]:
    """A real redis-server (Debian's, installed by `make setup`) on a free loopback port, no
    persistence, for the whole test run. It requires a password (`redis_password`, in the
    URL), so every test that exports authenticates as a production store would have it."""
    from .servers import redis_server

    with redis_server(tmp_path_factory.mktemp("redis"), redis_password) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka broker (KRaft, one node; `.kafka/libs` from `make setup`) on a free loopback
    port for the whole test run: `bootstrap`, `create_topic`, `produce`. A test may `stop()` and
    `start()` it (same port, same log dirs) and must leave it running."""
    from .kafka_broker import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    with broker.running():
        yield broker
