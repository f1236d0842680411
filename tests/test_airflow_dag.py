"""The Airflow DAG `airflow_dags/recspark_nightly.py`, driven through `.venv-airflow`.

Airflow lives in its own virtualenv (`make airflow-setup`): its pinned dependencies clash with the
project's. These tests run its `airflow` and `python` as subprocesses, with AIRFLOW_HOME (and the
sqlite metadata database) in a temporary folder. The integration test runs the whole DAG for one
date against local Spark with `airflow dags test`, then reruns a task for the same date. It is
also the secrets test: every credential-bearing setting it can use holds a password, and none
may appear in the output, the tables, the MLflow store or the report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from pyspark.sql import SparkSession

from recspark.config import load_config
from recspark.io.delta import read_table
from recspark.pipeline import run_generate
from recspark.stages import NIGHTLY

from .conftest import CONF_DIR
from .leaks import leaks

pytestmark = pytest.mark.integration

ROOT = CONF_DIR.parent
AIRFLOW_VENV = ROOT / ".venv-airflow"
MAIN_BIN = Path(sys.executable).parent
DAG_ID = "recspark_nightly"
STAGES = list(NIGHTLY)  # the DAG's tasks are recspark's own stage list, in its order
RUN_DATE = "2026-01-02"

# Parses the DAG folder with Airflow's DagBag and prints what the tests check, as one JSON line.
DAG_FACTS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get(sys.argv[2])
facts = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}
facts["dag_ids"] = list(bag.dags)
if dag is not None:
    facts.update(
        timetable=type(dag.timetable).__name__,
        cron=getattr(dag.timetable, "expression", None),
        catchup=dag.catchup,
        max_active_runs=dag.max_active_runs,
        doc_md=dag.doc_md or "",
        tasks={
            t.task_id: {
                "class": type(t).__module__ + "." + type(t).__qualname__,
                "bases": [c.__module__ + "." + c.__qualname__ for c in type(t).__mro__],
                "upstream": sorted(t.upstream_task_ids),
                "downstream": sorted(t.downstream_task_ids),
                "retries": t.retries,
                "retry_delay_s": t.retry_delay.total_seconds(),
                "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "conn_id": t._conn_id,
                "application": t.application,
                "application_args": list(t.application_args),
                "env_vars": t.env_vars,
                "template_fields": list(t.template_fields),
            }
            for t in dag.tasks
        },
    )
print("DAG_FACTS " + json.dumps(facts))
"""


def _airflow_bin(name: str) -> Path:
    path = AIRFLOW_VENV / "bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the Airflow environment is not set up. Run `make airflow-setup` "
            "(or `bash scripts/setup_airflow.sh`) in the project root first."
        )
    return path


