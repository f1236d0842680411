#!/usr/bin/env bash
# A class-data-sharing archive (JDK CDS) of the classes a Spark driver with Delta loads: every
# JVM started with it maps them instead of finding, parsing and verifying them in the jars. On
# this 2-core machine a cold stage under spark-submit used about 5 core-seconds less (a tiny
# night's seven stages: 218 -> 179 core-seconds; docs/benchmarks/setup-and-tests.md).
#
# Usage: scripts/spark_class_archive.sh PYTHON OUT
# Then start Spark's JVMs with (spark-submit and pyspark read SPARK_SUBMIT_OPTS):
#   SPARK_SUBMIT_OPTS="-XX:SharedArchiveFile=OUT -Xlog:cds=off,cds+dynamic=off"
# The archive holds only what this JDK and this pyspark's jars/ (Delta's included) give: a JVM
# whose version or class path differs ignores it (and -Xlog:...=off keeps that silent), so
# rebuild it after either changes (make does, with the environment).
set -euo pipefail
PY=${1:?usage: spark_class_archive.sh PYTHON OUT}
OUT=${2:?usage: spark_class_archive.sh PYTHON OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "$(dirname "$PY")" && pwd)
mkdir -p "$(dirname "$OUT")"
partial="$OUT.partial"
log="$OUT.log"
rm -f "$partial"
# C1 only: the workload is short, and compiled code is not archived.
if ! SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$BIN/python" \
    SPARK_SUBMIT_OPTS="-XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit=$partial -Xlog:cds=off,cds+dynamic=off" \
    "$BIN/spark-submit" --master "local[2]" "$HERE/spark_class_workload.py" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "spark_class_archive: the workload failed (whole log: $log)" >&2
  exit 1
fi
[ -s "$partial" ] || { echo "spark_class_archive: the JVM wrote no archive to $partial" >&2; exit 1; }
mv "$partial" "$OUT"
rm -f "$log"
echo "spark class archive: $OUT ($(du -h "$OUT" | cut -f1))"
