"""recspark: a distributed, Spark-based batch recommendation engine."""

import warnings

__version__ = "0.1.0"

# Petastorm 0.12.1 calls the pyarrow 14 APIs it was written for, each of which warns that it is
# deprecated (FutureWarning, once per call site and process: the demo printed about 90 of them
# between its own lines). The pins are deliberate (docs/design/pins.md) and the warnings ask
# nothing of a user, so every process that imports recspark (the CLI, jobs, Horovod ranks, Spark's
# Python workers) drops them, and only them.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