def _airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment of the Airflow processes: AIRFLOW_HOME and its sqlite DB under `home`.

    PATH has `.venv-airflow/bin` and NOT the project's `.venv/bin`: the DAG itself must make the
    tasks run the project's spark-submit (env_vars), whatever the worker's PATH is.
    """
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != MAIN_BIN]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYSPARK_"))}
    env.update(
        PATH=os.pathsep.join([str(AIRFLOW_VENV / "bin"), *path]),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "airflow_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        SPARK_LOCAL_IP="127.0.0.1",
    )
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


def _run(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: int
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _dag_facts(home: Path, **extra_env: str) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    done = _run(
        [_airflow_bin("python"), "-c", DAG_FACTS, ROOT / "airflow_dags", DAG_ID],
        _airflow_env(home, **extra_env),
        home,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"parsing the DAG folder failed:\n{output[-4000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAG_FACTS ")]
    assert lines, f"no DAG facts printed:\n{output[-4000:]}"
    return json.loads(lines[-1].removeprefix("DAG_FACTS "))


def test_dag_parses_with_the_expected_tasks_edges_and_settings(tmp_path: Path) -> None:
    facts = _dag_facts(tmp_path / "airflow")
    assert facts["import_errors"] == {}
    assert facts["dag_ids"] == [DAG_ID]
    assert facts["timetable"] == "CronDataIntervalTimetable"
    assert facts["cron"] == "0 2 * * *"
    assert facts["catchup"] is False
    assert facts["max_active_runs"] == 1
    assert "idempotent" in facts["doc_md"].lower()

    tasks = facts["tasks"]
    assert sorted(tasks) == sorted(STAGES)
    for i, stage in enumerate(STAGES):
        task = tasks[stage]
        assert task["upstream"] == (STAGES[i - 1 : i] if i else [])
        assert task["downstream"] == STAGES[i + 1 : i + 2]
        assert (
            "airflow.providers.apache.spark.operators.spark_submit.SparkSubmitOperator"
            in task["bases"]
        )
        assert task["retries"] == 2
        assert task["retry_delay_s"] == 300
        assert task["timeout_s"] and task["timeout_s"] > 0
        assert task["conn_id"] == "spark_recspark"
        assert task["application"].endswith(f"/jobs/{stage}.py")
        assert "var.value.get('recspark_project_dir'" in task["application"]
        args = task["application_args"]
        assert args[:6:2] == ["--conf", "--env", "--run-date"]
        assert args[5] == "{{ ds }}"
        assert "recspark_root" in args[6] and "--set=paths.root=" in args[6]
        assert {"application_args", "env_vars", "py_files"} <= set(task["template_fields"])
        assert "recspark_venv" in task["env_vars"]["PATH"]
        assert task["env_vars"]["PYSPARK_PYTHON"].endswith("/bin/python")
    assert tasks["train"]["timeout_s"] >= tasks["ingest"]["timeout_s"]

    # the settings the operator does not template are read from Variables at parse time
    facts = _dag_facts(
        tmp_path / "airflow-vars",
        AIRFLOW_VAR_RECSPARK_RETRIES="1",
        AIRFLOW_VAR_RECSPARK_RETRY_DELAY_MINUTES="2",
        AIRFLOW_VAR_RECSPARK_SPARK_CONN_ID="spark_other",
    )
    assert {t["retries"] for t in facts["tasks"].values()} == {1}
    assert {t["retry_delay_s"] for t in facts["tasks"].values()} == {120}
    assert {t["conn_id"] for t in facts["tasks"].values()} == {"spark_other"}


def test_dag_takes_its_stages_from_the_project(tmp_path: Path) -> None:
    """The stage list has one home, `recspark/stages.py` of `recspark_project_dir`."""
    project = tmp_path / "project"
    (project / "recspark").mkdir(parents=True)
    stages = (ROOT / "recspark" / "stages.py").read_text()
    nightly = re.search(r"NightlyStage = Literal\[[^\]]*\]", stages)
    assert nightly is not None
    shorter = stages.replace(nightly.group(0), 'NightlyStage = Literal["ingest", "featurize"]')
    assert shorter != stages
    (project / "recspark" / "stages.py").write_text(shorter)
    facts = _dag_facts(tmp_path / "airflow", AIRFLOW_VAR_RECSPARK_PROJECT_DIR=str(project))
    assert facts["import_errors"] == {}
    assert list(facts["tasks"]) == ["ingest", "featurize"]
    assert facts["tasks"]["featurize"]["upstream"] == ["ingest"]
    facts = _dag_facts(tmp_path / "airflow-none", AIRFLOW_VAR_RECSPARK_PROJECT_DIR=str(tmp_path))
    (error,) = facts["import_errors"].values()
    assert "recspark_project_dir" in error and "stages.py not found" in error


def _task_states(env: dict[str, str], home: Path) -> dict[str, str]:
    done = _run(
        [_airflow_bin("airflow"), "dags", "list-runs", DAG_ID, "-o", "json"], env, home, 120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    runs = [r for r in runs if r["logical_date"].startswith(RUN_DATE)]
    assert len(runs) == 1, runs
    assert runs[0]["state"] == "success", runs
    done = _run(
        [
            _airflow_bin("airflow"),
            "tasks",
            "states-for-dag-run",
            DAG_ID,
            runs[0]["run_id"],
            "-o",
            "json",
        ],
        env,
        home,
        120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return {row["task_id"]: row["state"] for row in rows}


SMALL_ENV = "dagtest"


def _small_conf(folder: Path, settings: dict[str, dict[str, Any]]) -> Path:
    """The project's conf with an overlay for the smallest data that proves the DAG's point,
    and `settings` (sections of the overlay, merged into it).

    The DAG test is about orchestration: five SparkSubmitOperator tasks in order, each a real
    spark-submit of a recspark job, and a rerun that replaces its partition. Horovod and the
    deep models are proven by the pipeline and cluster tests; here the closed-form model and the
    cheap baseline keep the tasks short (and no catalog). The DAG reaches the overlay through its
    own Variables (`recspark_conf_dir`, `recspark_env`), as a deployment would.
    """
    shutil.copytree(CONF_DIR, folder)
    overlay = yaml.safe_load((CONF_DIR / "test.yaml").read_text())
    overlay["synthetic"].update(n_users=200, n_items=80, n_interactions=4000, n_days=14)
    overlay["train"]["candidates"] = ["ease"]
    overlay["evaluate"] = {"baselines": ["popularity"]}
    # Each task is a new driver: the embedded metastore's start (~4 s a task) proves nothing
    # here; the cluster test's spark-submit registers the tables.
    overlay["catalog"] = {"enabled": False}
    # Likewise the night's monitoring checks (about 40 Spark jobs in ingest and score, a cold
    # driver's 0.3 s each): tests/test_health.py judges them, the cluster test runs them under
    # spark-submit.
    overlay["monitoring"] = {"enabled": False}
    for section, values in settings.items():
        for key, value in values.items():  # a mapping (spark.conf) is merged key by key
            target = overlay.setdefault(section, {})
            target[key] = {**target.get(key, {}), **value} if isinstance(value, dict) else value
    (folder / f"{SMALL_ENV}.yaml").write_text(yaml.safe_dump(overlay))
    return folder


def _recommendations(spark: SparkSession, root: Path) -> tuple[int, int]:
    """(rows, distinct (user, rank) pairs) of the recommendations for RUN_DATE."""
    recs = read_table(spark, f"{root}/lakehouse/recommendations").where(
        f"run_date = DATE'{RUN_DATE}'"
    )
    return recs.count(), recs.select("user_id", "rank").distinct().count()


def _planted(
    tmp_path: Path, redis_url: str, redis_password: str
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Overlay settings with a password in every credential-bearing setting this run can use,
    and the secrets to look for (name -> value).

    - `online.redis_url` carries a password (a wrong one: the right one, from the secret file
      `online.redis_password_file`, wins, so the export proves the file is read);
    - `spark.conf` has S3A's secret key (unused by a local file system, passed to Spark all the
      same) and `catalog.metastore_uri` a Thrift URL with a password (unused with the catalog
      off, but part of the configuration every model logs).
    `mlflow.tracking_uri` stays the local SQLite store (a URL password needs a tracking server:
    tests/test_failures.py checks its redaction); source URLs are checked in
    tests/test_credentials.py.
    """
    planted = {
        name: f"{name}-{secrets.token_hex(8)}"
        for name in ("redis_url_password", "s3a_secret_key", "metastore_password")
    }
    password_file = tmp_path / "redis.password"
    password_file.write_text(redis_password + "\n")
    url = redis_url.replace(f":{redis_password}@", f":{planted['redis_url_password']}@")
    settings = {
        "online": {
            "store": "redis",
            "redis_url": url,
            "redis_password_file": str(password_file),
            "key_prefix": "dagtest",
        },
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": planted["s3a_secret_key"]}},
        "catalog": {
            "enabled": False,
            "metastore_uri": f"thrift://hive:{planted['metastore_password']}@127.0.0.1:9083",
        },
    }
    return settings, {**planted, "redis_password (secret file)": redis_password}


