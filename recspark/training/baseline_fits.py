"""The train stage's closed-form fits handed to the evaluate stage as its baselines.

A model in both `train.candidates` and `evaluate.baselines` (ALS, EASE) would otherwise be fit
twice a night on nearly the same pairs: once as a candidate (the train split less the validation
items) and again as the evaluate stage's baseline (the whole train split). With
`evaluate.reuse_candidate_fits` (the default) the train stage logs the fit it has in the
candidate's MLflow child run (artifact `baseline/factors.pt`, tag `baseline_fit`):

- `refit`: the fit on every train pair, where the selected model serves it (`train.refit`);
  the same pairs a fresh baseline would be fit on;
- `validated`: the candidate as validated, fit without the validation items (at most
  `train.validation_users` x `train.validation_items_per_user` pairs fewer).

The evaluate stage scores that fit instead of fitting the baseline again (at 10M events, ALS's
second fit was ~900 s of a 1,070 s evaluate stage). A candidate served from a fit kept by an
earlier run (`train.retrain_every`) is not handed over: it was fit on another night's split.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recspark.config import Config
from recspark.ranking.factors import FactorSet
from recspark.training.sealed import sha256_of

ARTIFACT_DIR = "baseline"
ARTIFACT_FILE = "factors.pt"
TAG = "baseline_fit"
TAG_SHA256 = "baseline_fit.sha256"  # the logged file's, checked before it is unpickled


def store(mlflow: Any, factors: FactorSet, kind: str) -> None:
    """Log `factors` in the active (candidate's child) run as the baseline fit of `kind`."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT_FILE
        torch.save(factors, path)
        mlflow.log_artifact(str(path), artifact_path=ARTIFACT_DIR)
        mlflow.set_tag(TAG_SHA256, sha256_of(path))
    mlflow.set_tag(TAG, kind)


def handed_over(train_run_id: str, names: Iterable[str]) -> dict[str, tuple[FactorSet, str]]:
    """The fits of `names` the train stage of `train_run_id` (a candidate's child run) logged:
    name -> (factors, `refit` or `validated`). Names without one are left out."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(train_run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    wanted = set(names)
    if parent is None or not wanted:
        return {}
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
    )
    found: dict[str, tuple[FactorSet, str]] = {}
    for child in children:
        name, kind = child.data.tags.get("candidate"), child.data.tags.get(TAG)
        if name not in wanted or kind is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=child.info.run_id,
                artifact_path=f"{ARTIFACT_DIR}/{ARTIFACT_FILE}",
                dst_path=tmp,
            )
            # Unpickled (a whole FactorSet: docs/guides/security.md) only if it is the file logged.
            if child.data.tags.get(TAG_SHA256) != sha256_of(path):
                print(
                    f"[evaluate] {name}: the baseline fit of run {child.info.run_id} changed "
                    "after it was logged: not loaded, fit again",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            found[name] = (torch.load(path, map_location="cpu", weights_only=False), kind)
    return found


def reusable(config: Config) -> set[str]:
    """The baselines the evaluate stage may take from the train stage (closed-form ones that are
    also candidates), none without `evaluate.reuse_candidate_fits`."""
    if not config.evaluate.reuse_candidate_fits:
        return set()
    closed_form = {"als", "ease"}
    return closed_form & set(config.evaluate.baselines) & set(config.train.candidates)


__all__ = ["ARTIFACT_DIR", "TAG", "handed_over", "reusable", "store"]
