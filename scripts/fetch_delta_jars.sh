#!/usr/bin/env bash
# Put Delta Lake's jars into pyspark's own jars/ folder, so that every way of starting Spark from
# this environment finds them: `python -m recspark`, `spark-submit`, and standalone workers started
# from the same pyspark. Maven resolves them from Maven Central once and caches them in ~/.m2.
#
# Usage: scripts/fetch_delta_jars.sh PYTHON
set -euo pipefail
PY=${1:?usage: fetch_delta_jars.sh PYTHON}
DELTA_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("delta-spark"))')
JARS=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
for artifact in "io.delta:delta-spark_2.13:$DELTA_VERSION" "io.delta:delta-storage:$DELTA_VERSION"; do
  name=$(echo "$artifact" | cut -d: -f2)
  if ls "$JARS/$name-$DELTA_VERSION.jar" >/dev/null 2>&1; then continue; fi
  if ! command -v mvn >/dev/null 2>&1; then
    echo "fetch_delta_jars: Maven (mvn) is needed to fetch $artifact" >&2; exit 1
  fi
  mvn -q dependency:copy -Dartifact="$artifact" -DoutputDirectory="$JARS"
done
echo "delta: jars $DELTA_VERSION in $JARS"
