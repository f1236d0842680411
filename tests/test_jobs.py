"""Every stage as a spark-submit job, the way a user runs it (local master)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.io.delta import read_table

from .conftest import CONF_DIR

ROOT = CONF_DIR.parent
pytestmark = pytest.mark.integration


def _submit(job: str, root: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    env.pop("PYSPARK_PYTHON", None)
    cmd = [
        str(venv_bin / "spark-submit"),
        "--master",
        "local[2]",
        str(ROOT / "jobs" / f"{job}.py"),
        "--conf",
        str(CONF_DIR),
        "--env",
        "test",
        "--run-date",
        "2026-01-02",
        "--set",
        f"paths.root={root}",
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_each_stage_runs_under_spark_submit(
    tmp_path: Path, spark: SparkSession, base_config: Config
) -> None:
    for job in ["generate", "ingest", "featurize", "train", "evaluate", "score"]:
        done = _submit(job, tmp_path, [])
        # spark-submit merges the Python driver's stderr into its stdout
        output = done.stderr + done.stdout
        assert done.returncode == 0, f"{job} failed:\n{output[-4000:]}"
        assert f"[recspark] stage {job} done" in output
    recs = read_table(spark, f"{tmp_path}/lakehouse/recommendations")
    assert recs.count() > 0
    assert {r[0] for r in recs.select("run_date").distinct().collect()} == {
        __import__("datetime").date(2026, 1, 2)
    }


def test_bad_config_key_fails_the_job_with_a_clear_message(tmp_path: Path) -> None:
    done = _submit("ingest", tmp_path, ["--set", "ingest.no_such_key=1"])
    assert done.returncode == 2
    assert "unknown key 'ingest.no_such_key'" in done.stdout + done.stderr
