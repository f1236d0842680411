"""spark-submit entry point for the evaluate stage.

Usage: `spark-submit jobs/evaluate.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "evaluate", *sys.argv[1:]]))
