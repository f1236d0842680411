"""Scoring: top-K over the item catalog with Spark Arrow UDFs (mapInArrow)."""
