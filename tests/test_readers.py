"""Every table reads without a JVM: delta-rs (`deltalake`), pandas, polars and DuckDB, in their
own environment (`.venv-readers`, `make readers-setup`), see what Spark sees.

A table that gets a Delta protocol feature delta-rs cannot read fails here (the reader refuses
the table), before an analyst's or a service's reader breaks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.io.delta import read_table, table_exists
from recspark.results import PipelineRun

from .conftest import CONF_DIR

pytestmark = pytest.mark.integration
ROOT = CONF_DIR.parent
READERS = ROOT / ".venv-readers" / "bin" / "python"
CHECK = Path(__file__).resolve().parent / "readers_check.py"


def test_every_table_reads_with_delta_rs_pandas_polars_and_duckdb(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config
) -> None:
    if not READERS.exists():
        pytest.fail(f"{READERS} is missing: run `make readers-setup` in the project root")
    tables = [
        name
        for key, name in base_config.tables.model_dump().items()
        if table_exists(spark, base_config.table_path(key))
    ]
    first = base_config.tables.recommendations_latest
    names = [first, *sorted(set(tables) - {first})]
    lakehouse = Path(base_config.path(base_config.paths.lakehouse))
    done = subprocess.run(
        [READERS, CHECK, lakehouse, *names], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("READERS "))
    seen = json.loads(line.removeprefix("READERS "))
    for key, name in base_config.tables.model_dump().items():
        if name in seen["tables"]:
            spark_rows = read_table(spark, base_config.table_path(key)).count()
            assert seen["tables"][name]["rows"] == spark_rows, name
    assert set(seen["tables"]) == set(names)
    latest = read_table(spark, base_config.table_path("recommendations_latest"))
    rows = sorted(
        [r["user_id"], r["rank"], r["item_id"], float(r["score"])]
        for r in latest.select("user_id", "rank", "item_id", "score").collect()
    )
    for reader in ("pandas", "polars"):
        got = sorted(seen[reader])
        assert [r[:3] for r in got] == [r[:3] for r in rows], reader
        assert [r[3] for r in got] == pytest.approx([r[3] for r in rows], rel=1e-6), reader
    per_user: dict[str, list[int]] = {}
    for user, rank, _, _ in rows:
        n, best = per_user.get(user, [0, rank])
        per_user[user] = [n + 1, min(best, rank)]
    assert seen["duckdb"] == per_user
