"""Candidates retrained only every N runs (`train.retrain_every`), re-evaluated in between.

A candidate listed in `train.retrain_every` with N > 1 keeps its validated fit (the pickled
`ScoringModel`, its network included, before any refit) in its MLflow child run, artifact
`candidate/model.pt`, when it is trained. On the next N - 1 train runs that fit is loaded instead
of trained: its user vectors are recomputed from tonight's histories (for the two-tower and
SASRec), it is measured on tonight's validation users like every other candidate, and it may win
and be served. Its child run says so in the tags `reuse.trained_run` (the run holding the fit),
`reuse.trained_on` (that run's date) and `reuse.age` (train runs since then; 0 when trained).

It is trained anyway when there is no stored fit (the candidate's latest child run did not store
one), when its settings changed (`reuse.settings`, a hash of what shapes the fit), when the stored
fit is not the file that run kept (its seal, tag `reuse.seal`: settings and SHA-256, checked
before it is unpickled), when it cannot be read, or when the catalog or user set shrank (id maps
rebuilt): the reason is printed. Id maps only append, so a stored fit serves a grown catalog: new
items score 0 from it until it is retrained (`ranking.factors.grown`). A rerun of a date counts
as a run.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recspark.config import Config
from recspark.models.base import ScoringModel
from recspark.training.sealed import mismatch, sha256_of

ARTIFACT_DIR = "candidate"
ARTIFACT_FILE = "model.pt"
TAG_TRAINED_RUN = "reuse.trained_run"
TAG_TRAINED_ON = "reuse.trained_on"
TAG_AGE = "reuse.age"
TAG_SETTINGS = "reuse.settings"
TAG_SEAL = "reuse.seal"  # the kept file's fingerprint and SHA-256


@dataclass(frozen=True)
class Kept:
    """Where a candidate's fit is kept, and how old it is (train runs since it was trained)."""

    run_id: str  # the child run holding the fit
    trained_on: str  # its run date
    age: int
    settings: str

    def tags(self) -> dict[str, str]:
        return {
            TAG_TRAINED_RUN: self.run_id,
            TAG_TRAINED_ON: self.trained_on,
            TAG_AGE: str(self.age),
            TAG_SETTINGS: self.settings,
        }


def settings_hash(settings: dict[str, Any]) -> str:
    """A short fingerprint of what shapes a fit (not the data it was fit on)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def every(config: Config, name: str) -> int:
    """How many runs the candidate's fit serves (1: trained every run)."""
    return config.train.retrain_every.get(name, 1)  # type: ignore[call-overload]


def latest_kept(config: Config, name: str, mlflow: Any) -> Kept | None:
    """The candidate's fit kept by its latest child run (None: that run kept none)."""
    from mlflow.tracking import MlflowClient

    experiment = mlflow.get_experiment_by_name(config.mlflow.experiment)
    if experiment is None:
        return None
    runs = MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.candidate = '{name}' and tags.config_env = '{config.env}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs or TAG_TRAINED_RUN not in runs[0].data.tags:
        return None
    tags = runs[0].data.tags
    return Kept(tags[TAG_TRAINED_RUN], tags[TAG_TRAINED_ON], int(tags[TAG_AGE]), tags[TAG_SETTINGS])


def retrain_reason(kept: Kept | None, n_runs: int, settings: str) -> str | None:
    """Why the candidate is trained this run (None: its kept fit serves this run too)."""
    if kept is None:
        return "no kept fit"
    if kept.settings != settings:
        return "its settings changed"
    if kept.age + 1 >= n_runs:
        return f"its fit of {kept.trained_on} has served {kept.age + 1} of {n_runs} runs"
    return None


def store(mlflow: Any, model: ScoringModel) -> None:
    """Log `model` in the active run as the candidate's kept fit, sealed (tag `reuse.seal`:
    the run's settings fingerprint and the file's SHA-256, `recspark.training.sealed`)."""
    import torch

    run_id = mlflow.active_run().info.run_id
    settings = mlflow.get_run(run_id).data.tags.get(TAG_SETTINGS, "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT_FILE
        torch.save(model, path)
        mlflow.log_artifact(str(path), artifact_path=ARTIFACT_DIR)
        mlflow.set_tag(TAG_SEAL, json.dumps({"fingerprint": settings, "sha256": sha256_of(path)}))


def load(kept: Kept) -> ScoringModel:
    """The fit kept in `kept.run_id`, unpickled only once its seal vouches for it (written for
    `kept.settings`, bytes unchanged). A whole pickled `ScoringModel`: docs/guides/security.md.

    Raises:
        ValueError: the seal is missing or does not match (nothing was unpickled).
        OSError, RuntimeError, TypeError: the fit is gone or unreadable.
    """
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    tags = MlflowClient().get_run(kept.run_id).data.tags
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=kept.run_id, artifact_path=f"{ARTIFACT_DIR}/{ARTIFACT_FILE}", dst_path=tmp
        )
        try:
            seal = json.loads(tags.get(TAG_SEAL, ""))
        except ValueError:
            seal = None
        refused = "it has no seal" if seal is None else mismatch(path, kept.settings, seal)
        if refused is not None:
            raise ValueError(f"not loaded: {refused}")
        model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, ScoringModel):
        raise TypeError(f"run {kept.run_id} keeps a {type(model).__name__}, not a ScoringModel")
    return model


def within_catalog(histories: NDArray[Any], n_items: int) -> NDArray[np.int64]:
    """(B, L) left-padded histories with the items at or above `n_items` (newer than a kept
    fit) dropped, the rest moved right in order, padded with `n_items` (that fit's padding)."""
    h = np.asarray(histories, dtype=np.int64)
    valid = h < n_items
    order = np.argsort(valid, axis=1, kind="stable")  # dropped first, the kept in their order
    out = np.take_along_axis(h, order, axis=1)
    out[~np.take_along_axis(valid, order, axis=1)] = n_items
    return out


def capped(
    batches: Iterable[tuple[NDArray[Any], NDArray[Any]]], n_users: int, n_items: int
) -> Iterator[tuple[NDArray[Any], NDArray[np.int64]]]:
    """(users, histories) batches for a network of `n_users` users and `n_items` items."""
    for users, histories in batches:
        users = np.asarray(users)
        keep = users < n_users
        yield users[keep], within_catalog(np.asarray(histories)[keep], n_items)


__all__ = [
    "Kept",
    "capped",
    "every",
    "latest_kept",
    "load",
    "retrain_reason",
    "settings_hash",
    "store",
    "within_catalog",
]
