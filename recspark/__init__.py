"""recspark: a distributed, Spark-based batch recommendation engine."""

__version__ = "0.1.0"
