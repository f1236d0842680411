"""Scoring: top-K over the item catalog with Spark pandas UDFs."""
