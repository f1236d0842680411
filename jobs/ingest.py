"""spark-submit entry point for the ingest stage.

Usage: `spark-submit jobs/ingest.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "ingest", *sys.argv[1:]]))
