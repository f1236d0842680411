"""Recommendation models: torch modules and baselines."""
