"""spark-submit entry point for the whole pipeline in one process (all stages in order)."""

import sys

from recspark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--stage", "all", *sys.argv[1:]]))
