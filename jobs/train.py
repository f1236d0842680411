"""spark-submit entry point for the train stage.

Usage: `spark-submit jobs/train.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "train", *sys.argv[1:]]))
