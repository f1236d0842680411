"""The train function every rank runs (imported by the executors, not the driver).

One function, `train_worker`, serves both launchers: `horovod.spark.run` and
`pyspark.ml.torch.distributor.TorchDistributor`. What differs is behind `Comm`: how ranks average
gradients, sum metrics and share objects (Horovod: `DistributedOptimizer` over gloo/NCCL;
torch.distributed: an all-reduce of the gradients after `backward`). The loop itself (`fit`) also
runs in one process on in-memory tensors (`LocalComm`), which is what the input-pipeline benchmark
compares Petastorm against.

Per epoch: train `steps_per_epoch` batches, average the loss over ranks, compute the validation
NDCG@k, print one line (loss, validation, samples/s, ETA), checkpoint (rank 0) and stop early when
validation has not improved for `patience` epochs. The best epoch's parameters are returned.

Sampled losses train with sparse embedding gradients and `LazyAdam` (`recspark.training.optim`):
the ranks then exchange the rows a step touched (Horovod's sparse all-gather of each table's
rows; under torch.distributed one packed all-gather of every table's, `recspark.training.exchange`),
so the bytes a rank sends per step
(`EpochStats.sent_bytes_per_step`) follow the batch, not the catalog. The shared sampled
negatives are drawn from a generator seeded by the step, the same on every rank.

Input is a Petastorm converter (the stage) or `MemoryRows` (in-memory arrays, the benchmarks and
tests), either sharded by rank.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import pickle
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from numpy.typing import NDArray

from recspark.models.registry import SasrecParams
from recspark.results import EpochStats
from recspark.schemas import ITEM_INDEX, USER_INDEX
from recspark.training.exchange import (
    dense_gradients,
    packed,
    set_gathered,
    sparse_tables,
    to_gather,
)
from recspark.training.optim import LazyAdam, coalesce_sparse_gradients, has_sparse_gradients
from recspark.training.sealed import broken_seal, write_seal
from recspark.vocab import GradientModel, Launcher, LossName, ReaderPool

HISTORY = "history"
# Validation arrays may carry each user's train items but the target, as CSR rows.
SEEN_OFFSETS, SEEN_VALUES = "seen_offsets", "seen_values"
StateDict = dict[str, torch.Tensor]
Batch = dict[str, torch.Tensor]
Validation = Mapping[str, NDArray[Any]]  # user_index, item_index (the target), history


@dataclass(frozen=True)
class TrainParams:
    """Everything a rank needs to train: built by the train stage, shipped to every rank."""

    model: GradientModel
    n_users: int
    n_items: int
    embedding_dim: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    steps_per_epoch: int
    max_samples: int | None = None  # the sample budget that set epochs x steps (a record)
    loss: LossName = "softmax"
    negatives: int = 0
    in_batch_negatives: int | None = None  # rows whose positives are in-batch negatives (None: all)
    use_history: bool = True
    history_dropout: float = 0.0
    sasrec: SasrecParams = field(default_factory=SasrecParams)
    patience: int = 3
    eval_k: int = 10
    checkpoint_path: str | None = None
    fingerprint: str = ""
    threads: int = 0  # torch intra-op threads per rank on CPU; 0: the cores / ranks per machine
    reader_pool: ReaderPool = "thread"  # Petastorm: thread (decode beside training) | dummy
    # Batches per optimizer step, one process only: it then replays what that many ranks compute
    # (the reference data-parallel training must equal; tests/test_sparse_training.py).
    accumulate: int = 1
    sparse_gradients: bool = True  # sampled losses: sparse embedding gradients (False: dense)
    bf16: bool = False  # forward and loss under bfloat16 autocast (GPUs with bf16 units)
    # Wait for every rank before the exchange, timing the wait as idle (benchmarks: it separates
    # waiting for a slower rank from the exchange itself, at one more collective a step).
    measure_idle: bool = False


@dataclass(frozen=True)
class FitResult:
    """What `fit` returns from a rank: the best epoch's parameters and the epochs' stats."""

    state_dict: StateDict
    best_val_ndcg: float
    history: tuple[EpochStats, ...]
    device: str
    ranks: int
    launcher: str
    resumed_from_epoch: int | None
    rank: int = 0


# -- communication -----------------------------------------------------------------------------
class LocalComm:
    """One process, no communication (benchmarks, debugging)."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    name = "local"

    def allreduce_sum(self, tensor: Any) -> Any:
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    def prepare(self, model: Any, optimizer: Any) -> Any:
        return optimizer

    def exchange(self, model: Any, optimizer: Any) -> None:
        """Average the ranks' gradients (after the last backward of a step)."""
        return None

    def barrier(self) -> None:
        """Wait for every rank (`TrainParams.measure_idle`)."""
        return None

    def update(self, optimizer: Any) -> None:
        """Apply the (exchanged) gradients."""
        optimizer.step()


