"""Ingest: raw events to the clean interactions table and its quarantine."""
