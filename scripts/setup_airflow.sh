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
WANT="apache-airflow==$AIRFLOW_VERSION apache-airflow-providers-apache-spark==$SPARK_PROVIDER_VERSION"
# The provider's hook must import in this environment.
exec bash "$(dirname "$0")/side_venv.sh" "$PYTHON" "$VENV" "$VENV/.recspark-airflow-setup" "$WANT" \
    "import airflow.providers.apache.spark.operators.spark_submit"