@pytest.mark.integration
def test_airflow_runs_the_nightly_dag_against_local_spark(
    tmp_path: Path, spark: SparkSession, redis_url: str, redis_password: str
) -> None:
    root = tmp_path / "recspark"
    home = tmp_path / "airflow"
    home.mkdir()
    settings, planted = _planted(tmp_path, redis_url, redis_password)
    conf = _small_conf(tmp_path / "conf", settings)
    env = _airflow_env(
        home,
        AIRFLOW_CONN_SPARK_RECSPARK=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        AIRFLOW_VAR_RECSPARK_CONF_DIR=str(conf),
        AIRFLOW_VAR_RECSPARK_ENV=SMALL_ENV,
        AIRFLOW_VAR_RECSPARK_ROOT=str(root),
        AIRFLOW_VAR_RECSPARK_RETRIES="0",  # a failure fails the test now, not after 2 retries
    )
    env.pop("RECSPARK_REDIS_PASSWORD", None)  # the secret file gives it
    airflow = _airflow_bin("airflow")
    outputs: dict[str, str] = {}

    # The landing zone, in this session's Spark: the DAG has no generate task, and a driver
    # started for it (~25 s) would prove nothing the DAG's own tasks do not.
    small = load_config(conf, SMALL_ENV, [f"paths.root={root}"])
    run_generate(spark, small, dt.date.fromisoformat(RUN_DATE))

    done = _run([airflow, "db", "migrate"], env, home, 300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    done = _run([airflow, "dags", "test", DAG_ID, RUN_DATE], env, home, 1800)
    output = outputs["airflow dags test"] = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    for stage in STAGES:
        # the provider logs the command it runs: spark-submit by name, the master from the
        # connection, the templated args rendered for the run's date
        assert (
            f"Spark-Submit cmd: spark-submit --master local[2] --name recspark-{stage}-{RUN_DATE} "
            f"{ROOT}/jobs/{stage}.py --conf {conf} --env {SMALL_ENV} --run-date {RUN_DATE} "
            f"--set=paths.root={root}"
        ) in output, output[-6000:]
        assert f"[recspark] stage {stage} done" in output
    assert _task_states(env, home) == dict.fromkeys(STAGES, "success")
    # The export wrote every user to the password-protected Redis and named it without password.
    shown = settings["online"]["redis_url"].replace(planted["redis_url_password"], "***")
    assert f"users written to {shown} as version" in output, output[-6000:]
    assert redis.Redis.from_url(redis_url).get("dagtest:current") is not None

    rows, distinct = _recommendations(spark, root)
    assert rows > 0
    assert rows == distinct
    runs = read_table(spark, f"{root}/lakehouse/pipeline_runs").where(
        f"run_date = DATE'{RUN_DATE}'"
    )
    succeeded = {r.stage for r in runs.where("status = 'succeeded'").select("stage").collect()}
    assert set(STAGES) <= succeeded
    assert runs.where("status = 'failed'").count() == 0

    # A rerun of the same date (a retry, `airflow tasks clear`) replaces the date's partition:
    # same recommendations, nothing duplicated. (Rerunning every stage would double the test's
    # time; scoring is the stage whose output is published.)
    done = _run([airflow, "tasks", "test", DAG_ID, "score", RUN_DATE], env, home, 1200)
    output = outputs["airflow tasks test score"] = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "[recspark] stage score done" in output
    assert _recommendations(spark, root) == (rows, distinct)
    scored = read_table(spark, f"{root}/lakehouse/pipeline_runs").where(
        f"run_date = DATE'{RUN_DATE}' AND stage = 'score' AND status = 'succeeded'"
    )
    assert scored.count() == 2  # pipeline_runs is a log: the rerun adds its row

    # No planted secret anywhere: the processes' output (the tasks' included), every table read
    # as data, every file under the root (MLflow's store and artifacts, the report, work/) and
    # Airflow's home (its task logs and database).
    assert (root / "mlruns").is_dir() and (root / "reports").is_dir()
    assert leaks(spark, planted, outputs, [root, home]) == []
