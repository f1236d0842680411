"""Early stopping counts only gains above the validation's noise (`train.min_gain_se`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from recspark.ranking.topk import target_gains
from recspark.results import EpochStats
from recspark.training.checkpoint import Progress
from recspark.training.inputs import MemoryRows
from recspark.training.loop import fit
from recspark.training.transport import LocalComm
from recspark.training.validation import standard_error, validation_ndcg

from .test_sparse_training import _params, _rows


def _epoch(epoch: int, ndcg: float, se: float) -> EpochStats:
    return EpochStats(epoch, 1.0, ndcg, 100.0, 1.0, val_ndcg_se=se)


def test_the_standard_error_is_that_of_the_per_row_gains() -> None:
    values = np.random.default_rng(0).random(57)
    expected = values.std(ddof=1) / math.sqrt(len(values))
    assert math.isclose(standard_error(values.sum(), (values**2).sum(), 57), expected)
    assert standard_error(0.3, 0.09, 1) == 0.0


class _FixedScores(torch.nn.Module):
    """A model whose validation logits are given: row i scores the items as `scores[i]`."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def validation_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scores[batch["user_index"]]


def test_validation_gives_the_mean_and_the_standard_error_of_the_rows_ndcg() -> None:
    rng = np.random.default_rng(1)
    n, n_items = 300, 40
    scores = torch.as_tensor(rng.normal(size=(n, n_items)), dtype=torch.float32)
    validation = {
        "user_index": np.arange(n),
        "item_index": rng.integers(0, n_items, n),
        "history": np.full((n, 3), n_items),  # nothing seen
    }
    mean, se = validation_ndcg(_FixedScores(scores), validation, 10, torch.device("cpu"))
    gains = target_gains(scores, torch.as_tensor(validation["item_index"]), 10).double().numpy()
    assert 0 < mean < 1 and math.isclose(mean, gains.mean(), rel_tol=1e-9)
    assert math.isclose(se, gains.std(ddof=1) / math.sqrt(n), rel_tol=1e-6)


def test_noise_sized_gains_keep_the_better_parameters_but_count_as_epochs_without_gain() -> None:
    model = torch.nn.Linear(2, 1)
    creeping = [0.100, 0.1005, 0.1009, 0.1012, 0.1014]  # each gain a fraction of the error
    for min_gain_se, stops_after in ((1.0, 4), (0.0, None)):
        progress = Progress()
        for epoch, ndcg in enumerate(creeping, 1):
            progress.record(_epoch(epoch, ndcg, 0.002), model, min_gain_se)
            if progress.stopped(3):
                break
        assert progress.epoch == (stops_after or len(creeping))
        assert progress.best_metric == creeping[progress.epoch - 1]  # the best kept all the same
    progress = Progress()
    for epoch, ndcg in enumerate([0.10, 0.11, 0.12], 1):  # gains of five standard errors
        progress.record(_epoch(epoch, ndcg, 0.002), model, 1.0)
    assert progress.bad_epochs == 0


def test_training_stops_on_noise_sized_gains() -> None:
    """The loop passes `min_gain_se` on: with it far above any epoch's gain, training stops once
    `patience` epochs after the first (which always gains over nothing)."""
    rows = MemoryRows(_rows(0, 2000))
    validation = {k: v[:200] for k, v in _rows(1, 200).items()}
    params = dataclasses.replace(_params("two_tower"), epochs=6, patience=2)
    with rows.batches(LocalComm(), params) as batches:
        patient = fit(LocalComm(), batches, validation, params)
    strict = dataclasses.replace(params, min_gain_se=1000.0)
    with rows.batches(LocalComm(), strict) as batches:
        stopped = fit(LocalComm(), batches, validation, strict)
    assert [s.epoch for s in stopped.history] == [1, 2, 3]
    assert len(patient.history) > 3  # the same data with any gain counting trains on
    assert all(s.val_ndcg_se > 0 for s in stopped.history)