class HorovodComm(LocalComm):
    """Horovod: gradients averaged by `DistributedOptimizer` while backward runs (gloo on CPU,
    NCCL on GPU); sparse embedding gradients by Horovod's sparse path, an all-gather of each
    table's touched rows and their indices (measured faster here than one packed all-gather after
    backward: it overlaps with backward, `benchmarks/train.py --catalogs`)."""

    name = "horovod"

    def __init__(self) -> None:
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        self._calls = 0

    def _name(self, kind: str) -> str:
        self._calls += 1
        return f"{kind}_{self._calls}"

    def allreduce_sum(self, tensor: Any) -> Any:
        return self.hvd.allreduce(tensor, op=self.hvd.Sum, name=self._name("sum"))

    def broadcast_object(self, obj: Any) -> Any:
        return self.hvd.broadcast_object(obj, root_rank=0, name=self._name("object"))

    def prepare(self, model: Any, optimizer: Any) -> Any:
        optimizer = self.hvd.DistributedOptimizer(
            optimizer, named_parameters=model.named_parameters()
        )
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return optimizer

    def exchange(self, model: Any, optimizer: Any) -> None:
        # The exchange started during backward; wait for it here, so a step's time splits into
        # its exchange and its update. `barrier` stays a no-op: Horovod would queue it behind
        # those collectives, so the wait for a slower rank is part of the exchange.
        optimizer.synchronize()

    def update(self, optimizer: Any) -> None:
        with optimizer.skip_synchronize():
            optimizer.step()


