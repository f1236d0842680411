"""Crashes in the middle of every write, for real: a `recspark run` process is killed with SIGKILL
(its JVM first, the moment the first new data file of the watched table appears, so the Delta
commit has not happened), while ingest MERGEs, while featurize writes its tables and while score
publishes. Readers still see the table's previous version; the rerun completes and its tables
equal those of the uninterrupted shared run. Two runs of the same date started together end with
one consistent result: no duplicates, a loser told in one line to rerun (exit 7)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import exit_codes
from recspark.config import Config, TableKey, load_config
from recspark.io.delta import delta_version, read_table
from recspark.pipeline import run_stages
from recspark.results import PipelineRun

from .conftest import CONF_DIR, FEATURIZED, RUN_DATE

# slow: four runs killed and rerun (about 4 min); left out of `make test`, run by `make test-all`
# and before a change to the write paths (io/delta.py, ingest, featurize, publish).
pytestmark = [pytest.mark.integration, pytest.mark.slow]
PROJECT = CONF_DIR.parent
SETTINGS = ["catalog.enabled=false"]  # one Derby metastore admits one JVM


def _command(root: Path, stage: str) -> list[str]:
    argv = [sys.executable, "-m", "recspark", "run", "--stage", stage]
    argv += ["--run-date", RUN_DATE.isoformat(), "--conf", str(CONF_DIR), "--env", "test"]
    for setting in [f"paths.root={root}", *SETTINGS]:
        argv += ["--set", setting]
    return argv


def _start(root: Path, stage: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("wb") as out:
        return subprocess.Popen(
            _command(root, stage), cwd=PROJECT, env=env, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _data_files(table: Path) -> set[Path]:
    if not table.exists():
        return set()
    return {p for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}


def _tree(parent: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [parent, *parent.children(recursive=True)]
    return []


def _is_jvm(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
        return "java" in process.name()
    return False


def _kill_all(procs: list[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=30)


def _kill_mid_write(proc: subprocess.Popen[bytes], table: Path, log: Path) -> set[Path]:
    """SIGKILL the run (its JVM first) when a data file appears in `table` that was not there
    when it started; the new files it left behind."""
    before = _data_files(table)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 300
    try:
        while True:
            if _data_files(table) - before:
                _kill_all([p for p in _tree(parent) if _is_jvm(p)])
                break
            assert proc.poll() is None, f"the run ended before writing {table}:\n{log.read_text()}"
            assert time.time() < deadline, f"no write to {table} within 300 s"
            time.sleep(0.002)
    finally:
        _kill_all(_tree(parent))
        proc.wait()
    return _data_files(table) - before


def _same(left: DataFrame, right: DataFrame, drop: tuple[str, ...] = ()) -> bool:
    a, b = left.drop(*drop), right.drop(*drop)
    return a.count() == b.count() and a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


def _snapshot(spark: SparkSession, path: str) -> tuple[DataFrame, int | None]:
    """The table's rows now (cached until this process writes the table) and its version."""
    rows = read_table(spark, path).persist()
    rows.count()
    return rows, delta_version(spark, path)


def _copy(base: Config, root: Path, tables: tuple[TableKey, ...], raw: bool = True) -> Config:
    config = load_config(CONF_DIR, "test", [f"paths.root={root}", *SETTINGS])
    for key in tables:
        shutil.copytree(base.table_path(key), config.table_path(key))
    if raw:
        shutil.copytree(base.raw_path, config.raw_path)
    return config


