"""Pseudonymised user ids: HMAC-SHA256 of each id under a secret key (`ingest.pseudonymise_users`).

The key never passes through config, logs or MLflow: it is read from the environment variable
`ingest.pseudonym_key_env` or, when that is unset, from the first line of the secret file
`ingest.pseudonym_key_file` (`recspark.credentials.read_secret`), and reaches the executors
inside the (pickled) function that applies it, not as a literal in a Spark plan. What it
protects and what it does not: docs/guides/privacy.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.functions import pandas_udf

from recspark.config import Config, ConfigError, IngestConfig
from recspark.credentials import read_secret
from recspark.schemas import RAW_RECORD, USER_ID

MIN_KEY_CHARS = 32


def pseudonym_key(ingest: IngestConfig, root: Config | None = None) -> bytes:
    """The HMAC key from the environment or the secret file (relative to paths.root of `root`).

    Raises:
        ConfigError: no key, or one shorter than MIN_KEY_CHARS characters.
    """
    env, file = ingest.pseudonym_key_env, ingest.pseudonym_key_file
    secret = read_secret(env, file, "ingest.pseudonym_key_file", root)
    key = secret.value if secret else ""
    if len(key) < MIN_KEY_CHARS:
        where = secret.where if secret else f"environment variable {env}"
        state = "is not set" if not key else f"holds fewer than {MIN_KEY_CHARS} characters"
        raise ConfigError(
            f"ingest.pseudonymise_users is on but the key ({where}) {state}: set "
            f"{env} or ingest.pseudonym_key_file to a secret of at least "
            f"{MIN_KEY_CHARS} characters"
        )
    return key.encode("utf-8")


def pseudonym(key: bytes, user_id: str) -> str:
    """HMAC-SHA256(key, user_id) in hex: what a user id becomes under pseudonymisation."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def pseudonym_column(column: Column, key: bytes) -> Column:
    """`pseudonym` of every non-null value of a string column (nulls stay null)."""

    def apply(ids: pd.Series) -> pd.Series:
        return ids.map(lambda value: None if value is None else pseudonym(key, value))

    udf: Callable[[Column], Column] = pandas_udf(apply, "string")  # type: ignore[call-overload]
    return udf(column)


def pseudonymised(df: DataFrame, config: Config) -> DataFrame:
    """`df` (checked events) with user ids pseudonymised (of the id without surrounding spaces,
    as ingest keeps it) and raw records dropped, when `ingest.pseudonymise_users` is on; `df`
    unchanged otherwise."""
    if not config.ingest.pseudonymise_users:
        return df
    key = pseudonym_key(config.ingest, config)
    out = df.withColumn(USER_ID, pseudonym_column(F.trim(F.col(USER_ID)), key))
    if RAW_RECORD in df.columns:
        out = out.withColumn(RAW_RECORD, F.lit(None).cast("string"))
    return out


__all__ = ["pseudonym", "pseudonym_column", "pseudonym_key", "pseudonymised"]