class TorchDistComm(LocalComm):
    """torch.distributed, as started by TorchDistributor (env:// rendezvous; gloo or NCCL): after
    backward, one all-reduce of the dense gradients flattened and, for sparse embedding
    gradients, the packed all-gather of `recspark.training.exchange`."""

    name = "torch_distributor"

    def __init__(self, backend: str) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        self.dist = dist
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.size)))
        self.sparse: list[torch.Tensor] = []

    def allreduce_sum(self, tensor: Any) -> Any:
        out = tensor.clone()
        self.dist.all_reduce(out)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        holder = [obj]
        self.dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        self.dist.barrier()

    def prepare(self, model: Any, optimizer: Any) -> Any:
        self.sparse = sparse_tables(model)
        for tensor in model.state_dict().values():
            self.dist.broadcast(tensor, src=0)
        return optimizer

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-gather along dim 0 of tensors whose first size differs between ranks (padded to
        the largest: gloo gathers equal sizes)."""
        size = torch.tensor([tensor.shape[0]], device=tensor.device)
        sizes = [torch.zeros_like(size) for _ in range(self.size)]
        self.dist.all_gather(sizes, size)
        padded = tensor.new_zeros((max(int(s) for s in sizes), *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        self.dist.all_gather(parts, padded)
        return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)])

    def exchange(self, model: Any, optimizer: Any) -> None:
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        if self.size == 1:
            return
        dense = dense_gradients(model, self.sparse)
        if dense:
            flat = _flatten_dense_tensors(dense)
            self.dist.all_reduce(flat)
            flat /= self.size
            for grad, mean in zip(dense, _unflatten_dense_tensors(flat, dense), strict=True):
                grad.copy_(mean)
        if self.sparse:
            parts = packed(self.sparse)
            set_gathered(parts, [self._gather(t) for t in to_gather(parts)], self.size)


# -- the loop ------------------------------------------------------------------------------------
def _seen_mask(validation: Validation, start: int, batch: Batch, n_items: int) -> torch.Tensor:
    """(B, n_items + 1) True at the rows' seen items: every other train item of the user where
    the validation carries them (SEEN_OFFSETS / SEEN_VALUES), else the history."""
    rows = len(batch[ITEM_INDEX])
    device = batch[ITEM_INDEX].device
    # The history is padded with n_items: one extra column takes the padding.
    seen = torch.zeros(rows, n_items + 1, dtype=torch.bool, device=device)
    if SEEN_OFFSETS not in validation:
        seen.scatter_(1, batch[HISTORY].clamp(max=n_items), True)
        return seen
    offsets = validation[SEEN_OFFSETS][start : start + rows + 1]
    values = torch.as_tensor(validation[SEEN_VALUES][offsets[0] : offsets[-1]], device=device)
    lengths = torch.as_tensor(offsets[1:] - offsets[:-1], device=device)
    seen[torch.repeat_interleave(torch.arange(rows, device=device), lengths), values] = True
    return seen


def validation_ndcg(model: Any, validation: Validation, k: int, device: torch.device) -> float:
    """Mean NDCG@k of each validation row's single target, the user's other items excluded."""
    n = len(validation[ITEM_INDEX])
    if n == 0:
        return float("nan")
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, n, 1024):
            batch = {
                key: torch.as_tensor(value[start : start + 1024], dtype=torch.long, device=device)
                for key, value in validation.items()
                if key not in (SEEN_OFFSETS, SEEN_VALUES)
            }
            scores = model.validation_logits(batch).float()
            seen = _seen_mask(validation, start, batch, scores.shape[1])
            target = batch[ITEM_INDEX].unsqueeze(1)
            target_scores = scores.gather(1, target)
            scores = scores.masked_fill(seen[:, : scores.shape[1]], float("-inf"))
            rank = (scores > target_scores).sum(1)
            gains = torch.where(rank < k, 1.0 / torch.log2(rank.float() + 2.0), 0.0)
            total += float(gains.sum())
    model.train()
    return total / n


@dataclass
class Progress:
    """Where training stands after an epoch: what a checkpoint saves and a resumed run restores.

    Early stopping: an epoch whose validation NDCG does not beat the best by 1e-5 is a bad
    epoch; `patience` bad epochs in a row stop training. The best epoch's parameters are kept.
    """

    epoch: int = 0
    best_metric: float = -math.inf
    best_state: StateDict | None = None
    bad_epochs: int = 0
    history: list[EpochStats] = field(default_factory=list)

    def record(self, stats: EpochStats, model: Any) -> None:
        metric = stats.val_ndcg
        if math.isnan(metric) or metric > self.best_metric + 1e-5:
            self.best_metric = metric if not math.isnan(metric) else self.best_metric
            self.best_state = _cpu_copy(model)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.epoch = stats.epoch
        self.history.append(stats)

    def stopped(self, patience: int) -> bool:
        return patience > 0 and self.bad_epochs >= patience


def _cpu_copy(model: Any) -> StateDict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _save_checkpoint(
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


def _load_checkpoint(path: str | None, fingerprint: str) -> dict[str, Any] | None:
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
    _say(f"[train] checkpoint {path} not loaded ({refused}): starting over")
    return None


def _restored_progress(saved: dict[str, Any]) -> Progress:
    history = [EpochStats(**stats) for stats in saved["history"]]
    return Progress(**{**saved, "history": history})


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _warm_start(model: Any, init_state: StateDict) -> list[str]:
    """Copy the champion's parameters into the new model; larger id tables keep new rows fresh."""
    copied = []
    own = model.state_dict()
    with torch.no_grad():
        for name, value in init_state.items():
            if name not in own or own[name].dim() != value.dim():
                continue
            if own[name].shape[1:] != value.shape[1:]:
                continue
            rows = min(own[name].shape[0], value.shape[0]) if value.dim() else None
            if rows is None:
                own[name].copy_(value)
            else:
                own[name][:rows].copy_(value[:rows])
            copied.append(name)
    return copied


