"""The train stage's MLflow records: one parent run per stage with a child run per candidate (its
parameters, epochs, validation NDCG, and the fits kept for later runs or handed to evaluate), and
the winner logged as the pyfunc that answers by user id (`recspark.models.served`), with the id
maps and the serving tables (`recspark.training.serving_tables`) as artifacts, then registered
under `mlflow.registered_model`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from recspark.config import Config, TableKey
from recspark.credentials import redact, redacted_config
from recspark.io.delta import read_table
from recspark.results import EpochStats
from recspark.runs import code_version, config_hash
from recspark.tracking import CANDIDATE_METRIC, client_of, setup_mlflow
from recspark.training import baseline_fits, reuse
from recspark.training.candidates import Plan, Trained
from recspark.training.serving_tables import write_serving_tables
from recspark.training.settings import DataVersions

# The user id of every registered model's input example: no user's (the model answers it with the
# popular fallback), so no real id is stored with a model.
EXAMPLE_USER_ID = "example-user"


def _shared_scratch(config: Config) -> Any:
    """A scratch folder under `paths.work`, removed after use: Spark's executors write there and
    the driver reads it, so on a cluster it must be the shared mount `paths.work` is (a local
    temporary folder of the driver is not where executors on other nodes write)."""
    base = Path(config.work_path) / "registration"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=base)


def _log_id_maps(spark: SparkSession, config: Config, mlflow: Any) -> None:
    """The id maps (original id <-> index) the model's vectors are indexed by, as Parquet."""
    id_maps: tuple[TableKey, ...] = ("user_ids", "item_ids")
    with _shared_scratch(config) as tmp:
        for key in id_maps:
            target = Path(tmp) / key
            read_table(spark, config.table_path(key)).coalesce(1).write.parquet(
                target.as_uri(), mode="overwrite"
            )
            for part in target.glob("part-*.parquet"):
                mlflow.log_artifact(str(part), artifact_path=f"id_maps/{key}")


def run_tags(
    config: Config, run_date: dt.date, trained: Trained, versions: DataVersions
) -> dict[str, str]:
    """The tags of a training run: what it was trained on, with what code and config."""
    return {
        "run_date": run_date.isoformat(),
        "model_name": trained.model.model_name,
        "config_env": config.env,
        "config_hash": config_hash(config),
        "code_version": code_version(),
        "device": trained.device,
        **{f"data_version.{k}": str(v) for k, v in versions.items()},
        **{f"data_path.{k}": redact(config.table_path(k)) for k in versions},
    }


def _log_history(mlflow: Any, history: tuple[EpochStats, ...]) -> None:
    for row in history:
        mlflow.log_metric("train_loss", row.loss, step=row.epoch)
        mlflow.log_metric("samples_per_s", row.samples_per_s, step=row.epoch)
        mlflow.log_metric("sent_bytes_per_step", row.sent_bytes_per_step, step=row.epoch)
        if row.val_ndcg == row.val_ndcg:  # not NaN
            mlflow.log_metric("val_ndcg", row.val_ndcg, step=row.epoch)
            mlflow.log_metric("val_ndcg_se", row.val_ndcg_se, step=row.epoch)


def _log_candidate(mlflow: Any, run_id: str, name: str, trained: Trained, k: int) -> None:
    """One candidate's child run: its params, epochs, validation NDCG and notes; a fit to keep
    for later runs (`train.retrain_every`) and where it is kept."""
    mlflow.log_params({key: redact(str(value)) for key, value in trained.params.items()})
    notes = {f"note.{key}": redact(value) for key, value in trained.notes.items()}
    mlflow.set_tags({"candidate": name, **notes})
    if trained.kept is not None:
        kept = (
            trained.kept
            if trained.kept.run_id
            else dataclasses.replace(trained.kept, run_id=run_id)
        )
        mlflow.set_tags(kept.tags())
    if trained.store is not None:
        reuse.store(mlflow, trained.store)
    if trained.baseline is not None:
        baseline_fits.store(mlflow, *trained.baseline)
    _log_history(mlflow, trained.history)
    mlflow.log_metric("train_seconds", trained.seconds)
    if trained.val_ndcg == trained.val_ndcg:
        mlflow.log_metric(f"candidate_val_ndcg_at_{k}", trained.val_ndcg)


def model_requirements() -> list[str]:
    """What loading a registered model needs besides recspark itself (its classes are pickled
    by reference: install its wheel, `make package`, where the model is served)."""
    import importlib.metadata as metadata

    needed = ("torch", "numpy", "pandas", "pyarrow", "mlflow")
    return [f"{name}=={metadata.version(name)}" for name in needed]


def _register(
    spark: SparkSession, config: Config, mlflow: Any, trained: Trained, run_date: dt.date
) -> str:
    """Log the winner in the current (child) run as the pyfunc that answers by user id
    (`recspark.models.served`), with the model and the run's serving tables as its artifacts,
    and register it; its version."""
    import mlflow.pyfunc
    import pandas as pd
    import torch

    from recspark.models import served

    name = config.mlflow.registered_model
    mlflow.log_dict(redacted_config(config), "config.json")  # secrets as ***
    _log_id_maps(spark, config, mlflow)
    with _shared_scratch(config) as tmp:
        folder = Path(tmp)
        model_file = folder / "scoring_model.pt"
        torch.save(trained.model, model_file)
        artifacts = {
            served.MODEL_ARTIFACT: str(model_file),
            **write_serving_tables(spark, config, run_date, folder),
        }
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=served.UserIdRecommender(config.score.k),
            artifacts=artifacts,
            signature=served.signature(),
            input_example=pd.DataFrame({served.USER_ID: [EXAMPLE_USER_ID], "k": [3]}),
            registered_model_name=name,
            # Stated, not inferred: inference imports the model in a subprocess (4 s a run).
            pip_requirements=model_requirements(),
        )
    version = str(info.registered_model_version)
    client = client_of(config)
    client.set_model_version_tag(name, version, "run_date", run_date.isoformat())
    client.set_model_version_tag(name, version, "model_name", trained.model.model_name)
    return version


def log_to_mlflow(
    spark: SparkSession,
    config: Config,
    run_date: dt.date,
    trained: Mapping[str, Trained],
    best: str,
    plan: Plan,
    versions: DataVersions,
) -> tuple[str, str]:
    """One parent run for the stage, a child run per candidate; the winner registered.

    Returns:
        (MLflow run id of the winner's child run, registered model version).
    """
    mlflow = setup_mlflow(config)
    k = config.evaluate.k
    winner_run, version = "", ""
    with mlflow.start_run(run_name=f"train-{run_date}"):
        mlflow.set_tags(
            {**run_tags(config, run_date, trained[best], versions), "selected": best}
            | {f"skipped.{name}": why for name, why in plan.skipped.items()}
        )
        for name, one in trained.items():
            if one.val_ndcg == one.val_ndcg:
                mlflow.log_metric(f"{CANDIDATE_METRIC}.{name}", one.val_ndcg)
            with mlflow.start_run(run_name=f"{name}-{run_date}", nested=True) as child:
                mlflow.set_tags(run_tags(config, run_date, one, versions))
                _log_candidate(mlflow, child.info.run_id, name, one, k)
                if name == best:
                    winner_run = child.info.run_id
                    version = _register(spark, config, mlflow, one, run_date)
    return winner_run, version
