#!/usr/bin/env bash
# Package recspark for a cluster: a wheel (to pip install into a node image or a packed
# environment) and the same archive as a .zip for `spark-submit --py-files` (Python imports the
# package straight from it on the driver and on every executor).
#
# Usage: scripts/package.sh [PYTHON] [OUT_DIR]   (defaults: .venv/bin/python, dist)
# Prints the path of the .zip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=${2:-dist}
mkdir -p "$OUT"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
# --no-build-isolation: setuptools and wheel are already in the environment; nothing is fetched.
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$BUILD" . >&2
WHEEL=$(ls "$BUILD"/recspark-*.whl)
NAME=$(basename "$WHEEL")
cp "$WHEEL" "$OUT/$NAME"
ZIP="$OUT/${NAME%%-py3-*}.zip"
cp "$WHEEL" "$ZIP"
rm -rf build   # setuptools leaves its build tree in the project
# The SQL server's password check (catalog.sql_auth: password), for the machine that serves SQL.
JARS=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
if [ -f "$JARS/recspark-sql-auth.jar" ]; then cp "$JARS/recspark-sql-auth.jar" "$OUT/"; fi
echo "$ZIP"
