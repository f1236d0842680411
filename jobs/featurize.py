"""spark-submit entry point for the featurize stage: `spark-submit jobs/featurize.py --conf conf --env local --run-date D`."""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "featurize", *sys.argv[1:]]))
