"""Secrets: read from the environment or a secret file, and redacted from every line, error and
logged configuration (`recspark/credentials.py`). Unit tests, no JVM; the Redis ones use the
tests' password-protected redis-server. The whole pipeline is scanned for planted passwords in
tests/test_airflow_dag.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from recspark.config import ConfigError, load_config
from recspark.credentials import REDACTED, read_secret, redact, redacted_config, remember
from recspark.online.export import store_of

from .conftest import CONF_DIR

PW = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:s3cr3t-Pa55@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        (
            "cannot reach rediss://app:s3cr3t-Pa55@cache:6380/1: refused",
            "cannot reach rediss://app:***@cache:6380/1: refused",
        ),
        ("http://mlflow:s3cr3t-Pa55@host/api", "http://mlflow:***@host/api"),
        ("thrift://hive:s3cr3t-Pa55@meta:9083", "thrift://hive:***@meta:9083"),
        ("s3a://AKIAX:s3cr3t/Pa55@bucket/lake", "s3a://AKIAX:***@bucket/lake"),
        ("https://h/x?user=a&token=s3cr3t-Pa55&b=1", "https://h/x?user=a&token=***&b=1"),
        (
            "--conf spark.hadoop.fs.s3a.secret.key=s3cr3t-Pa55 x",
            "--conf spark.hadoop.fs.s3a.secret.key=*** x",
        ),
        # nothing secret: unchanged
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://app@127.0.0.1:6379/0", "redis://app@127.0.0.1:6379/0"),
        ("http://host:8080/path and a@b", "http://host:8080/path and a@b"),
        ("/data/lake/interactions", "/data/lake/interactions"),
    ],
)
def test_redact_hides_url_passwords_tokens_and_secret_settings(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_remembered_secret_is_redacted_anywhere() -> None:
    remember("tok-9f8e7d6c")
    assert redact("AUTH tok-9f8e7d6c failed") == f"AUTH {REDACTED} failed"
    remember("ab")  # too short to redact without mangling ordinary text
    assert redact("about") == "about"


def test_the_logged_configuration_holds_no_secret(tmp_path: Path) -> None:
    """Every credential-bearing setting gets a password; the dump MLflow logs has none of them,
    and keeps everything else."""
    config = load_config(
        CONF_DIR,
        "test",
        [
            f"paths.root={tmp_path}",
            f"online.redis_url=redis://:{PW}-r@127.0.0.1:6379/0",
            f"mlflow.tracking_uri=https://ml:{PW}-m@mlflow.example:443",
            "catalog.metastore=external",
            f"catalog.metastore_uri=thrift://hive:{PW}-t@meta:9083",
            f"source.path=s3a://AKIA:{PW}-s@bucket/events/{{run_date}}",
            f"source.item_catalog=https://cdn.example/items.csv?sig={PW}-c",
            f"paths.lakehouse=abfss://lake:{PW}-l@account.dfs.core.windows.net/lake",
            f"spark.conf.spark.hadoop.fs.s3a.secret.key={PW}-k",
            f"spark.conf.spark.hadoop.fs.azure.account.key.x.dfs.core.windows.net={PW}-a",
            f"spark.conf.spark.hadoop.fs.s3a.session.token={PW}-o",
            "spark.conf.spark.driver.memory=3g",
        ],
    )
    dumped = json.dumps(redacted_config(config))
    assert PW not in dumped
    logged = redacted_config(config)
    assert logged["online"]["redis_url"] == "redis://:***@127.0.0.1:6379/0"
    assert logged["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == REDACTED
    assert logged["spark"]["conf"]["spark.driver.memory"] == "3g"
    assert logged["online"]["redis_password_env"] == "RECSPARK_REDIS_PASSWORD"
    assert logged["train"] == config.train.model_dump(mode="json")


def test_a_secret_comes_from_the_environment_first_then_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-the-file\nignored\n")
    monkeypatch.delenv("RECSPARK_TEST_PW", raising=False)
    assert read_secret("RECSPARK_TEST_PW", None, "x.file") is None
    got = read_secret("RECSPARK_TEST_PW", str(secret_file), "x.file")
    assert got is not None and (got.value, got.where) == ("from-the-file", f"x.file {secret_file}")
    assert redact("from-the-file") == REDACTED
    monkeypatch.setenv("RECSPARK_TEST_PW", "from-the-env")
    got = read_secret("RECSPARK_TEST_PW", str(secret_file), "x.file")
    assert got is not None and got.value == "from-the-env"
    monkeypatch.delenv("RECSPARK_TEST_PW")
    with pytest.raises(ConfigError, match=r"x\.file .*missing: cannot be read"):
        read_secret("RECSPARK_TEST_PW", str(tmp_path / "missing"), "x.file")


def test_the_redis_password_comes_from_a_secret_file_or_the_environment(
    redis_url: str, redis_password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's URL without a password is refused; with the password from the file or the
    environment it answers, and its printable form has no password."""
    bare = redis_url.replace(f":{redis_password}@", "")
    assert redis_password not in bare
    monkeypatch.delenv("RECSPARK_REDIS_PASSWORD", raising=False)
    settings = [f"paths.root={tmp_path}", "online.store=redis", f"online.redis_url={bare}"]
    store = store_of(load_config(CONF_DIR, "test", settings))
    assert store is not None
    with pytest.raises(redis.exceptions.AuthenticationError):
        store.current()
    (tmp_path / "redis.pw").write_text(redis_password + "\n")
    with_file = [*settings, "online.redis_password_file=redis.pw"]  # relative to paths.root
    store = store_of(load_config(CONF_DIR, "test", with_file))
    assert store is not None and store.current() is None
    assert redis_password not in repr(store)
    # A wrong password in the URL loses to the one from the environment.
    wrong = redis_url.replace(redis_password, "not-the-password")
    monkeypatch.setenv("RECSPARK_REDIS_PASSWORD", redis_password)
    store = store_of(load_config(CONF_DIR, "test", [*settings[:2], f"online.redis_url={wrong}"]))
    assert store is not None and store.current() is None
    assert store.where == redis_url.replace(redis_password, REDACTED)
