#!/usr/bin/env bash
# Kafka for the streaming ingest (recspark/etl/kafka.py), in two parts:
#  1. Spark's Kafka connector (spark-sql-kafka-0-10) and the runtime jars it needs that Spark does
#     not ship already, put into pyspark's own jars/ folder the way Delta's are
#     (scripts/fetch_delta_jars.sh), so that `python -m recspark`, `spark-submit` and standalone
#     workers find it. 4.0.0: the connector's 4.0.1 needs a token provider 4.0.1 that Maven
#     Central does not serve; 4.0.0 works with Spark 4.0.x (same Kafka client, 3.9.0).
#  2. A Kafka broker (kafka_2.13 and its dependency tree, plus a log4j2 binding so that its log is
#     readable) in .kafka/libs, outside pyspark, for the tests and the benchmarks
#     (tests/kafka_broker.py runs it in KRaft mode: `java -cp '.kafka/libs/*' kafka.Kafka ...`).
# Maven resolves both from Maven Central once and caches them in ~/.m2; a second run copies
# nothing and takes well under a second.
#
# Usage: scripts/fetch_kafka.sh PYTHON [BROKER_DIR]
set -euo pipefail
PY=${1:?usage: fetch_kafka.sh PYTHON [BROKER_DIR]}
BROKER_LIBS=${2:-.kafka/libs}
CONNECTOR_VERSION=4.0.0
BROKER_VERSION=4.1.1
JARS=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

need_mvn() {
  if ! command -v mvn >/dev/null 2>&1; then
    echo "fetch_kafka: Maven (mvn) is needed to fetch $1" >&2; exit 1
  fi
}

# A pom whose only purpose is to resolve the given <dependency> elements.
write_pom() {
  cat > "$1/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>recspark</groupId><artifactId>fetch-kafka</artifactId><version>0</version>
  <dependencyManagement><dependencies>$3</dependencies></dependencyManagement>
  <dependencies>$2</dependencies>
</project>
POM
}

dependency() { echo "<dependency><groupId>$1</groupId><artifactId>$2</artifactId><version>$3</version></dependency>"; }

connector() {
  if [ -f "$JARS/spark-sql-kafka-0-10_2.13-$CONNECTOR_VERSION.jar" ]; then return; fi
  need_mvn "spark-sql-kafka-0-10_2.13:$CONNECTOR_VERSION"
  mkdir -p "$WORK/connector"
  write_pom "$WORK/connector" "$(dependency org.apache.spark spark-sql-kafka-0-10_2.13 "$CONNECTOR_VERSION")" ""
  mvn -B -q -Dstyle.color=never -f "$WORK/connector/pom.xml" dependency:list -DincludeScope=runtime \
    -DoutputAbsoluteArtifactFilename=true -DoutputFile="$WORK/connector/list.txt"
  # group:artifact:jar:version:scope:/path; skip an artifact Spark ships in any version (Scala,
  # Hadoop, slf4j, lz4, snappy, ...): two versions of one library on a class path is a bug.
  # The connector's own jar is copied last: it marks a completed run.
  grep -E '^ +[^ ]+:jar:' "$WORK/connector/list.txt" | sed 's/^ *//' | awk -F: '{print $2, $6}' \
    | sort -k1,1 > "$WORK/connector/jars.txt"
  { grep -v '^spark-sql-kafka-0-10_2.13 ' "$WORK/connector/jars.txt" || true
    grep '^spark-sql-kafka-0-10_2.13 ' "$WORK/connector/jars.txt"; } \
    | while read -r artifact path; do
        if compgen -G "$JARS/$artifact-[0-9]*.jar" >/dev/null; then continue; fi
        cp "$path" "$JARS/"
        echo "kafka connector: $(basename "$path") -> $JARS"
      done
}

broker() {
  local marker="$BROKER_LIBS/.kafka_2.13-$BROKER_VERSION"
  if [ -f "$marker" ]; then return; fi
  need_mvn "kafka_2.13:$BROKER_VERSION"
  mkdir -p "$WORK/broker"
  # Kafka logs through slf4j 1.7 with no binding: slf4j 2 and log4j2's binding make it write
  # a log (the tests configure it to stdout).
  write_pom "$WORK/broker" \
    "$(dependency org.apache.kafka kafka_2.13 "$BROKER_VERSION")$(dependency org.apache.logging.log4j log4j-slf4j2-impl 2.24.3)" \
    "$(dependency org.slf4j slf4j-api 2.0.16)"
  rm -rf "$BROKER_LIBS"
  mkdir -p "$BROKER_LIBS"
  mvn -B -q -Dstyle.color=never -f "$WORK/broker/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$(cd "$BROKER_LIBS" && pwd)"
  touch "$marker"
}

connector
broker
echo "kafka: connector $CONNECTOR_VERSION in $JARS, broker $BROKER_VERSION in $BROKER_LIBS"
