"""Training at catalog scale: the sampled softmax, LazyAdam, and sparse gradients across ranks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pyspark.sql import SparkSession

from recspark.config import load_config
from recspark.models.registry import build_model
from recspark.models.sampled import SampledNegatives, draw_negatives, sampled_softmax
from recspark.training.inputs import Batch, MemoryRows, memory_batches
from recspark.training.loop import fit, train_worker
from recspark.training.optim import LazyAdam
from recspark.training.params import TrainParams
from recspark.training.schedule import Schedule, schedule
from recspark.training.settings import train_params
from recspark.training.transport import LocalComm

from .conftest import CONF_DIR

pytestmark = pytest.mark.integration

N_USERS, N_ITEMS, LENGTH = 300, 2000, 8


def test_lazy_adam_on_dense_gradients_is_torch_adam() -> None:
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    theirs.load_state_dict(ours.state_dict())
    lazy = LazyAdam(ours.parameters(), lr=0.01, weight_decay=0.1)
    adam = torch.optim.Adam(theirs.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(20):
        x = torch.randn(16, 6)
        for model, optimizer in ((ours, lazy), (theirs, adam)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_lazy_adam_moves_only_the_rows_a_step_touched() -> None:
    torch.manual_seed(0)
    sparse = torch.nn.Embedding(10, 3, sparse=True)
    dense = torch.nn.Embedding(10, 3)
    dense.load_state_dict(sparse.state_dict())
    lazy = LazyAdam(sparse.parameters(), lr=0.05)
    adam = torch.optim.Adam(dense.parameters(), lr=0.05)
    before = sparse.weight.detach().clone()
    for _ in range(5):
        rows = torch.tensor([1, 4, 4, 7])  # 4 twice: its gradients add up
        for table, optimizer in ((sparse, lazy), (dense, adam)):
            optimizer.zero_grad()
            table(rows).sum().backward()
            optimizer.step()
    assert sparse.weight.grad is not None and sparse.weight.grad.is_sparse
    untouched = [0, 2, 3, 5, 6, 8, 9]
    torch.testing.assert_close(sparse.weight[untouched], before[untouched], rtol=0, atol=0)
    # Rows touched at every step have Adam's trajectory exactly.
    torch.testing.assert_close(sparse.weight[[1, 4, 7]], dense.weight[[1, 4, 7]])
    assert not torch.equal(sparse.weight[[1, 4, 7]], before[[1, 4, 7]])


def test_sampled_softmax_over_the_whole_catalog_is_the_full_softmax() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 12)
    targets = torch.tensor([3, 3, 0, 11, 7])
    # Every item a negative, one correction for all: it cancels, and each row's own item among
    # the negatives is masked (its logit is the own column).
    every_item = SampledNegatives(torch.arange(12), torch.full((12,), 0.7), torch.full((5,), 0.7))
    own = logits[torch.arange(5), targets]
    torch.testing.assert_close(
        sampled_softmax(own, logits - 0.7, every_item, targets), F.cross_entropy(logits, targets)
    )


def test_sampled_negatives_carry_the_log_q_correction_and_mask_accidental_hits() -> None:
    targets = torch.tensor([2, 5, 2, 9])
    prior = torch.tensor([0.1, 0.0, 0.4, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.2])
    generator = torch.Generator().manual_seed(1)
    drawn = draw_negatives(targets, 10, 6, prior, generator)
    assert drawn.items[:3].tolist() == [2, 5, 9]  # the distinct positives first
    assert len(drawn.items) == 3 + 6
    # The chance to be a negative: among 4 positives drawn from q (counted once), or drawn
    # among 6 uniform samples of 10 items.
    chance = 1 - (1 - prior) ** 4 + 6 / 10
    torch.testing.assert_close(drawn.log_expected, torch.log(chance[drawn.items]))
    torch.testing.assert_close(drawn.target_log_expected, torch.log(chance[targets]))
    # Row 1's positive (5) is negative column 1 and, sampled again, column 3: both masked for
    # row 1 only; for the other rows they are negatives like any other.
    items = torch.tensor([2, 5, 9, 5])
    hit = SampledNegatives(items, torch.zeros(4), torch.zeros(4))
    own, logits = torch.randn(4), torch.randn(4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[[0, 1, 1, 2, 3], [0, 1, 3, 0, 2]] = True
    both = torch.cat([own[:, None], logits.masked_fill(mask, torch.finfo(logits.dtype).min)], 1)
    manual = F.cross_entropy(both, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(sampled_softmax(own, logits.clone(), hit, targets), manual)
    first = torch.zeros(4, dtype=torch.long)
    unmasked = F.cross_entropy(torch.cat([own[:, None], logits], 1), first)
    assert not torch.isclose(manual, unmasked)


def test_a_batch_larger_than_max_in_batch_takes_the_positives_of_a_seeded_sample_of_rows() -> None:
    targets = torch.arange(100) % 40  # 40 distinct items, each in 2 or 3 rows
    prior = torch.full((50,), 1 / 50)

    def drawn(seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)
        return draw_negatives(targets, 50, 8, prior, generator, max_in_batch=10)

    first, again, other = drawn(3), drawn(3), drawn(4)
    in_batch = first.items[:-8]
    assert 1 <= len(in_batch) <= 10 and set(in_batch.tolist()) <= set(targets.tolist())
    assert torch.equal(in_batch, torch.unique(in_batch))
    assert torch.equal(first.items, again.items)  # the same generator draws the same rows
    assert not torch.equal(first.items, other.items)
    chance = 1 - (1 - prior) ** 10 + 8 / 50  # K = 10 rows, not the batch's 100
    torch.testing.assert_close(first.log_expected, torch.log(chance[first.items]))
    every = draw_negatives(targets, 50, 8, prior, torch.Generator().manual_seed(3))
    assert len(every.items) == 40 + 8


def _rows(seed: int, n: int) -> dict[str, np.ndarray[Any, Any]]:
    """Synthetic two-tower rows: users prefer items near their own id (a learnable signal)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, N_USERS, n)
    items = (users * (N_ITEMS // N_USERS) + rng.integers(0, 40, n)) % N_ITEMS
    history = (users[:, None] * (N_ITEMS // N_USERS) + rng.integers(0, 40, (n, LENGTH))) % N_ITEMS
    history[rng.random((n, LENGTH)) < 0.3] = N_ITEMS  # some padding
    return {"user_index": users, "item_index": items, "history": history}


def _params(model: str) -> TrainParams:
    return TrainParams(
        model=model,  # type: ignore[arg-type]
        n_users=N_USERS,
        n_items=N_ITEMS,
        embedding_dim=8,
        epochs=2,
        batch_size=32,
        learning_rate=0.01,
        weight_decay=0.001,
        seed=3,
        steps_per_epoch=12,
        loss="sampled_softmax",
        negatives=64,
        in_batch_negatives=16,  # of a batch of 32 rows: the sampled rows must agree across ranks
        history_dropout=0.0,
        patience=0,
        threads=1,
    )


def _interleaved(rows: MemoryRows, params: TrainParams, ranks: int) -> Iterator[Batch]:
    """The ranks' batches in turn: what one process accumulating `ranks` batches a step reads."""
    shards = [memory_batches(rows.shard(r, ranks), params.batch_size, params.seed) for r in (0, 1)]
    while True:
        for shard in shards:
            yield next(shard)


def _on_two_ranks(launcher: str, *args: Any) -> list[Any]:
    """Every rank's result of `train_worker(launcher, *args)` on 2 ranks (TorchDistributor
    hands back rank 0's only)."""
    if launcher == "horovod":
        import horovod.spark

        worker_args = (launcher, *args)
        return list(
            horovod.spark.run(
                train_worker, args=worker_args, num_proc=2, nics={"lo"}, use_gloo=True, verbose=0
            )
        )
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(num_processes=2, local_mode=False, use_gpu=False)
    return [distributor.run(train_worker, launcher, *args)]


@pytest.mark.parametrize("launcher", ["horovod", "torch_distributor"])
def test_two_ranks_end_with_the_parameters_of_one_rank_on_the_same_batches(
    spark: SparkSession, launcher: str
) -> None:
    params = _params("two_tower")
    assert build_model(params).item_tower.sparse  # type: ignore[union-attr]
    rows = MemoryRows(_rows(0, 4000))
    validation = {k: v[:200] for k, v in _rows(1, 200).items()}
    counts = np.bincount(rows.rows["item_index"], minlength=N_ITEMS)
    results = _on_two_ranks(launcher, rows, validation, params, None, True, counts)
    one = fit(
        LocalComm(),
        _interleaved(rows, params, 2),
        validation,
        dataclasses.replace(params, accumulate=2),
        None,
        counts,
    )
    assert one.history[-1].loss < one.history[0].loss
    for name, tensor in one.state_dict.items():
        torch.testing.assert_close(
            results[0].state_dict[name], tensor, atol=2e-5, rtol=1e-4, msg=name
        )
        for other in results[1:]:
            assert torch.equal(results[0].state_dict[name], other.state_dict[name]), name
    # The ranks exchanged the rows the batches touched, not the item tables.
    table_bytes = N_ITEMS * params.embedding_dim * 4
    assert 0 < results[0].history[-1].sent_bytes_per_step < table_bytes


@pytest.mark.parametrize("loss", ["softmax", "sampled_softmax"])
def test_sasrec_trains_with_either_loss_and_auto_picks_by_catalog_size(loss: str) -> None:
    params = dataclasses.replace(_params("sasrec"), loss=loss, epochs=1)  # type: ignore[arg-type]
    rows = _rows(2, 512)
    seqs = MemoryRows({"user_index": rows["user_index"], "history": rows["history"]})
    validation = {k: v[:64] for k, v in rows.items()}
    with seqs.batches(LocalComm(), params) as batches:
        result = fit(LocalComm(), batches, validation, params)
    assert np.isfinite(result.history[0].loss)
    sparse = build_model(params).sasrec.item_emb.sparse  # type: ignore[union-attr]
    assert sparse == (loss == "sampled_softmax")
    train = load_config(CONF_DIR, "test", ["train.sampled_softmax_above=1000"]).train
    assert (train.loss_for(1000), train.loss_for(1001)) == ("softmax", "sampled_softmax")


def test_bf16_autocast_trains_and_the_step_splits_into_its_phases() -> None:
    params = dataclasses.replace(_params("two_tower"), bf16=True, epochs=5, learning_rate=0.05)
    rows = MemoryRows(_rows(4, 2000))
    validation = {k: v[:64] for k, v in _rows(5, 64).items()}
    with rows.batches(LocalComm(), params) as batches:
        result = fit(LocalComm(), batches, validation, params)
    first, last = result.history[0], result.history[-1]
    assert np.isfinite(last.loss) and last.loss < first.loss
    phases = last.input_s + last.compute_s + last.exchange_s + last.update_s
    assert 0 < phases <= last.seconds
    assert last.compute_s > 0 and last.update_s > 0


def test_schedules_cap_the_samples_of_a_fit_and_keep_whole_passes_where_they_fit() -> None:
    assert schedule(8, 1000, 100, None) == Schedule(8, 10, capped=False)
    assert schedule(8, 1000, 100, 8000) == Schedule(8, 10, capped=False)
    assert schedule(8, 1000, 100, 3500) == Schedule(3, 10, capped=True)  # 3 whole passes
    assert schedule(8, 100_000, 100, 2000) == Schedule(4, 5, capped=True)  # 4 partial rounds
    assert schedule(2, 100_000, 100, 2000) == Schedule(2, 10, capped=True)
    assert schedule(8, 100_000, 100, 150) == Schedule(1, 1, capped=True)


def test_the_stage_trains_within_max_samples_whatever_the_number_of_rows() -> None:
    overrides = ["train.max_samples=2000", "train.batch_size=32", "train.num_proc=1"]
    config = load_config(CONF_DIR, "test", overrides)
    rows = _rows(6, 4000)
    params = train_params(config, "two_tower", N_USERS, N_ITEMS, 4000, date.min, {})
    assert (params.epochs, params.steps_per_epoch, params.max_samples) == (4, 15, 2000)
    params = dataclasses.replace(params, checkpoint_path=None, threads=1)
    validation = {k: v[:64] for k, v in _rows(7, 64).items()}
    with MemoryRows(rows).batches(LocalComm(), params) as batches:
        result = fit(LocalComm(), batches, validation, params)
    assert sum(epoch.samples_per_s * epoch.seconds for epoch in result.history) == pytest.approx(
        4 * 15 * 32
    )
    uncapped = train_params(config, "two_tower", N_USERS, N_ITEMS, 100, date.min, {})
    assert uncapped.epochs == config.train.epochs and uncapped.steps_per_epoch == 3
