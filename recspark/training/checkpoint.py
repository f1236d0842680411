"""Checkpointing: where training stands after each epoch (`Progress`, early stopping included),
saved by rank 0 atomically with its seal (`recspark.training.sealed`) and restored on every rank
when a run resumes with the same settings and data (`TrainParams.fingerprint`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recspark.results import EpochStats
from recspark.training.params import StateDict, TrainParams
from recspark.training.sealed import broken_seal, write_seal


@dataclass
class Progress:
    """Where training stands after an epoch: what a checkpoint saves and a resumed run restores.

    Early stopping: an epoch whose validation NDCG does not beat the best by `min_gain_se`
    standard errors of its own mean (and by 1e-5) is a bad epoch; `patience` bad epochs in a row
    stop training. The best epoch's parameters are kept, a gain smaller than that included: it
    still counts as a bad epoch, so noise-sized gains do not keep training going.
    """

    epoch: int = 0
    best_metric: float = -math.inf
    best_state: StateDict | None = None
    bad_epochs: int = 0
    history: list[EpochStats] = field(default_factory=list)

    def record(self, stats: EpochStats, model: Any, min_gain_se: float = 0.0) -> None:
        metric = stats.val_ndcg
        if math.isnan(metric):  # nothing to validate on: every epoch is kept, none is bad
            self.best_state, self.bad_epochs = cpu_copy(model), 0
        else:
            gained = metric - self.best_metric
            if gained > 1e-5:
                self.best_metric, self.best_state = metric, cpu_copy(model)
            enough = gained > max(1e-5, min_gain_se * stats.val_ndcg_se)
            self.bad_epochs = 0 if enough else self.bad_epochs + 1
        self.epoch = stats.epoch
        self.history.append(stats)

    def stopped(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience


def cpu_copy(model: Any) -> StateDict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str, params: TrainParams, model: Any, optimizer: Any, progress: Progress
) -> None:
    """Write the checkpoint atomically (a killed rank never leaves half a file), then its seal
    (`recspark.training.sealed`). Tensors and plain values only: it loads with weights_only."""
    state = {
        "fingerprint": params.fingerprint,
        "epoch": progress.epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "progress": dataclasses.asdict(progress),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    torch.save(state, tmp)
    write_seal(target, params.fingerprint, content=tmp)
    os.replace(tmp, target)


def load_checkpoint(path: str | None, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` written for `fingerprint`, its progress restored; None when
    there is none, or its seal does not vouch for it (nothing of it is unpickled then)."""
    if not path or not Path(path).exists():
        return None
    refused = broken_seal(path, fingerprint)
    if refused is None:
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            state["progress"] = _restored_progress(state["progress"])
            return state
        except (pickle.UnpicklingError, KeyError, TypeError, RuntimeError) as exc:
            refused = f"it cannot be read ({type(exc).__name__})"
    print(
        f"[train] checkpoint {path} not loaded ({refused}): starting over",
        file=sys.stderr,
        flush=True,
    )
    return None


def _restored_progress(saved: dict[str, Any]) -> Progress:
    history = [EpochStats(**stats) for stats in saved["history"]]
    return Progress(**{**saved, "history": history})


def restore(comm: Any, params: TrainParams, model: Any, optimizer: Any) -> Progress | None:
    """Rank 0's checkpoint of this run (same settings and data), loaded on every rank."""
    checkpoint = None
    if comm.rank == 0:
        checkpoint = load_checkpoint(params.checkpoint_path, params.fingerprint)
    checkpoint = comm.broadcast_object(checkpoint)
    if checkpoint is None:
        return None
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if comm.rank == 0:
        print(
            f"[train] resumed from the checkpoint of epoch {checkpoint['epoch']}",
            file=sys.stderr,
            flush=True,
        )
    progress: Progress = checkpoint["progress"]
    return progress