def _device(comm: Any, params: TrainParams) -> torch.device:
    """This rank's GPU, or the CPU with this rank's share of the machine's cores."""
    if torch.cuda.is_available():
        torch.cuda.set_device(comm.local_rank)
        return torch.device("cuda", comm.local_rank)
    # Ranks share the machine's cores: a share of the threads each avoids oversubscription.
    torch.set_num_threads(params.threads or max(1, (os.cpu_count() or 1) // comm.local_size))
    return torch.device("cpu")


def _prepared_model(
    comm: Any,
    params: TrainParams,
    init_state: StateDict | None,
    device: torch.device,
    item_counts: NDArray[Any] | None = None,
) -> tuple[Any, Any]:
    """(model, optimizer): seeded, warm-started on rank 0, then made equal on every rank.

    The learning rate scales with the global batch (ranks x accumulated batches). Models with
    sparse embedding gradients get `LazyAdam`, the others torch's Adam.
    """
    from recspark.models.registry import build_model

    if params.accumulate > 1 and comm.size > 1:
        raise ValueError("accumulate > 1 replays several ranks in one process: use one rank")
    torch.manual_seed(params.seed)
    model: Any = build_model(params)
    if init_state and comm.rank == 0:
        _say(f"[train] warm start from the champion: {len(_warm_start(model, init_state))} tensors")
    model = model.to(device)
    if item_counts is not None:
        model.set_sampling_prior(torch.as_tensor(item_counts))
    lr = params.learning_rate * comm.size * params.accumulate
    if has_sparse_gradients(model):
        coalesce_sparse_gradients(model)
        optimizer: Any = LazyAdam(model.parameters(), lr=lr, weight_decay=params.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=params.weight_decay)
    return model, comm.prepare(model, optimizer)


def _restore(comm: Any, params: TrainParams, model: Any, optimizer: Any) -> Progress | None:
    """Rank 0's checkpoint of this run (same settings and data), loaded on every rank."""
    checkpoint = None
    if comm.rank == 0:
        checkpoint = _load_checkpoint(params.checkpoint_path, params.fingerprint)
    checkpoint = comm.broadcast_object(checkpoint)
    if checkpoint is None:
        return None
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if comm.rank == 0:
        _say(f"[train] resumed from the checkpoint of epoch {checkpoint['epoch']}")
    progress: Progress = checkpoint["progress"]
    return progress


def sent_bytes(model: Any) -> int:
    """Bytes of gradient this rank hands to the exchange: dense gradients whole, sparse ones as
    their (coalesced) row indices and rows."""
    total = 0
    for param in model.parameters():
        grad = param.grad
        if grad is None:
            continue
        if grad.is_sparse:
            total += grad._nnz() * (8 + grad._values()[0].numel() * grad.element_size())
        else:
            total += grad.numel() * grad.element_size()
    return total


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of a step's shared sampled negatives: the same on every rank."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# The phases of a step, timed by `_Clock` into `EpochRun` and reported in `EpochStats`.
PHASES = ("input_s", "compute_s", "idle_s", "exchange_s", "update_s")


@dataclass
class EpochRun:
    """One epoch's training: rows and loss summed over the ranks; this rank's time by phase."""

    loss: float = 0.0  # mean over all ranks' rows
    samples: float = 0.0  # rows of all ranks
    seconds: float = 0.0
    sent_bytes_per_step: float = 0.0
    input_s: float = 0.0  # waiting for the next batch (Petastorm or memory)
    compute_s: float = 0.0  # forward and backward
    idle_s: float = 0.0  # waiting for the slowest rank (with `measure_idle` only)
    exchange_s: float = 0.0  # waiting for the ranks' gradients (all-reduce / all-gather)
    update_s: float = 0.0  # the optimizer step


class _Clock:
    """Adds the seconds since the last call to a field of an `EpochRun`."""

    def __init__(self, run: EpochRun) -> None:
        self.run, self.last = run, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        setattr(self.run, phase, getattr(self.run, phase) + now - self.last)
        self.last = now


def _autocast(params: TrainParams, device: torch.device) -> Any:
    """bfloat16 autocast for the forward pass and loss with `params.bf16`, else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=params.bf16)


def _train_epoch(
    comm: Any,
    model: Any,
    optimizer: Any,
    batches: Iterator[Batch],
    params: TrainParams,
    epoch: int,
) -> EpochRun:
    """Train one epoch of `steps_per_epoch` optimizer steps (each `accumulate` batches)."""
    device = next(model.parameters()).device
    model.train()
    run, loss_sum, sent = EpochRun(), 0.0, 0
    started = time.perf_counter()
    clock = _Clock(run)
    for step in range(params.steps_per_epoch):
        global_step = (epoch - 1) * params.steps_per_epoch + step
        optimizer.zero_grad()
        for _ in range(params.accumulate):
            batch = {k: v.to(device, dtype=torch.long) for k, v in next(batches).items()}
            clock.lap("input_s")
            # Every batch of the step draws the same shared negatives, as the ranks do.
            generator = step_generator(params.seed, global_step)
            with _autocast(params, device):
                loss = model.batch_loss(
                    batch, params.loss, params.negatives, generator, params.in_batch_negatives
                )
            (loss / params.accumulate).backward()
            rows = len(batch[USER_INDEX])
            loss_sum += float(loss.item()) * rows
            run.samples += rows
            clock.lap("compute_s")
        sent += sent_bytes(model)
        if params.measure_idle:
            comm.barrier()
            clock.lap("idle_s")
        comm.exchange(model, optimizer)
        clock.lap("exchange_s")
        comm.update(optimizer)
        clock.lap("update_s")
    run.seconds = time.perf_counter() - started
    totals = comm.allreduce_sum(torch.tensor([loss_sum, run.samples], dtype=torch.float64))
    run.loss = float(totals[0] / max(float(totals[1]), 1.0))
    run.samples = float(totals[1])
    run.sent_bytes_per_step = sent / max(params.steps_per_epoch, 1)
    return run


def _report(
    comm: Any, params: TrainParams, stats: EpochStats, eta: float, device: torch.device
) -> None:
    _say(
        f"[train] epoch {stats.epoch}/{params.epochs}  loss {stats.loss:.4f}  "
        f"val ndcg@{params.eval_k} {stats.val_ndcg:.4f}  {stats.samples_per_s:,.0f} samples/s  "
        f"({comm.size} ranks, {comm.name}, {device.type})  eta {eta:.0f}s"
    )


def fit(
    comm: Any,
    batches: Iterator[Batch],
    validation: Validation,
    params: TrainParams,
    init_state: StateDict | None = None,
    item_counts: NDArray[Any] | None = None,
) -> FitResult:
    """Train on `batches` (an endless iterator of dicts of tensors) for the configured epochs.

    `item_counts`: each item's count among the training positives (the sampled softmax's logQ
    prior; None: uniform).
    """
    device = _device(comm, params)
    model, optimizer = _prepared_model(comm, params, init_state, device, item_counts)
    progress = _restore(comm, params, model, optimizer)
    resumed_from = None if progress is None else progress.epoch
    progress = progress or Progress()
    first, started = progress.epoch + 1, time.perf_counter()
    for epoch in range(first, params.epochs + 1):
        if progress.stopped(params.patience):
            break
        run = _train_epoch(comm, model, optimizer, batches, params, epoch)
        metric = validation_ndcg(model, validation, params.eval_k, device)
        if not math.isfinite(run.loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss {run.loss}")
        stats = EpochStats(
            epoch, run.loss, metric, run.samples / run.seconds, run.seconds,
            sent_bytes_per_step=run.sent_bytes_per_step,
            **{phase: getattr(run, phase) for phase in PHASES},
        )  # fmt: skip
        progress.record(stats, model)
        if comm.rank == 0:
            eta = (time.perf_counter() - started) / (epoch - first + 1) * (params.epochs - epoch)
            _report(comm, params, progress.history[-1], eta, device)
            if params.checkpoint_path:
                _save_checkpoint(params.checkpoint_path, params, model, optimizer, progress)
        if progress.stopped(params.patience) and comm.rank == 0:
            _say(
                f"[train] early stop: no validation gain for {progress.bad_epochs} epochs; "
                f"best ndcg@{params.eval_k} {progress.best_metric:.4f}"
            )
    return FitResult(
        state_dict=progress.best_state or _cpu_copy(model),
        best_val_ndcg=progress.best_metric,
        history=tuple(progress.history),
        device=device.type,
        ranks=comm.size,
        launcher=comm.name,
        resumed_from_epoch=resumed_from,
    )


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
def _rank_batches(source: Any, comm: Any, params: TrainParams) -> Iterator[Iterator[Batch]]:
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


def train_worker(
    launcher: Launcher,
    source: Any,
    validation: Validation,
    params: TrainParams,
    init_state: StateDict | None = None,
    all_ranks: bool = False,
    item_counts: NDArray[Any] | None = None,
) -> FitResult | None:
    """What each rank runs: set up communication, read its shard of `source` (a Petastorm
    converter or `MemoryRows`), `fit`.

    Returns the result on rank 0 and None on the others (on every rank with `all_ranks`, which
    the tests use to compare the ranks' parameters).
    """
    if launcher == "horovod":
        comm: Any = HorovodComm()
    else:
        comm = TorchDistComm("nccl" if torch.cuda.is_available() else "gloo")
    with _rank_batches(source, comm, params) as batches:
        result = fit(comm, batches, validation, params, init_state, item_counts)
    result = dataclasses.replace(result, rank=comm.rank)
    return result if comm.rank == 0 or all_ranks else None
