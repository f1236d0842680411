"""Users' right to erasure and pseudonymised ids, for real: `recspark forget` on a copy of the
shared nightly lakehouse with its recommendations exported to a real redis-server, then the data
files themselves are read to show the rows are gone; pseudonymised ingest with a key from the
environment."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import redis
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark import exit_codes, schemas
from recspark.cli import main
from recspark.config import Config, load_config
from recspark.etl.pseudonym import pseudonym
from recspark.io.delta import read_table
from recspark.online.export import run_export
from recspark.pipeline import run_stages
from recspark.privacy import BY_ID, BY_INDEX
from recspark.results import PipelineRun
from recspark.schemas import FORGOTTEN

from .conftest import CONF_DIR, RUN_DATE

pytestmark = pytest.mark.integration
KEY = "k" * 16 + "a-test-key-not-a-secret-0123456789"


def _settings(root: Path, redis_url: str) -> list[str]:
    return [
        f"paths.root={root}",
        "catalog.enabled=false",
        "online.store=redis",
        f"online.redis_url={redis_url}",
        "online.key_prefix=forget",
    ]


def _files(spark: SparkSession, path: str) -> DataFrame:
    """Every data file under a table's folder, read as Parquet, whatever the Delta log says."""
    return (
        spark.read.option("recursiveFileLookup", "true")
        .option("pathGlobFilter", "part-*.parquet")
        .parquet(path)
    )


