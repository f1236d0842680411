"""Evaluation: ranking metrics at K in Spark."""
