"""MLflow: the tracking store, the experiment, the registry and the champion alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recspark.config import Config


class NoModelError(LookupError):
    """The registry has no model version for what was asked."""


def setup_mlflow(config: Config) -> Any:
    """Point MLflow at the configured store; create the experiment if needed. Returns mlflow."""
    import mlflow

    uri = config.mlflow_tracking_uri
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


def model_version_for_run_date(config: Config, run_date: str) -> Any:
    """The newest registered version trained for `run_date` (tag run_date)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
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
    from mlflow.tracking import MlflowClient

    name, alias = config.mlflow.registered_model, config.mlflow.champion_alias
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise NoModelError(
            f"model {name} has no '{alias}' alias: no model has passed the evaluation gate yet "
            "(run train and evaluate first)"
        ) from exc


def set_champion(config: Config, version: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(
        config.mlflow.registered_model, config.mlflow.champion_alias, version
    )
