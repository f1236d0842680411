"""Credentials: where secrets come from, and how they are kept out of everything recspark prints
or writes.

Secrets come from the environment or a secret file (`read_secret`: the pseudonym key, the Redis
password), or, discouraged, inside a setting: a URL with a password (`online.redis_url`,
`mlflow.tracking_uri`, `catalog.metastore_uri`, a source or lakehouse URL) or a `spark.conf`
entry whose key names a secret (as Spark's own `spark.redaction.regex` does). `redact` is applied
at every exit: printed lines, the CLI's one-line errors, the error kept in `pipeline_runs`,
MLflow tags and the logged configuration (`redacted_config`), the run summary. It replaces URL
passwords and secret-looking query parameters by `***`, and every secret this process has read
or been configured with (`remember`) wherever it appears.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recspark.config import Config, ConfigError

REDACTED = "***"

# What names a secret in a `spark.conf` (or any setting's) key; Spark's default redaction regex
# is `(?i)secret|password|token|access[.]?key`. `jaas`: a Kafka client's sasl.jaas.config holds its
# password (stream.kafka.options).
_SECRET_WORDS = r"secret|password|passwd|token|credential|jaas|(?:access|account|private)[._-]?key"
SECRET_KEY = re.compile(f"(?i){_SECRET_WORDS}")

# scheme://user:PASSWORD@host (the user may be empty: redis://:PASSWORD@host).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)([^\s@]+)(?=@)")
# ?password=... &token=... in a URL's query string.
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|token|access_token|secret|api_key|apikey|sig|signature)=)"
    r"([^&;#\s]+)"
)
# key=value of a secret-named key, as on a spark-submit line (`spark.x.secret.key=...`).
_KEY_VALUE = re.compile(rf"(?i)(\b[\w.-]*(?:{_SECRET_WORDS})[\w.-]*=)([^\s,;&\"']+)")
MIN_REMEMBERED_CHARS = 4  # shorter values would redact ordinary text

_remembered: set[str] = set()


def redact(text: str) -> str:
    """`text` with URL passwords, secret query parameters and secret `key=value` values, and
    every remembered secret, replaced by `***`."""
    for secret in sorted(_remembered, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}", text)
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    return _KEY_VALUE.sub(rf"\1{REDACTED}", text)


def remember(secret: str | None) -> None:
    """Redact `secret` wherever it appears from now on in this process (values shorter than
    MIN_REMEMBERED_CHARS, and booleans, are ignored: they would redact ordinary words)."""
    value = (secret or "").strip()
    if len(value) >= MIN_REMEMBERED_CHARS and value.lower() not in ("true", "false", "none"):
        _remembered.add(value)


def _url_secrets(text: str) -> list[str]:
    return [m.group(2) for m in _URL_PASSWORD.finditer(text)] + [
        m.group(2) for m in _QUERY_SECRET.finditer(text)
    ]


def _redacted(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        return {k: _redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, key) for v in value]
    if isinstance(value, str):
        return REDACTED if SECRET_KEY.search(key) and not _names_a_source(key) else redact(value)
    return value


def _names_a_source(key: str) -> bool:
    """Settings that say where a secret is read from (`*_env`, `*_file`), not the secret."""
    return key.endswith(("_env", "_file"))


def redacted_config(config: Config) -> dict[str, Any]:
    """The configuration as JSON-ready data with every secret replaced by `***`: what may be
    logged (MLflow's `config.json`). Values of keys that name a secret (`spark.conf`'s
    `...secret.key`, `...password`) go whole; URLs lose their password."""
    return dict(_redacted(config.model_dump(mode="json")))


def remember_config(config: Config) -> None:
    """Remember the secrets held in `config`'s settings (see `remember`)."""

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if SECRET_KEY.search(key) and not _names_a_source(key):
                remember(value)
            for secret in _url_secrets(value):
                remember(secret)

    walk(config.model_dump(mode="json"))


@dataclass(frozen=True)
class Secret:
    """A secret and where it was read (for messages: never the value)."""

    value: str
    where: str


def read_secret(
    env_name: str, file: str | None, file_setting: str, config: Config | None = None
) -> Secret | None:
    """The secret of environment variable `env_name` or, when that is unset or empty, the first
    line of the secret file `file` (the setting `file_setting`, resolved against paths.root of
    `config`); None when neither gives one. What is read is remembered for redaction.

    Raises:
        ConfigError: the file cannot be read.
    """
    value = os.environ.get(env_name, "")
    if value:
        remember(value)
        return Secret(value, f"environment variable {env_name}")
    if not file:
        return None
    path = Path(config.path(file) if config else file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{file_setting} {path}: cannot be read ({exc.strerror})") from None
    value = lines[0].strip() if lines else ""
    remember(value)
    return Secret(value, f"{file_setting} {path}") if value else None


__all__ = [
    "REDACTED",
    "SECRET_KEY",
    "Secret",
    "read_secret",
    "redact",
    "redacted_config",
    "remember",
    "remember_config",
]
