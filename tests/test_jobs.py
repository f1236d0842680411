"""Jobs under spark-submit on a local master, the way a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from recspark.config import Config

from .conftest import CONF_DIR, RUN_DATE

ROOT = CONF_DIR.parent
pytestmark = pytest.mark.integration


def _submit(
    job: str, root: Path, extra: list[str], run_date: str = "2026-01-02"
) -> subprocess.CompletedProcess[str]:
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
        run_date,
        "--set",
        f"paths.root={root}",
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_training_job_runs_horovod_under_spark_submit(
    featurized_copy: Callable[..., Config],
) -> None:
    """The train job under a local spark-submit: Horovod's ranks start from a driver that
    spark-submit launched. (Every job runs under spark-submit in the Airflow DAG test, on local
    Spark, and in the cluster test, on a standalone cluster.)"""
    config = featurized_copy()
    one = ["--set", "train.candidates=[two_tower]"]
    done = _submit("train", Path(config.paths.root), one, RUN_DATE.isoformat())
    output = done.stderr + done.stdout  # spark-submit merges the driver's stderr into stdout
    assert done.returncode == 0, f"train failed:\n{output[-4000:]}"
    assert "[recspark] stage train done" in output
    assert "2 ranks (horovod)" in output
    assert "[0]<stderr>:[train] epoch 1/" in output


def test_bad_config_key_fails_the_job_with_a_clear_message(tmp_path: Path) -> None:
    done = _submit("ingest", tmp_path, ["--set", "ingest.no_such_key=1"])
    assert done.returncode == 2
    assert "unknown key 'ingest.no_such_key'" in done.stdout + done.stderr
