"""spark-submit entry point for the ingest stage: `spark-submit jobs/ingest.py --conf conf --env local --run-date D`."""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "ingest", *sys.argv[1:]]))
