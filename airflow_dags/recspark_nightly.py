"""recspark nightly: ingest >> featurize >> train >> evaluate >> score >> export >> report, one
spark-submit each.

Airflow 3 DAG (tried with apache-airflow 3.3.2 and apache-airflow-providers-apache-spark 6.3.4,
both installed by `scripts/setup_airflow.sh` into `.venv-airflow`, apart from the project's
`.venv`: Airflow's pinned dependencies clash with the project's). Every task is a
`SparkSubmitOperator` running `jobs/<stage>.py --conf <conf> --env <env> --run-date {{ ds }}`
(plus `--set paths.root=<root>` when `recspark_root` is set), i.e. exactly the spark-submit line
of docs/guides/cluster.md, for the run's logical date.

Deploy
------
1. `make airflow-setup` (or `bash scripts/setup_airflow.sh`) creates `.venv-airflow`; `make setup`
   creates the project's `.venv` (Spark with Delta's jars, recspark).
2. Point Airflow at this folder (`AIRFLOW__CORE__DAGS_FOLDER=<project>/airflow_dags`) or copy
   this file into the deployment's DAG folder (then set `recspark_project_dir`).
3. Define the Spark connection (the master the jobs are submitted to), e.g.
   `AIRFLOW_CONN_SPARK_RECSPARK='{"conn_type": "spark", "host": "local[2]"}'`, or
   `{"conn_type": "spark", "host": "spark://master-host", "port": 7077}` for a standalone
   cluster. Training needs at least `train.num_proc` (2) task slots. Without the connection the
   provider falls back to `yarn`.
4. Set the Variables below that differ from their defaults and unpause the DAG.

Variables (read in templates when the task runs, so parsing the DAG needs no metadata database;
`AIRFLOW_VAR_<KEY>` environment variables work too)

=================================  ==========================================================
`recspark_project_dir`             project root: jobs are `<dir>/jobs/<stage>.py`
                                   (default: the folder above this file's folder)
`recspark_venv`                    the project's virtualenv; its `bin/spark-submit` runs the
                                   jobs (default: `<recspark_project_dir>/.venv`)
`recspark_conf_dir`                `--conf` (default: `<recspark_project_dir>/conf`)
`recspark_env`                     `--env` overlay (default: `local`)
`recspark_root`                    `--set paths.root=...` (default: empty = the config's own)
`recspark_py_files`                `--py-files`, e.g. a packaged recspark zip (default: none)
`recspark_spark_properties_file`   `--properties-file` with extra Spark conf (default: none)
`recspark_spark_local_ip`          `SPARK_LOCAL_IP` of spark-submit: the address the driver's
                                   ports and UI bind to (default: `127.0.0.1`; on a cluster in
                                   client mode, the worker's address the executors reach)
=================================  ==========================================================

Read when the DAG file is parsed (the operator does not template these; defaults when no
Variable is reachable): `recspark_spark_conn_id` (default `spark_recspark`), `recspark_retries`
(default 2), `recspark_retry_delay_minutes` (default 5), and `recspark_project_dir`, whose
`recspark/stages.py` gives the stages and their order (the list the CLI and the pipeline runner
use; standard library only, loaded by path).

Which spark-submit runs
-----------------------
The provider's hook runs `[spark_binary, ...]` with `subprocess.Popen`, i.e. the binary is looked
up on PATH. The connection extra `spark-binary` may only name `spark-submit`, `spark2-submit` or
`spark3-submit` and the old `spark-home` extra is refused, so a connection cannot point at a
path. `.venv-airflow` has no `spark-submit` of its own (the provider only pulls the Spark Connect
client, `pyspark-client`). The tasks therefore pass `env_vars` (templated) with
`PATH=<recspark_venv>/bin:<worker PATH>`, `PYSPARK_PYTHON=<recspark_venv>/bin/python` and
`SPARK_LOCAL_IP=<recspark_spark_local_ip>` (Spark's UI otherwise listens on every interface): the
hook hands them to the spark-submit process (local and standalone client mode), so
`spark-submit` is the project's (Delta's jars, recspark installed) and so is the driver's Python,
whatever the Airflow worker's own PATH is. Keep `SPARK_HOME` unset on the worker (or pointing
at that pyspark): the project's spark-submit uses `$SPARK_HOME` when it is set. On YARN or
Kubernetes masters the provider forwards `env_vars` to the driver's environment instead; there,
install the project's Spark as the worker's `spark-submit` and drop `env_vars`.

Schedule: daily at 02:00 UTC, for the previous day (`ds` = the day whose events are ingested);
`catchup=False`, `max_active_runs=1`; each attempt has an `execution_timeout` (`STAGE_TIMEOUTS`).
Reruns and backfills are safe: see the DAG's doc (`doc_md`).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import os
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Variable

DAG_ID = "recspark_nightly"
SCHEDULE = "0 2 * * *"
# Wall-clock limit of one attempt of each stage (training is the long one).
STAGE_TIMEOUTS = {
    "ingest": dt.timedelta(hours=1),
    "featurize": dt.timedelta(hours=1),
    "train": dt.timedelta(hours=3),
    "evaluate": dt.timedelta(hours=1),
    "score": dt.timedelta(hours=1),
    "export": dt.timedelta(hours=1),
    "report": dt.timedelta(minutes=30),
}
PROJECT_DIR = str(Path(__file__).resolve().parent.parent)


def _nightly_stages(project_dir: str) -> tuple[str, ...]:
    """recspark's own list of nightly stages (`recspark/stages.py`, standard library only).

    Loaded by path: Airflow's environment has none of recspark's dependencies, and the CLI, the
    pipeline runner and this DAG must run the same stages in the same order.
    """
    path = Path(project_dir) / "recspark" / "stages.py"
    spec = importlib.util.spec_from_file_location("recspark_stages", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(
            f"{path} not found: set the Airflow Variable recspark_project_dir to the recspark "
            "project folder (the one holding recspark/ and jobs/)"
        )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.NIGHTLY)


def _var(key: str, default: str) -> str:
    """Jinja expression for Variable `key`, `default` (itself an expression) when unset."""
    return f"var.value.get('{key}', {default})"


_PROJECT = _var("recspark_project_dir", repr(PROJECT_DIR))
_VENV = _var("recspark_venv", f"{_PROJECT} ~ '/.venv'")
_CONF = _var("recspark_conf_dir", f"{_PROJECT} ~ '/conf'")
_ENV = _var("recspark_env", "'local'")
_ROOT = _var("recspark_root", "''")

# `--set=paths.root=<root>` when recspark_root is set. A list element cannot vanish in a
# template, so otherwise it repeats `--run-date=<ds>` (argparse keeps the last, same value).
ROOT_ARG = f"{{{{ ('--set=paths.root=' ~ {_ROOT}) if {_ROOT} else ('--run-date=' ~ ds) }}}}"


def _parse_time_setting(key: str, default: str) -> str:
    """A Variable needed while parsing (not a templated operator field), else `default`."""
    try:
        value = Variable.get(key, default=None)
    except Exception:  # no API server or database reachable while parsing: use the default
        value = None
    return default if value in (None, "") else str(value)


STAGES = _nightly_stages(_parse_time_setting("recspark_project_dir", PROJECT_DIR))
CONN_ID = _parse_time_setting("recspark_spark_conn_id", "spark_recspark")
RETRIES = int(_parse_time_setting("recspark_retries", "2"))
RETRY_DELAY = dt.timedelta(minutes=float(_parse_time_setting("recspark_retry_delay_minutes", "5")))

DOC_MD = f"""
### recspark nightly

