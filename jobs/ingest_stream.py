"""spark-submit entry point for the streaming ingest of the landing folder (AvailableNow).

Usage: `spark-submit jobs/ingest_stream.py --conf conf --env local --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "ingest_stream", *sys.argv[1:]]))
