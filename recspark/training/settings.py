"""Each candidate's training settings, from the configuration: the ranks' `TrainParams`
(`train_params`, fingerprinted with the input tables' Delta versions, so that a checkpoint resumes
only the same settings and data), where a candidate checkpoints, and `candidate_settings`: what a
kept fit must match to serve a later run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, TypeGuard

from pyspark.sql import SparkSession

from recspark.config import Config, TableKey
from recspark.io.delta import delta_version
from recspark.models.registry import SasrecParams
from recspark.training.params import TrainParams
from recspark.training.schedule import schedule
from recspark.vocab import GradientModel, choices

# Tables a model is trained from; their Delta versions are logged with the model.
INPUT_TABLES: tuple[TableKey, ...] = (
    "train_interactions",
    "user_sequences",
    "user_ids",
    "item_ids",
)
DataVersions = dict[TableKey, int | None]


def is_gradient_model(model: str) -> TypeGuard[GradientModel]:
    """True for the models trained by gradient descent on ranks (not EASE or a blend)."""
    return model in choices(GradientModel)


def table_versions(spark: SparkSession, config: Config) -> DataVersions:
    """The current Delta version of each input table (None where it does not exist)."""
    return {key: delta_version(spark, config.table_path(key)) for key in INPUT_TABLES}


def checkpoint_folder(config: Config, run_date: dt.date) -> Path:
    return Path(config.path(config.train.checkpoint_dir)) / run_date.isoformat()


def checkpoint_path(config: Config, run_date: dt.date, model: GradientModel) -> Path:
    """Where a candidate's training of `run_date` checkpoints (one folder per run date)."""
    return checkpoint_folder(config, run_date) / model / "checkpoint.pt"


def _own(section: Any, key: str, default: Any) -> Any:
    """`section.key` where the model's own section sets it, else the `train.*` default."""
    value = None if section is None else getattr(section, key)
    return default if value is None else value


def train_params(
    config: Config,
    model: GradientModel,
    n_users: int,
    n_items: int,
    n_rows: int,
    run_date: dt.date,
    versions: DataVersions,
) -> TrainParams:
    """The ranks' parameters, fingerprinted: a checkpoint resumes only the same settings and
    data."""
    cfg = config.train
    sasrec = cfg.sasrec
    own = sasrec if model == "sasrec" else None  # SASRec's schedule, where it sets one
    batch_size = sasrec.batch_size if own else cfg.batch_size
    epochs = _own(own, "epochs", cfg.epochs)
    max_samples = sasrec.max_samples if own else cfg.max_samples
    plan = schedule(epochs, n_rows, batch_size * cfg.num_proc, max_samples if n_rows else None)
    base = TrainParams(
        model=model,
        n_users=n_users,
        n_items=n_items,
        embedding_dim=cfg.embedding_dim,
        epochs=plan.epochs,
        batch_size=batch_size,
        learning_rate=_own(own, "learning_rate", cfg.learning_rate),
        weight_decay=_own(own, "weight_decay", cfg.weight_decay),
        seed=cfg.seed,
        steps_per_epoch=plan.steps_per_epoch,
        max_samples=max_samples,
        loss=cfg.loss_for(n_items),
        negatives=cfg.negatives,
        in_batch_negatives=cfg.in_batch_negatives,
        sparse_gradients=cfg.sparse_gradients,
        bf16=cfg.bf16,
        use_history=cfg.use_history,
        history_dropout=cfg.history_dropout,
        sasrec=SasrecParams(
            config.features.sequence_length, sasrec.layers, sasrec.heads, sasrec.dropout
        ),
        patience=_own(own, "patience", cfg.patience),
        min_gain_se=cfg.min_gain_se,
        eval_k=config.evaluate.k,
        reader_pool=cfg.reader_pool,
        checkpoint_path=str(checkpoint_path(config, run_date, model)),
    )
    settings = {**dataclasses.asdict(base), "checkpoint_path": None}
    key = json.dumps(
        {**settings, "launcher": cfg.launcher, "data": versions}, sort_keys=True, default=str
    )
    return dataclasses.replace(base, fingerprint=hashlib.sha256(key.encode()).hexdigest())


# Parameters that follow the data, not the settings: a kept fit serves other data.
_DATA_PARAMS = ("n_users", "n_items", "steps_per_epoch", "checkpoint_path", "fingerprint")


def candidate_settings(config: Config, name: str) -> dict[str, Any]:
    """What shapes a candidate's fit: a kept fit serves later runs only with the same."""
    if is_gradient_model(name):
        params = dataclasses.asdict(train_params(config, name, 0, 0, 0, dt.date.min, {}))
        settings = {k: v for k, v in params.items() if k not in _DATA_PARAMS}
        # `auto` resolves by catalog size (at 0 items: softmax): keep the setting and threshold.
        settings["loss"] = config.train.loss
        settings["sampled_softmax_above"] = config.train.sampled_softmax_above
        return settings
    if name == "ease":
        return {"model": name, "l2": config.train.ease.l2}
    return {"model": name, "seed": config.train.seed, **config.evaluate.als.model_dump()}
