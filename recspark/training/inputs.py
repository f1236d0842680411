"""A rank's input pipeline: its shard of the training rows as an endless iterator of batches
(dicts of tensors by column).

The stage feeds a Petastorm converter (`petastorm_batches`, the rows of each window of batches
permuted by `reshuffled`); the benchmarks and tests feed `MemoryRows` (in-memory arrays). Either
is sharded by rank (`rank_batches`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from numpy.typing import NDArray

from recspark.training.params import TrainParams

HISTORY = "history"  # a row's recent items, padded with n_items
Batch = dict[str, torch.Tensor]


def memory_batches(rows: Mapping[str, Any], batch_size: int, seed: int) -> Iterator[Batch]:
    """An endless iterator over in-memory rows (dict of equal-length arrays), reshuffled per pass.

    The same loop as Petastorm feeds, for the input-pipeline benchmark and for debugging.
    """
    tensors = {key: torch.as_tensor(value) for key, value in rows.items()}
    n = len(next(iter(tensors.values())))
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield {key: value[index] for key, value in tensors.items()}


def petastorm_batches(converter: Any, comm: Any, params: TrainParams) -> Any:
    """A context manager yielding this rank's shard as an endless batch iterator.

    Row groups come in file order every pass (Petastorm's own row-group shuffle is not
    reproducible: its order varies from run to run with the same seed); `reshuffled` mixes the
    rows instead, with a seeded generator, differently in each pass.
    """
    pool: dict[str, Any] = (
        {"reader_pool_type": "dummy"} if params.reader_pool == "dummy" else {"workers_count": 1}
    )
    return converter.make_torch_dataloader(
        batch_size=params.batch_size,
        num_epochs=None,
        cur_shard=comm.rank,
        shard_count=comm.size,
        shuffle_row_groups=False,
        **pool,
    )


@dataclass(frozen=True)
class MemoryRows:
    """Training rows held in memory (equal-length arrays by column), sharded by rank: rank r of
    n reads rows r, r + n, r + 2n, ... (the input of the benchmarks' in-memory runs)."""

    rows: Mapping[str, NDArray[Any]]

    def shard(self, rank: int, size: int) -> dict[str, NDArray[Any]]:
        return {key: value[rank::size] for key, value in self.rows.items()}

    @contextmanager
    def batches(self, comm: Any, params: TrainParams) -> Iterator[Iterator[Batch]]:
        yield memory_batches(self.shard(comm.rank, comm.size), params.batch_size, params.seed)


@contextmanager
def rank_batches(source: Any, comm: Any, params: TrainParams) -> Iterator[Iterator[Batch]]:
    if isinstance(source, MemoryRows):
        with source.batches(comm, params) as batches:
            yield batches
        return
    with petastorm_batches(source, comm, params) as loader:
        yield reshuffled(iter(loader), SHUFFLE_WINDOW, params.seed * 7919 + comm.rank)


# Batches whose rows `reshuffled` permutes together (16 x 256 rows: 4,096 at the default batch).
SHUFFLE_WINDOW = 16


def reshuffled(batches: Iterator[Batch], window: int, seed: int) -> Iterator[Batch]:
    """The rows of each `window` consecutive batches permuted together, by a generator seeded
    with (seed, window number): the same input stream gives the same batches every run, and
    each pass over a rank's shard is mixed differently. Batch sizes are kept."""
    for number in itertools.count():
        chunk = list(itertools.islice(batches, window))
        if not chunk:
            return
        joined = {key: torch.cat([b[key] for b in chunk]) for key in chunk[0]}
        sizes = [len(next(iter(b.values()))) for b in chunk]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + number)
        order = torch.randperm(sum(sizes), generator=generator)
        start = 0
        for size in sizes:
            index = order[start : start + size]
            start += size
            yield {key: value[index] for key, value in joined.items()}
