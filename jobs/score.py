"""spark-submit entry point for the score stage.

Usage: `spark-submit jobs/score.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "score", *sys.argv[1:]]))
