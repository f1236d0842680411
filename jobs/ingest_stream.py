"""spark-submit entry point for the streaming ingest (AvailableNow) of the landing folder, or of
the Kafka topic with `stream.source: kafka` (the connector's jars are in pyspark's jars/ folder).

Usage: `spark-submit jobs/ingest_stream.py --conf conf --env local --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "ingest_stream", *sys.argv[1:]]))
