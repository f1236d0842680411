#!/usr/bin/env bash
# Creates .venv-airflow: Apache Airflow and its Spark provider in their own virtual environment.
#
# Airflow pins its own dependency set, which clashes with the project's pinned set
# (pyproject.toml), so it never goes into .venv. The DAG's tasks do not import recspark: they run
# the project's spark-submit (.venv/bin/spark-submit, Spark with Delta's jars and recspark), see
# airflow_dags/recspark_nightly.py.
#
# Usage: bash scripts/setup_airflow.sh [PYTHON] [VENV_DIR]   (defaults: python3, .venv-airflow)
# Idempotent: does nothing when the stamp file records the same pinned versions.
set -euo pipefail

PYTHON="${1:-python3}"
VENV="${2:-.venv-airflow}"
AIRFLOW_VERSION="3.3.2"
SPARK_PROVIDER_VERSION="6.3.4"
STAMP="$VENV/.recspark-airflow-setup"
WANT="apache-airflow==$AIRFLOW_VERSION apache-airflow-providers-apache-spark==$SPARK_PROVIDER_VERSION"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/airflow" ]]; then
    echo "== $VENV is up to date ($WANT)"
    touch "$STAMP"  # newer than this script, for make
    exit 0
fi

echo "== setting up $VENV ($WANT; first time: a minute or two)"
start=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet $WANT
# Check the install: the provider's hook must import in this environment.
"$VENV/bin/python" -c "import airflow.providers.apache.spark.operators.spark_submit"
echo "$WANT" > "$STAMP"
echo "== $VENV ready in $(( $(date +%s) - start )) s"
