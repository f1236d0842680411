"""spark-submit entry point for the export stage.

Usage: `spark-submit jobs/export.py --conf conf --env local \
       --run-date YYYY-MM-DD`
"""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "export", *sys.argv[1:]]))
