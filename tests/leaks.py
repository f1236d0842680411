"""Finding planted secrets in everything a run left behind: process output, Delta tables read as
data, and every file as bytes (Parquet read as data, zip archives and gzip files opened), since
compressed formats would hide a secret from a plain byte search."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import SparkSession


def _found(where: str, data: bytes, secrets: Mapping[str, str]) -> list[str]:
    return [f"{name} in {where}" for name, value in secrets.items() if value.encode() in data]


def _readable(path: Path) -> Iterable[tuple[str, bytes]]:
    """(label, bytes) of a file as stored and, where it is compressed or encoded, as read."""
    raw = path.read_bytes()
    yield str(path), raw
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        yield f"{path} (rows)", json.dumps(rows, default=str).encode()
    elif path.suffix == ".gz":
        yield f"{path} (gunzipped)", gzip.decompress(raw)
    elif zipfile.is_zipfile(path):  # torch .pt, wheels, zipped models
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield f"{path}!{member}", archive.read(member)


def _delta_tables(folder: Path) -> list[Path]:
    return sorted(log.parent for log in folder.rglob("_delta_log") if log.is_dir())


def leaks(
    spark: SparkSession,
    secrets: Mapping[str, str],
    outputs: Mapping[str, str],
    folders: Iterable[Path],
) -> list[str]:
    """Where any of `secrets` (name -> value) appears: in the `outputs` (name -> text), in any
    row of the Delta tables under `folders` (every column, as JSON), in any file under them."""
    found: list[str] = []
    for name, text in outputs.items():
        found += _found(name, text.encode(), secrets)
    for folder in folders:
        for table in _delta_tables(folder):
            rows = spark.read.format("delta").load(str(table)).toJSON().collect()
            found += _found(f"table {table} (rows)", "\n".join(rows).encode(), secrets)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            for label, data in _readable(path):
                found += _found(label, data, secrets)
    return found


__all__ = ["leaks"]