def _cli(config: Config, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    common = ["--conf", str(CONF_DIR), "--env", "test"]
    for setting in _settings(Path(config.paths.root), config.online.redis_url):
        common += ["--set", setting]
    capsys.readouterr()
    code = main([*argv, *common])
    out = capsys.readouterr()
    return code, out.out, out.err


def _fresh_rows(spark: SparkSession, config: Config, users: list[str]) -> None:
    """A `fresh_recommendations` table with one refreshed list per user."""
    now = dt.datetime(2026, 1, 2, 10, 0)
    rows = [
        (u, ["i1"], [1.0], "personalized", now, now, 1, 0, True, "1", "v", 0, now.date())
        for u in users
    ]
    spark.createDataFrame(rows, schemas.FRESH_RECOMMENDATIONS).write.format("delta").partitionBy(
        schemas.REFRESH_DATE
    ).save(config.table_path("fresh_recommendations"))


def test_forget_removes_users_everywhere_and_keeps_their_indices(
    spark: SparkSession,
    nightly_run: PipelineRun,
    base_config: Config,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lakehouse = Path(base_config.table_path("interactions")).parent
    config = load_config(CONF_DIR, "test", _settings(tmp_path, redis_url))
    shutil.copytree(lakehouse, Path(config.table_path("interactions")).parent)
    shutil.copytree(base_config.raw_path, config.raw_path)  # the item catalog, for featurize
    run_export(spark, config, RUN_DATE)
    recs = read_table(spark, config.table_path("recommendations_latest"))
    users = [r[0] for r in recs.select("user_id").distinct().orderBy("user_id").limit(2).collect()]
    quarantined = (
        read_table(spark, config.table_path("interactions_quarantine"))
        .filter(F.col("user_id").isNotNull() & ~F.col("user_id").isin(users))
        .select("user_id")
        .first()
    )
    assert quarantined is not None
    gone = [*users, quarantined[0]]
    _fresh_rows(spark, config, [*gone, "someone-else"])  # as the refresh stream leaves them
    user_map = read_table(spark, config.table_path("user_ids"))
    theirs = user_map.filter(F.col("user_id").isin(gone)).select("user_index").collect()
    indices = [r[0] for r in theirs]
    n_map, max_index = user_map.count(), user_map.agg(F.max("user_index")).first()[0]
    by_id = {k: read_table(spark, config.table_path(k)) for k in BY_ID}
    by_index = {k: read_table(spark, config.table_path(k)) for k in BY_INDEX}
    before = {
        k: (df.count(), df.filter(F.col("user_id").isin(gone)).count()) for k, df in by_id.items()
    }
    before |= {
        k: (df.count(), df.filter(F.col("user_index").isin(indices)).count())
        for k, df in by_index.items()
    }
    assert before["interactions"][1] > 0 and before["recommendations_latest"][1] > 0
    assert before["train_interactions"][1] > 0
    store = redis.Redis.from_url(redis_url)
    version = store.get("forget:current").decode()
    assert store.hget(f"forget:recs:{version}", users[0]) is not None

    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join([*gone, "never-seen-user", ""]) + "\n", encoding="utf-8")
    code, out, _ = _cli(config, capsys, "forget", "--users-file", str(ids_file))
    assert code == 0, out
    assert "4 users asked, 3 in the id map" in out

    for key in [*by_id, *by_index]:
        path = config.table_path(key)
        column, values = ("user_id", gone) if key in by_id else ("user_index", indices)
        total, theirs = before[key]
        after = read_table(spark, path)
        assert after.filter(F.col(column).isin(values)).count() == 0, key
        assert after.count() == total - theirs, key  # nobody else's rows
        # physically gone: no data file left in the folder holds them (VACUUM, retention 0)
        assert _files(spark, path).filter(F.col(column).isin(values)).count() == 0, key
        # and no id went into the Delta log's record of the deletes
        history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").limit(3).collect()
        logged = json.dumps([r["operationParameters"] for r in history])
        assert not any(user in logged for user in gone), key
    quarantine = read_table(spark, config.table_path("interactions_quarantine"))
    raw = quarantine.filter(F.col("raw_record").isNotNull()).select("raw_record").collect()
    assert not any(user in (r[0] or "").split(",") for r in raw for user in gone)

    after_map = read_table(spark, config.table_path("user_ids"))
    assert after_map.count() == n_map
    tombstones = after_map.filter(F.col("user_index").isin(indices)).collect()
    assert sorted(r["user_id"] for r in tombstones) == sorted(
        f"{FORGOTTEN}{r['user_index']}" for r in tombstones
    )
    assert store.hget(f"forget:recs:{version}", users[0]) is None
    others = recs.filter(~F.col("user_id").isin(gone)).select("user_id").first()[0]
    assert store.hget(f"forget:recs:{version}", others) is not None

    audit = read_table(spark, config.table_path("forget_requests")).collect()
    assert len(audit) == 1 and audit[0]["status"] == "completed"
    assert (audit[0]["users_requested"], audit[0]["users_found"]) == (4, 3)
    assert audit[0]["rows_deleted"]["interactions"] == before["interactions"][1]
    assert not any(user in json.dumps(audit[0].asDict(), default=str) for user in gone)

    # the next night: featurize rebuilds without them; their indices stay taken, never reused
    run_stages(spark, config, RUN_DATE, ["featurize"])
    refreshed = read_table(spark, config.table_path("user_ids"))
    assert refreshed.agg(F.max("user_index")).first()[0] == max_index
    assert refreshed.filter(F.col("user_id").isin(gone)).count() == 0
    for key in ("train_interactions", "user_sequences", "user_features"):
        df = read_table(spark, config.table_path(key), RUN_DATE)
        assert df.filter(F.col("user_index").isin(indices)).count() == 0, key

    code, _, err = _cli(config, capsys, "forget")
    assert code == exit_codes.USAGE and "--user" in err


def test_pseudonymised_ingest_keeps_no_raw_id(
    spark: SparkSession,
    nightly_run: PipelineRun,
    base_config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = [f"paths.root={tmp_path}", "catalog.enabled=false", "ingest.pseudonymise_users=true"]
    config = load_config(CONF_DIR, "test", settings)
    shutil.copytree(base_config.raw_path, config.raw_path)
    monkeypatch.delenv("RECSPARK_PSEUDONYM_KEY", raising=False)
    argv = ["run", "--stage", "ingest", "--run-date", RUN_DATE.isoformat()]
    argv += ["--conf", str(CONF_DIR), "--env", "test"]
    for setting in settings:
        argv += ["--set", setting]
    capsys.readouterr()
    assert main(argv) == exit_codes.USAGE
    assert "RECSPARK_PSEUDONYM_KEY" in capsys.readouterr().err

    monkeypatch.setenv("RECSPARK_PSEUDONYM_KEY", KEY)
    run_stages(spark, config, RUN_DATE, ["ingest"])
    plain = read_table(spark, base_config.table_path("interactions"))
    hidden = read_table(spark, config.table_path("interactions"))
    assert hidden.count() == plain.count()
    one = plain.select("user_id").orderBy("user_id").first()[0]
    assert hidden.filter(F.col("user_id") == one).count() == 0
    assert hidden.filter(F.col("user_id") == pseudonym(KEY.encode(), one)).count() == (
        plain.filter(F.col("user_id") == one).count()
    )
    assert hidden.filter(~F.col("user_id").rlike("^[0-9a-f]{64}$")).count() == 0
    quarantine = read_table(spark, config.table_path("interactions_quarantine"))
    assert quarantine.filter(F.col("raw_record").isNotNull()).count() == 0
    runs = read_table(spark, config.table_path("pipeline_runs")).collect()
    assert not any(KEY in (r["details"] or "") for r in runs)

    # forget takes the ids as the source sends them
    config_text = [f"--set={s}" for s in settings]
    capsys.readouterr()
    code = main(["forget", "--user", one, "--conf", str(CONF_DIR), "--env", "test", *config_text])
    assert code == 0, capsys.readouterr().err
    assert "rows deleted: interactions " in capsys.readouterr().out
    hidden = read_table(spark, config.table_path("interactions"))
    assert hidden.filter(F.col("user_id") == pseudonym(KEY.encode(), one)).count() == 0
    assert hidden.count() == plain.count() - plain.filter(F.col("user_id") == one).count()
