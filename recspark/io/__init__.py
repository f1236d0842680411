"""Reading and writing: Delta helpers, raw sources, the synthetic generator."""