def test_ingest_killed_in_its_merge_leaves_the_table_as_it_was(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    config = _copy(base_config, tmp_path, ("interactions", "interactions_quarantine"))
    path = config.table_path("interactions")
    # the table as it was before the day's events came: a MERGE has rows to insert
    spark.sql(f"DELETE FROM delta.`{path}` WHERE event_date >= '2025-11-20'")
    before, version = _snapshot(spark, path)
    log = tmp_path / "run.log"
    left = _kill_mid_write(_start(tmp_path, "ingest", log), Path(path), log)
    assert left, "killed before any data file was written"
    assert delta_version(spark, path) == version
    assert _same(read_table(spark, path), before)
    run_stages(spark, config, RUN_DATE, ["ingest"])
    done = base_config.table_path("interactions")
    assert _same(read_table(spark, path), read_table(spark, done), ("source_file",))
    quarantine = config.table_path("interactions_quarantine")
    reference = read_table(spark, base_config.table_path("interactions_quarantine"))
    assert _same(read_table(spark, quarantine), reference, ("source_file",))
    before.unpersist()


def test_featurize_killed_between_and_in_its_writes_reruns_to_the_same_tables(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    config = _copy(base_config, tmp_path, ("interactions", "interactions_quarantine"))
    log = tmp_path / "run.log"
    watched = Path(config.table_path("user_sequences"))  # written after features and splits
    left = _kill_mid_write(_start(tmp_path, "featurize", log), watched, log)
    assert left
    assert delta_version(spark, str(watched)) is None  # its first commit never happened
    written = [key for key in FEATURIZED if Path(config.table_path(key)).exists()]
    assert "train_interactions" in written  # the kill came in the middle of the stage
    run_stages(spark, config, RUN_DATE, ["featurize"])
    for key in FEATURIZED:
        mine = read_table(spark, config.table_path(key))
        assert _same(mine, read_table(spark, base_config.table_path(key)), ("source_file",)), key


def test_score_killed_while_publishing_leaves_the_published_run(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    tables: tuple[TableKey, ...] = (
        *FEATURIZED, "model_metrics", "recommendations", "recommendations_latest",
        "recommendations_staging", "pipeline_runs",
    )  # fmt: skip
    config = _copy(base_config, tmp_path, tables, raw=False)
    shutil.copytree(Path(base_config.mlflow_tracking_uri.removeprefix("sqlite:///")).parent,
                    Path(config.mlflow_tracking_uri.removeprefix("sqlite:///")).parent)  # fmt: skip
    latest = config.table_path("recommendations_latest")
    published, version = _snapshot(spark, latest)
    published_run = published.first()["run_id"]  # the cache follows the table: keep the value
    log = tmp_path / "run.log"
    left = _kill_mid_write(
        _start(tmp_path, "score", log), Path(config.table_path("recommendations")), log
    )
    assert left
    assert delta_version(spark, latest) == version
    assert _same(read_table(spark, latest), published)  # the same run, run id and all
    run_stages(spark, config, RUN_DATE, ["score"])
    rerun = read_table(spark, latest)
    run_ids = [r[0] for r in rerun.select("run_id").distinct().collect()]
    assert len(run_ids) == 1 and run_ids[0] != published_run
    reference = read_table(spark, base_config.table_path("recommendations_latest"))
    assert _same(rerun, reference, ("run_id",))
    recs = read_table(spark, config.table_path("recommendations"))
    assert recs.groupBy("user_id", "item_id", "run_date").count().filter("count > 1").count() == 0
    published.unpersist()


def test_two_ingests_of_the_same_date_at_once_end_consistent(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    config = _copy(base_config, tmp_path, ())
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_start(tmp_path, "ingest", log) for log in logs]
    codes = [p.wait(timeout=600) for p in procs]
    assert set(codes) <= {0, exit_codes.CONFLICT}, [log.read_text()[-3000:] for log in logs]
    for code, log in zip(codes, logs, strict=True):
        if code == exit_codes.CONFLICT:
            lines = [x for x in log.read_text().splitlines() if x.startswith("recspark: ")]
            assert len(lines) == 1 and "Delta write conflict" in lines[0], log.read_text()[-3000:]
            assert "Traceback" not in log.read_text()
    if exit_codes.CONFLICT in codes:  # what the line says to do: rerun the stage
        run_stages(spark, config, RUN_DATE, ["ingest"])
    interactions = read_table(spark, config.table_path("interactions"))
    assert interactions.groupBy("event_id").count().filter(F.col("count") > 1).count() == 0
    reference = read_table(spark, base_config.table_path("interactions"))
    assert _same(interactions, reference, ("source_file",))
    quarantine = read_table(spark, config.table_path("interactions_quarantine"))
    expected = read_table(spark, base_config.table_path("interactions_quarantine"))
    assert _same(quarantine, expected, ("source_file",))
