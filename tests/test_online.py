"""The export stage against a real redis-server on loopback: every user's top-K under a version,
one atomic switch of the current pointer, idempotent reruns, failures that leave the previous
version current, old versions that expire."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis
from pyspark.sql import SparkSession

from recspark.config import Config, load_config
from recspark.io.delta import read_table
from recspark.online.export import OnlineExportError, run_export
from recspark.results import PipelineRun

from .conftest import CONF_DIR, RUN_DATE

pytestmark = pytest.mark.integration


def _config(root: Path | str, redis_url: str, prefix: str, *overrides: str) -> Config:
    return load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={root}",
            "online.store=redis",
            f"online.redis_url={redis_url}",
            f"online.key_prefix={prefix}",
            "online.batch_size=50",
            *overrides,
        ],
    )


def _expected(spark: SparkSession, config: Config) -> dict[str, list[tuple[str, float]]]:
    """Each user's (item_id, score) of recommendations_latest, best first, from Spark."""
    rows = read_table(spark, config.table_path("recommendations_latest")).collect()
    by_user: dict[str, list[tuple[int, str, float]]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append((row["rank"], row["item_id"], row["score"]))
    return {u: [(i, s) for _, i, s in sorted(recs)] for u, recs in by_user.items()}


def _stored(client: Any, prefix: str) -> tuple[str, dict[str, Any]]:
    version = client.get(f"{prefix}:current").decode()
    values = client.hgetall(f"{prefix}:recs:{version}")
    return version, {k.decode(): json.loads(v) for k, v in values.items()}


def test_every_user_is_exported_under_one_version_and_a_rerun_changes_nothing(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, redis_url: str
) -> None:
    config = _config(base_config.paths.root, redis_url, "t1")
    result = run_export(spark, config, RUN_DATE)
    assert result.action == "written"
    client = redis.Redis.from_url(redis_url)
    version, stored = _stored(client, "t1")
    assert version == result.version and version.startswith(f"{RUN_DATE}.")
    expected = _expected(spark, config)
    assert result.users == len(expected) == len(stored)
    for user, recs in expected.items():
        assert stored[user]["items"] == [item for item, _ in recs], user
        assert stored[user]["scores"] == pytest.approx([s for _, s in recs], rel=1e-6)
    assert {v["run_date"] for v in stored.values()} == {RUN_DATE.isoformat()}
    assert client.hget(f"t1:meta:{version}", "users") == str(len(expected)).encode()
    # A rerun writes nothing and leaves the same version current.
    again = run_export(spark, config, RUN_DATE)
    assert (again.action, again.version) == ("kept", version)
    assert _stored(client, "t1") == (version, stored)


def test_a_failed_export_leaves_the_previous_version_current_and_old_versions_expire(
    spark: SparkSession,
    nightly_run: PipelineRun,
    base_config: Config,
    redis_url: str,
    tmp_path: Path,
) -> None:
    client = redis.Redis.from_url(redis_url)
    first = run_export(spark, _config(base_config.paths.root, redis_url, "t2"), RUN_DATE)
    # A second published run: a copy of recommendations_latest under another run id.
    config = _config(tmp_path, redis_url, "t2", "online.keep_versions=1")
    copied = config.table_path("recommendations_latest")
    shutil.copytree(base_config.table_path("recommendations_latest"), copied)
    spark.sql(f"UPDATE delta.`{copied}` SET run_id = 'second-run'")
    # Redis runs out of memory part way through the second version.
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used + 20_000))
    try:
        with pytest.raises(OnlineExportError, match="failed"):
            run_export(spark, config, RUN_DATE)
    finally:
        client.config_set("maxmemory", "0")
    second = f"{RUN_DATE}.second-run"
    assert client.get("t2:current").decode() == first.version
    assert not client.exists(f"t2:recs:{second}")  # what it wrote was dropped
    assert client.ttl(f"t2:recs:{first.version}") == -1  # and the current one left alone
    done = run_export(spark, config, RUN_DATE)
    assert (done.action, done.version) == ("written", second)
    assert client.get("t2:current").decode() == second
    assert 0 < client.ttl(f"t2:recs:{first.version}") <= config.online.expire_after_s
    assert client.ttl(f"t2:recs:{second}") == -1
    # Going back to the first run while its keys still live: made current, not rewritten.
    back = run_export(spark, _config(base_config.paths.root, redis_url, "t2"), RUN_DATE)
    assert (back.action, back.version) == ("switched", first.version)
    assert client.ttl(f"t2:recs:{first.version}") == -1


def test_an_unreachable_store_is_one_clear_error(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config
) -> None:
    from .servers import free_port

    url = f"redis://app:***@127.0.0.1:{free_port()}/0"  # nothing listens there
    config = _config(base_config.paths.root, url.replace("***", "online-Pa55"), "t3")
    with pytest.raises(OnlineExportError) as raised:
        run_export(spark, config, RUN_DATE)
    assert f"cannot reach {url}" in str(raised.value)  # without the password


def test_export_is_off_without_a_store(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config
) -> None:
    result = run_export(spark, base_config, RUN_DATE)
    assert (result.action, result.store, result.users) == ("off", None, 0)