`ingest >> featurize >> train >> evaluate >> score >> export >> report` for the run's logical
date (`ds`),
each stage one `spark-submit jobs/<stage>.py` through the connection `{CONN_ID}`.

**Idempotent: retries, reruns and backfills are safe.** Each stage replaces its own `run_date`
partition (Delta `replaceWhere` in one transaction) and ingest MERGEs events on their event key,
so running a date again (a retry, `airflow tasks clear`, a backfill) gives the same tables as one
successful run; only `pipeline_runs` (a log) and the MLflow registry (a new model version)
record every attempt. `max_active_runs=1` keeps dates in order; `catchup` is off, use
`airflow backfill create` for past dates. Settings: the module docstring of
`airflow_dags/recspark_nightly.py`.
"""


def _submit(stage: str) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=stage,
        conn_id=CONN_ID,
        application=f"{{{{ {_PROJECT} }}}}/jobs/{stage}.py",
        application_args=[
            "--conf",
            f"{{{{ {_CONF} }}}}",
            "--env",
            f"{{{{ {_ENV} }}}}",
            "--run-date",
            "{{ ds }}",
            ROOT_ARG,
        ],
        name=f"recspark-{stage}-{{{{ ds }}}}",
        py_files=f"{{{{ {_var('recspark_py_files', repr(''))} }}}}",
        properties_file=f"{{{{ {_var('recspark_spark_properties_file', repr(''))} }}}}",
        env_vars={
            "PATH": f"{{{{ {_VENV} }}}}/bin{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYSPARK_PYTHON": f"{{{{ {_VENV} }}}}/bin/python",
            # The driver's ports and its UI (no authentication) bind here, not every interface.
            "SPARK_LOCAL_IP": f"{{{{ {_var('recspark_spark_local_ip', repr('127.0.0.1'))} }}}}",
        },
        execution_timeout=STAGE_TIMEOUTS[stage],
    )


with DAG(
    dag_id=DAG_ID,
    description="recspark batch recommendations: ingest, featurize, train, evaluate, score",
    doc_md=DOC_MD,
    # Daily at 02:00 UTC for the day before: the run starting D+1 02:00 has the data interval
    # [D 02:00, D+1 02:00) and `ds` = D, so it ingests D's complete landing folder. (A plain cron
    # string is a CronTriggerTimetable in Airflow 3, whose `ds` would be D+1.)
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "recspark", "retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["recspark", "spark"],
) as dag:
    tasks = [_submit(stage) for stage in STAGES]
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream
