"""spark-submit entry point for the report stage.

Usage: `spark-submit jobs/report.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "report", *sys.argv[1:]]))
