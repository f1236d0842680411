"""spark-submit entry point for the refresh stream (a long-running job beside the nightly DAG).

Usage: `spark-submit jobs/refresh.py --conf conf --env local` (docs/guides/streaming.md)
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["refresh", *sys.argv[1:]]))
