"""The train function every rank runs (imported by the executors, not the driver): the epoch loop.

One function, `train_worker`, serves both launchers: `horovod.spark.run` and
`pyspark.ml.torch.distributor.TorchDistributor`. What differs is the transport
(`recspark.training.transport`): how ranks average gradients, sum metrics and share objects. The
loop itself (`fit`) also runs in one process on in-memory tensors (`LocalComm`), which is what the
input-pipeline benchmark compares Petastorm against.

Per epoch: train `steps_per_epoch` batches, average the loss over ranks, compute the validation
NDCG@k (`recspark.training.validation`), print one line (loss, validation, samples/s, ETA),
checkpoint (rank 0, `recspark.training.checkpoint`) and stop early when validation has not
improved for `patience` epochs. The best epoch's parameters are returned.

Sampled losses train with sparse embedding gradients and `LazyAdam` (`recspark.training.optim`):
the ranks then exchange the rows a step touched, so the bytes a rank sends per step
(`EpochStats.sent_bytes_per_step`) follow the batch, not the catalog. The shared sampled
negatives are drawn from a generator seeded by the step, the same on every rank.

Input is a Petastorm converter (the stage) or `MemoryRows` (in-memory arrays, the benchmarks and
tests), either sharded by rank (`recspark.training.inputs`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from numpy.typing import NDArray

from recspark.results import EpochStats
from recspark.schemas import USER_INDEX
from recspark.training.checkpoint import Progress, cpu_copy, restore, save_checkpoint
from recspark.training.inputs import Batch, rank_batches
from recspark.training.optim import LazyAdam, coalesce_sparse_gradients, has_sparse_gradients
from recspark.training.params import StateDict, TrainParams
from recspark.training.transport import HorovodComm, TorchDistComm
from recspark.training.validation import Validation, validation_ndcg
from recspark.vocab import Launcher


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
        f"val ndcg@{params.eval_k} {stats.val_ndcg:.4f} ± {stats.val_ndcg_se:.4f}  "
        f"{stats.samples_per_s:,.0f} samples/s  "
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
    progress = restore(comm, params, model, optimizer)
    resumed_from = None if progress is None else progress.epoch
    progress = progress or Progress()
    first, started = progress.epoch + 1, time.perf_counter()
    for epoch in range(first, params.epochs + 1):
        if progress.stopped(params.patience):
            break
        run = _train_epoch(comm, model, optimizer, batches, params, epoch)
        metric, error = validation_ndcg(model, validation, params.eval_k, device)
        if not math.isfinite(run.loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss {run.loss}")
        stats = EpochStats(
            epoch, run.loss, metric, run.samples / run.seconds, run.seconds,
            sent_bytes_per_step=run.sent_bytes_per_step, val_ndcg_se=error,
            **{phase: getattr(run, phase) for phase in PHASES},
        )  # fmt: skip
        progress.record(stats, model, params.min_gain_se)
        if comm.rank == 0:
            eta = (time.perf_counter() - started) / (epoch - first + 1) * (params.epochs - epoch)
            _report(comm, params, progress.history[-1], eta, device)
            if params.checkpoint_path:
                save_checkpoint(params.checkpoint_path, params, model, optimizer, progress)
        if progress.stopped(params.patience) and comm.rank == 0:
            above = f" above {params.min_gain_se:g} standard errors" if params.min_gain_se else ""
            _say(
                f"[train] early stop: no validation gain{above} for {progress.bad_epochs} "
                f"epochs; best ndcg@{params.eval_k} {progress.best_metric:.4f}"
            )
    return FitResult(
        state_dict=progress.best_state or cpu_copy(model),
        best_val_ndcg=progress.best_metric,
        history=tuple(progress.history),
        device=device.type,
        ranks=comm.size,
        launcher=comm.name,
        resumed_from_epoch=resumed_from,
    )


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
    # Every rank says where it runs (Horovod prefixes it "[rank]<stderr>:"): the executor logs
    # show each rank's host, and the cluster test which worker ran which rank.
    _say(f"[train] rank {comm.rank} of {comm.size} on {socket.gethostname()}, pid {os.getpid()}")
    with rank_batches(source, comm, params) as batches:
        result = fit(comm, batches, validation, params, init_state, item_counts)
    result = dataclasses.replace(result, rank=comm.rank)
    return result if comm.rank == 0 or all_ranks else None
