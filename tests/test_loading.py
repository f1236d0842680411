"""Loading only what recspark wrote: checkpoints and kept fits are checked against their seal
(fingerprint and SHA-256, `recspark.training.sealed`) before anything of them is unpickled, and
checkpoints load with `torch.load(weights_only=True)`. A planted pickle that would create a
marker file when unpickled never does."""

from __future__ import annotations

import builtins
import dataclasses
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recspark.config import load_config
from recspark.models.base import ScoringModel
from recspark.ranking.factors import IdFactors
from recspark.results import EpochStats
from recspark.tracking import setup_mlflow
from recspark.training import baseline_fits, reuse
from recspark.training.checkpoint import Progress, load_checkpoint, save_checkpoint
from recspark.training.sealed import sidecar, write_seal

from .conftest import CONF_DIR


class Planted:
    """Unpickling it opens (creates) the marker file: it stands for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.marker), "w"))


def _checkpoint(path: Path, fingerprint: str) -> tuple[torch.nn.Module, Progress]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    progress = Progress()
    progress.record(EpochStats(1, 0.5, 0.25, 100.0, 2.0), model)
    progress.record(EpochStats(2, 0.4, 0.125, 110.0, 2.0), model)  # a bad epoch
    params: Any = types.SimpleNamespace(fingerprint=fingerprint)
    save_checkpoint(str(path), params, model, optimizer, progress)
    return model, progress


def test_a_sealed_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    model, progress = _checkpoint(path, "f1")
    state = load_checkpoint(str(path), "f1")
    assert state is not None and state["epoch"] == 2
    for name, tensor in model.state_dict().items():
        assert torch.equal(state["model"][name], tensor), name
    restored: Progress = state["progress"]
    assert (restored.epoch, restored.best_metric, restored.bad_epochs) == (2, 0.25, 1)
    assert restored.history == progress.history
    assert restored.best_state is not None and progress.best_state is not None
    assert all(torch.equal(restored.best_state[k], v) for k, v in progress.best_state.items())
    assert state["optimizer"]["state"][0]["step"] == 1
    # Another fingerprint, or bytes changed after sealing: not loaded.
    assert load_checkpoint(str(path), "f2") is None
    path.write_bytes(path.read_bytes() + b"\0")
    assert load_checkpoint(str(path), "f1") is None


@pytest.mark.parametrize("seal", ["none", "other settings", "forged"])
def test_a_planted_checkpoint_is_never_unpickled(tmp_path: Path, seal: str) -> None:
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "unpickled"
    torch.save({"fingerprint": "f1", "epoch": 9, "progress": Planted(marker)}, path)
    if seal == "other settings":
        write_seal(path, "f0")
    if seal == "forged":  # a seal can be forged by whoever can write the folder: weights_only
        write_seal(path, "f1")
    assert load_checkpoint(str(path), "f1") is None
    assert not marker.exists()
    assert sidecar(path).exists() == (seal != "none")


def test_a_kept_fit_is_unpickled_only_as_it_was_kept(tmp_path: Path) -> None:
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    mlflow = setup_mlflow(config)
    factors = IdFactors(users=np.eye(2, dtype=np.float32), items=np.ones((3, 2), np.float32))
    with mlflow.start_run() as run:
        mlflow.set_tag(reuse.TAG_SETTINGS, "s1")
        reuse.store(mlflow, ScoringModel("ease", None, factors))
    kept = reuse.Kept(run.info.run_id, "2026-01-01", 0, "s1")
    loaded = reuse.load(kept)
    assert loaded.model_name == "ease"
    np.testing.assert_array_equal(loaded.factor_set().items, factors.items)
    with pytest.raises(ValueError, match="other settings"):
        reuse.load(dataclasses.replace(kept, settings="s2"))
    # A pickle planted in place of the kept file: refused before it is unpickled.
    artifact = Path(mlflow.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://"))
    marker = tmp_path / "unpickled"
    torch.save(Planted(marker), artifact / reuse.ARTIFACT_DIR / reuse.ARTIFACT_FILE)
    with pytest.raises(ValueError, match="content changed"):
        reuse.load(kept)
    assert not marker.exists()


def test_a_baseline_fit_is_handed_over_only_as_it_was_logged(tmp_path: Path) -> None:
    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path}"])
    mlflow = setup_mlflow(config)
    factors = IdFactors(users=np.eye(2, dtype=np.float32), items=np.ones((3, 2), np.float32))
    with mlflow.start_run(), mlflow.start_run(nested=True) as child:
        mlflow.set_tag("candidate", "als")
        baseline_fits.store(mlflow, factors, "refit")
    run_id = child.info.run_id
    handed = baseline_fits.handed_over(run_id, ["als"])
    assert handed["als"][1] == "refit"
    np.testing.assert_array_equal(handed["als"][0].items, factors.items)
    artifact = Path(mlflow.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    marker = tmp_path / "unpickled"
    torch.save(Planted(marker), artifact / baseline_fits.ARTIFACT_DIR / baseline_fits.ARTIFACT_FILE)
    assert baseline_fits.handed_over(run_id, ["als"]) == {}
    assert not marker.exists()
