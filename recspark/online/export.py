"""The export stage: the published recommendations (`recommendations_latest`) into an online
key-value store, for applications to read at request time.

Every user's top-K becomes one value (JSON: items best first, their scores, the reason, the run
date and model version) under a version named after the published run (`<run_date>.<run_id>`).
The Spark executors write (one connection per task, `online.batch_size` users per round trip);
the driver only checks the count and, when every user is written, makes the version current in
one step (`OnlineStore.publish`). So:

- a reader never sees two runs mixed (see `recspark.online.store`);
- a failed export leaves the previous version current (what it wrote is dropped);
- a rerun is idempotent: the version already current is left as it is, a complete one that is
  not current (after `recspark rollback`) is made current again without rewriting it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from redis.exceptions import RedisError

from recspark.config import Config
from recspark.credentials import read_secret, redact
from recspark.io.delta import read_table
from recspark.online.store import OnlineStore, RedisStore
from recspark.results import ExportResult
from recspark.schemas import ITEM_ID, RANK, REASON, RUN_DATE, SCORE, USER_ID

PAYLOAD = "payload"


class OnlineExportError(RuntimeError):
    """The export could not be written; the previously current version stays current."""


def user_payloads(recs: DataFrame) -> DataFrame:
    """(user_id, payload): one JSON value per user of `recommendations` rows, best first."""
    ranked = F.array_sort(F.collect_list(F.struct(RANK, ITEM_ID, SCORE)))
    grouped = recs.groupBy(USER_ID).agg(
        ranked.alias("recs"),
        F.first(REASON).alias(REASON),
        F.first(RUN_DATE).cast("string").alias(RUN_DATE),
        F.first("model_version").alias("model_version"),
    )
    payload = F.to_json(
        F.struct(
            F.col(f"recs.{ITEM_ID}").alias("items"),
            F.col(f"recs.{SCORE}").alias("scores"),
            F.col(REASON).alias("reason"),
            F.col(RUN_DATE).alias("run_date"),
            F.col("model_version").alias("model_version"),
        )
    )
    return grouped.select(USER_ID, payload.alias(PAYLOAD))


def _writer(store: RedisStore, version: str) -> Any:
    """The function each task runs: write its users, emit how many."""

    def write(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rows = (
            pair for batch in batches for pair in zip(batch[USER_ID], batch[PAYLOAD], strict=True)
        )
        yield pd.DataFrame({"written": [store.write(version, rows)]})

    return write


def store_of(config: Config) -> RedisStore | None:
    """The configured store (None: `online.store` is null, nothing is exported); its password
    from `online.redis_password_env` or `online.redis_password_file` when either gives one.

    Raises:
        ConfigError: the password file cannot be read.
    """
    online = config.online
    if online.store is None:
        return None
    password = read_secret(
        online.redis_password_env, online.redis_password_file, "online.redis_password_file", config
    )
    return RedisStore(
        url=online.redis_url,
        password=password.value if password else None,
        prefix=online.key_prefix,
        batch_size=online.batch_size,
        keep_versions=online.keep_versions,
        expire_after_s=online.expire_after_s,
    )


def _published_run(latest: DataFrame) -> tuple[str, dt.date, str]:
    """(run_id, run_date, model_version) of the run `recommendations_latest` holds."""
    runs = latest.select("run_id", RUN_DATE, "model_version").distinct().limit(2).collect()
    if len(runs) != 1:
        raise OnlineExportError(
            f"recommendations_latest holds {len(runs)} runs; exactly one is published at a time"
        )
    run_id, run_date, model_version = runs[0]
    return str(run_id), run_date, str(model_version)


def _say(message: str) -> None:
    print(redact(f"[export] {message}"), file=sys.stderr, flush=True)


def export_to(store: OnlineStore, latest: DataFrame, version: str, meta: dict[str, str]) -> int:
    """Write `latest` as `version` and make it current; the users written.

    Raises:
        OnlineExportError: fewer users were written than `latest` holds, or the store failed;
            what was written is dropped and the current version is left as it was.
    """
    payloads = user_payloads(latest)
    expected = payloads.count()
    try:
        store.clear(version)  # a failed attempt's leftovers
        counts = payloads.mapInPandas(_writer(store, version), "written long")  # type: ignore[arg-type]
        written = int(counts.agg(F.sum("written")).first()[0] or 0)  # type: ignore[index]
        if written != expected:
            raise OnlineExportError(f"wrote {written:,} of {expected:,} users")
    except Exception as exc:
        with contextlib.suppress(RedisError):
            store.clear(version)
        if isinstance(exc, OnlineExportError):
            raise
        raise OnlineExportError(f"writing version {version} failed: {redact(_short(exc))}") from exc
    store.publish(version, {**meta, "users": str(written)})
    return written


def _short(exc: BaseException) -> str:
    """The last line of an error (a Spark task's Python traceback is long)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _already_exported(store: OnlineStore, version: str) -> str | None:
    """`kept` when `version` is current, `switched` when it was complete and is made current
    again (a rollback); None when it must be written."""
    if store.current() == version and store.is_complete(version):
        _say(f"version {version} is already current: nothing to write")
        return "kept"
    if store.is_complete(version):
        store.publish(version, {})
        _say(f"version {version} was written before: made current again")
        return "switched"
    return None


def run_export(spark: SparkSession, config: Config, run_date: dt.date) -> ExportResult:
    """Export the published recommendations to the online store (see the module docstring)."""
    store = store_of(config)
    if store is None:
        _say("online.store is null: nothing exported")
        return ExportResult(store=None, version=None, users=0, action="off")
    latest = read_table(spark, config.table_path("recommendations_latest"))
    run_id, published_date, model_version = _published_run(latest)
    version = f"{published_date.isoformat()}.{run_id}"
    try:
        done = _already_exported(store, version)
    except RedisError as exc:
        raise OnlineExportError(f"cannot reach {store.where}: {redact(str(exc))}") from exc
    if done is not None:
        return ExportResult(store=config.online.store, version=version, users=0, action=done)
    meta = {
        "run_id": run_id,
        "run_date": published_date.isoformat(),
        "model_version": model_version,
    }
    written = export_to(store, latest, version, meta)
    _say(f"{written:,} users written to {store.where} as version {version}, now current")
    return ExportResult(store=config.online.store, version=version, users=written, action="written")


__all__ = ["OnlineExportError", "export_to", "run_export", "store_of", "user_payloads"]
