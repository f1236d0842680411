# recspark: the two commands a fresh machine needs are `make demo` and `make test`.
# Both create the virtual environment first (pinned set from pyproject.toml, Horovod built from
# source and cached, Delta's and Kafka's connector jars and the SQL server's password check put
# where Spark finds them, a Kafka broker for the tests in .kafka/, Debian packages: a native BLAS).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.recspark-setup
AIRFLOW_VENV  ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.recspark-airflow-setup
READERS_VENV  ?= .venv-readers
READERS_STAMP := $(READERS_VENV)/.recspark-readers-setup
SPARK_ARCHIVE := .spark-cds/spark.jsa
RUN_DATE ?= 2026-01-01
PYTEST_ARGS ?=

export PATH := $(abspath $(VENV))/bin:$(PATH)
# Spark binds to loopback only: this is a single machine and tests must not use other addresses.
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: setup airflow-setup readers-setup spark-archive demo package test test-fast test-unit test-all lint docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/build_horovod.sh scripts/fetch_delta_jars.sh scripts/system_packages.sh \
          scripts/build_sql_auth.sh scripts/sql_auth/PasswordProvider.java scripts/fetch_kafka.sh
	@echo "== setting up $(VENV) (first time: downloads torch and builds Horovod, several minutes)"
	bash scripts/system_packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,docs]"
	bash scripts/build_horovod.sh $(PY)
	bash scripts/fetch_delta_jars.sh $(PY)
	bash scripts/fetch_kafka.sh $(PY) .kafka/libs
	bash scripts/build_sql_auth.sh $(PY)
	touch $(STAMP)

# Airflow (tests/test_airflow_dag.py, airflow_dags/) in its own environment: its pins clash with ours.
airflow-setup: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): scripts/setup_airflow.sh scripts/side_venv.sh
	bash scripts/setup_airflow.sh $(PYTHON) $(AIRFLOW_VENV)

# delta-rs, pandas, polars and DuckDB (tests/test_readers.py) in their own environment: delta-rs
# needs a newer pyarrow than Petastorm allows.
readers-setup: $(READERS_STAMP)

$(READERS_STAMP): scripts/setup_readers.sh scripts/side_venv.sh
	bash scripts/setup_readers.sh $(PYTHON) $(READERS_VENV)

# A class-data-sharing archive of the classes Spark's JVMs load (Spark's and Delta's jars in this
# environment): the tests' JVMs map it and start with fewer core-seconds (tests/conftest.py).
spark-archive: $(SPARK_ARCHIVE)

$(SPARK_ARCHIVE): $(STAMP) scripts/spark_class_archive.sh scripts/spark_class_workload.py
	bash scripts/spark_class_archive.sh $(PY) $@

demo: setup
	$(VENV)/bin/recspark demo --conf conf --env local --run-date $(RUN_DATE) --show-examples

# For a cluster: dist/recspark-<version>-py3-none-any.whl and the same archive as a .zip for
# `spark-submit --py-files` (docs/guides/cluster.md).
package: setup
	bash scripts/package.sh $(PY) dist

# The three environments are set up at once (pip unpacking, each in its own folder), then lint,
# docs and the class archive at once, then the suite on TEST_WORKERS pytest-xdist workers (0: in
# this process), sharing tests/conftest.py's work units: the shared night's modules on one
# worker, every other module whole on either. --durations=15: every run prints its fifteen
# slowest tests.
TEST_WORKERS ?= 2

test:
	$(MAKE) --no-print-directory -j3 --output-sync=target setup airflow-setup readers-setup
	$(MAKE) --no-print-directory -j3 --output-sync=target lint docs spark-archive
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow" --durations=15 $(PYTEST_ARGS)

# The tier a developer runs while working: no Spark, no pipeline, no server (about 30 s).
# test-unit is its earlier name.
test-fast test-unit: setup
	$(PY) -m pytest -m "not slow and not integration and not spark" -q $(PYTEST_ARGS)

test-all: setup airflow-setup readers-setup lint docs spark-archive
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

# ruff, mypy --strict, the import layers (contracts in pyproject.toml) and function length.
lint: setup
	$(VENV)/bin/ruff check recspark jobs tests benchmarks airflow_dags notebooks scripts docs
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_function_length.py recspark

# The documentation site (mkdocs.yml, docs/) into site/. --strict: a broken link or anchor, or a
# warning of the generated reference and API pages (docs/gen_ref_pages.py), fails the build
# (not --quiet: it hides the warnings from the count --strict makes).
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf lakehouse data work mlruns spark-warehouse metastore_db reports derby.log site .spark-cds
