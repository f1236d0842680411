"""spark-submit entry point for the featurize stage.

Usage: `spark-submit jobs/featurize.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "featurize", *sys.argv[1:]]))
