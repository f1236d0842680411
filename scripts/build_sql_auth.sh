#!/usr/bin/env bash
# Compile the SQL server's password check (scripts/sql_auth/PasswordProvider.java, used when
# catalog.sql_auth is password) against pyspark's own jars (Hive's PasswdAuthenticationProvider
# ships in spark-hive-thriftserver) and put recspark-sql-auth.jar into pyspark's jars/ folder,
# where the server's JVM finds it (as scripts/fetch_delta_jars.sh does with Delta's jars).
# Another Spark installation: copy the jar into its jars/ folder. Needs a JDK (javac, jar).
#
# Usage: scripts/build_sql_auth.sh PYTHON
set -euo pipefail
PY=${1:?usage: build_sql_auth.sh PYTHON}
SOURCE="$(cd "$(dirname "$0")" && pwd)/sql_auth/PasswordProvider.java"
JARS=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
JAR="$JARS/recspark-sql-auth.jar"
if [ -f "$JAR" ] && [ "$JAR" -nt "$SOURCE" ]; then
  echo "sql auth: $JAR is up to date"; exit 0
fi
for tool in javac jar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build_sql_auth: a JDK ($tool) is needed" >&2; exit 1; }
done
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
javac --release 17 -nowarn -cp "$JARS/*" -d "$BUILD" "$SOURCE"
jar --create --file "$BUILD/recspark-sql-auth.jar" -C "$BUILD" recspark
mv "$BUILD/recspark-sql-auth.jar" "$JAR"
echo "sql auth: built $JAR"
