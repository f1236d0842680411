"""MLflow: the tracking store, the experiment, the registry and the champion alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recspark.config import Config
from recspark.credentials import redact

# The train stage's parent run's metric of each candidate: `candidate_val_ndcg.<name>`
# (NDCG@evaluate.k), which the evaluate stage reads back.
CANDIDATE_METRIC = "candidate_val_ndcg"


class NoModelError(LookupError):
    """The registry has no model version for what was asked."""


class TrackingUnreachableError(ConnectionError):
    """The configured MLflow tracking server does not answer."""


def check_tracking_server(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, naming the URI, when an http(s) tracking server does not answer its health check.

    (MLflow's own client retries for minutes before it gives up.)
    """
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answers (a server or proxy without /health)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnreachableError(
            redact(f"mlflow.tracking_uri: the tracking server at {uri} does not answer ({reason})")
        ) from exc


def setup_mlflow(config: Config) -> Any:
    """Point MLflow at the configured store; create the experiment if needed. Returns mlflow.

    Raises:
        TrackingUnreachableError: an http(s) tracking server does not answer.
    """
    import mlflow

    uri = config.mlflow_tracking_uri
    check_tracking_server(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(config.mlflow.experiment) is None:
        if uri.startswith(("http://", "https://", "databricks")):
            # A tracking server decides where artifacts go (its --artifacts-destination).
            mlflow.create_experiment(config.mlflow.experiment)
        else:
            artifacts = config.mlflow_artifact_root
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            mlflow.create_experiment(
                config.mlflow.experiment, artifact_location=Path(artifacts).as_uri()
            )
    mlflow.set_experiment(config.mlflow.experiment)
    return mlflow


def client_of(config: Config) -> Any:
    """An MlflowClient of the configured tracking store and registry, whatever the process's
    MLflow state: a stage that asks the registry before `setup_mlflow` (a fresh `jobs/*.py`
    process) asks the configured store, not MLflow's default (`./mlruns`)."""
    from mlflow.tracking import MlflowClient

    uri = config.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_version_for_run_date(config: Config, run_date: str) -> Any:
    """The newest registered version trained for `run_date` (tag run_date)."""
    client = client_of(config)
    name = config.mlflow.registered_model
    versions = client.search_model_versions(f"name = '{name}'")
    matching = [v for v in versions if v.tags.get("run_date") == run_date]
    if not matching:
        raise NoModelError(
            f"no version of model {name} was trained for run date {run_date}: "
            "run the train stage first"
        )
    return max(matching, key=lambda v: int(v.version))


def champion_version(config: Config) -> Any:
    """The version the champion alias points at."""
    from mlflow.exceptions import MlflowException

    name, alias = config.mlflow.registered_model, config.mlflow.champion_alias
    try:
        return client_of(config).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise NoModelError(
            f"model {name} has no '{alias}' alias: no model has passed the evaluation gate yet "
            "(run train and evaluate first)"
        ) from exc


PROMOTED_AT, DEMOTED_AT = "champion_promoted_at", "champion_demoted_at"


def set_champion(config: Config, version: str) -> None:
    """Point the champion alias at `version`, remembering when (for `demote_champion`)."""
    import datetime as dt

    client = client_of(config)
    name = config.mlflow.registered_model
    client.set_registered_model_alias(name, config.mlflow.champion_alias, version)
    client.set_model_version_tag(name, version, PROMOTED_AT, dt.datetime.now(dt.UTC).isoformat())
    if DEMOTED_AT in client.get_model_version(name, version).tags:
        client.delete_model_version_tag(name, version, DEMOTED_AT)


def promote(config: Config, version: str) -> Any:
    """Make `version` the champion by hand (skipping the gate); returns the version promoted.

    Raises:
        NoModelError: the registry has no such version.
    """
    from mlflow.exceptions import MlflowException

    name = config.mlflow.registered_model
    try:
        client_of(config).get_model_version(name, version)
    except MlflowException as exc:
        raise NoModelError(f"model {name} has no version {version!r}") from exc
    set_champion(config, version)
    return champion_version(config)


def demote(config: Config) -> tuple[Any, Any | None]:
    """Take the alias from the champion and give it back to the previous champion.

    The previous champion is the version promoted most recently before, and not demoted since.
    Returns (demoted version, new champion or None when no earlier champion exists: then the
    alias is removed and scoring refuses to run until a model passes the gate or is promoted).
    """
    import datetime as dt

    client = client_of(config)
    name, alias = config.mlflow.registered_model, config.mlflow.champion_alias
    current = champion_version(config)
    client.set_model_version_tag(
        name, current.version, DEMOTED_AT, dt.datetime.now(dt.UTC).isoformat()
    )
    earlier = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if PROMOTED_AT in v.tags and DEMOTED_AT not in v.tags and v.version != current.version
    ]
    if not earlier:
        client.delete_registered_model_alias(name, alias)
        return current, None
    previous = max(earlier, key=lambda v: v.tags[PROMOTED_AT])
    client.set_registered_model_alias(name, alias, previous.version)
    return current, client.get_model_version(name, previous.version)
