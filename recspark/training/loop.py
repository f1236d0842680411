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
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recspark.schemas import ITEM_INDEX, USER_INDEX

HISTORY = "history"


@dataclass(frozen=True)
class TrainParams:
    model: str
    n_users: int
    n_items: int
    embedding_dim: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    steps_per_epoch: int
    loss: str = "softmax"
    negatives: int = 0
    use_history: bool = True
    history_dropout: float = 0.0
    sasrec: dict[str, Any] = field(default_factory=dict)
    patience: int = 3
    eval_k: int = 10
    checkpoint_path: str | None = None
    fingerprint: str = ""
    threads: int = 0  # torch intra-op threads per rank on CPU; 0: the cores / ranks per machine
    reader_pool: str = "thread"  # Petastorm: thread (decode beside training) | dummy (inline)


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

    def after_backward(self, model: Any) -> None:
        return None


class HorovodComm(LocalComm):
    """Horovod: gradients averaged inside `DistributedOptimizer.step` (gloo on CPU, NCCL on GPU)."""

    name = "horovod"

    def __init__(self) -> None:
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        self._calls = 0

    def allreduce_sum(self, tensor: Any) -> Any:
        self._calls += 1
        return self.hvd.allreduce(tensor, op=self.hvd.Sum, name=f"sum_{self._calls}")

    def broadcast_object(self, obj: Any) -> Any:
        self._calls += 1
        return self.hvd.broadcast_object(obj, root_rank=0, name=f"object_{self._calls}")

    def prepare(self, model: Any, optimizer: Any) -> Any:
        optimizer = self.hvd.DistributedOptimizer(
            optimizer, named_parameters=model.named_parameters()
        )
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return optimizer


class TorchDistComm(LocalComm):
    """torch.distributed, as started by TorchDistributor (env:// rendezvous; gloo or NCCL)."""

    name = "torch_distributor"

    def __init__(self, backend: str) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        self.dist = dist
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.size)))

    def allreduce_sum(self, tensor: Any) -> Any:
        out = tensor.clone()
        self.dist.all_reduce(out)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        holder = [obj]
        self.dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def prepare(self, model: Any, optimizer: Any) -> Any:
        for tensor in model.state_dict().values():
            self.dist.broadcast(tensor, src=0)
        return optimizer

    def after_backward(self, model: Any) -> None:
        for param in model.parameters():
            if param.grad is not None:
                self.dist.all_reduce(param.grad)
                param.grad /= self.size


# -- the loop ------------------------------------------------------------------------------------
def validation_ndcg(model: Any, validation: dict[str, Any], k: int, device: Any) -> float:
    """Mean NDCG@k of each validation row's single target, the user's history excluded."""
    import torch

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
            }
            scores = model.validation_logits(batch).float()
            n_items = scores.shape[1]
            # The history is padded with n_items: one extra column takes the padding.
            seen = torch.zeros(len(scores), n_items + 1, dtype=torch.bool, device=device)
            seen.scatter_(1, batch[HISTORY].clamp(max=n_items), True)
            target = batch[ITEM_INDEX].unsqueeze(1)
            target_scores = scores.gather(1, target)
            scores = scores.masked_fill(seen[:, :n_items], float("-inf"))
            rank = (scores > target_scores).sum(1)
            gains = torch.where(rank < k, 1.0 / torch.log2(rank.float() + 2.0), 0.0)
            total += float(gains.sum())
    model.train()
    return total / n


def _save_checkpoint(path: str, state: dict[str, Any]) -> None:
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)


def _load_checkpoint(path: str | None, fingerprint: str) -> dict[str, Any] | None:
    import torch

    if not path or not Path(path).exists():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        print(
            f"[train] checkpoint {path} is from other settings: starting over",
            file=sys.stderr,
            flush=True,
        )
        return None
    return state


def _warm_start(model: Any, init_state: dict[str, Any]) -> list[str]:
    """Copy the champion's parameters into the new model; larger id tables keep new rows fresh."""
    import torch

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


def fit(
    comm: Any,
    batches: Iterator[dict[str, Any]],
    validation: dict[str, Any],
    params: TrainParams,
    init_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on `batches` (an endless iterator of dicts of tensors) for the configured epochs."""
    import torch

    from recspark.models.registry import build_model

    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(comm.local_rank)
        device = torch.device("cuda", comm.local_rank)
    else:
        # Ranks share the machine's cores: a share of the threads each avoids oversubscription.
        threads = params.threads or max(1, (os.cpu_count() or 1) // comm.local_size)
        torch.set_num_threads(threads)
        device = torch.device("cpu")
    torch.manual_seed(params.seed)
    model: Any = build_model(params)
    if init_state and comm.rank == 0:
        copied = _warm_start(model, init_state)
        print(f"[train] warm start from the champion: {len(copied)} tensors", file=sys.stderr)
    model = model.to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params.learning_rate * comm.size, weight_decay=params.weight_decay
    )
    optimizer = comm.prepare(model, optimizer)

    checkpoint = None
    if comm.rank == 0:
        checkpoint = _load_checkpoint(params.checkpoint_path, params.fingerprint)
    checkpoint = comm.broadcast_object(checkpoint)
    history: list[dict[str, float]] = []
    first_epoch, best_metric, best_state, bad_epochs = 1, -math.inf, None, 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        first_epoch = checkpoint["epoch"] + 1
        best_metric, best_state = checkpoint["best_metric"], checkpoint["best_state"]
        bad_epochs, history = checkpoint["bad_epochs"], checkpoint["history"]
        if comm.rank == 0:
            print(
                f"[train] resumed from the checkpoint of epoch {checkpoint['epoch']}",
                file=sys.stderr,
                flush=True,
            )
    started = time.perf_counter()
    stopped_early = bad_epochs >= params.patience > 0
    for epoch in range(first_epoch, params.epochs + 1):
        if stopped_early:
            break
        model.train()
        t0 = time.perf_counter()
        loss_sum, samples = 0.0, 0
        for _ in range(params.steps_per_epoch):
            batch = {
                key: value.to(device, dtype=torch.long) for key, value in next(batches).items()
            }
            optimizer.zero_grad()
            loss = model.batch_loss(batch, params.loss, params.negatives)
            loss.backward()
            comm.after_backward(model)
            optimizer.step()
            rows = len(batch[USER_INDEX])
            loss_sum += float(loss.item()) * rows
            samples += rows
        seconds = time.perf_counter() - t0
        totals = comm.allreduce_sum(torch.tensor([loss_sum, float(samples)], dtype=torch.float64))
        epoch_loss = float(totals[0] / max(float(totals[1]), 1.0))
        throughput = float(totals[1]) / seconds
        metric = validation_ndcg(model, validation, params.eval_k, device)
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss {epoch_loss}")
        if math.isnan(metric) or metric > best_metric + 1e-5:
            best_metric = metric if not math.isnan(metric) else best_metric
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        history.append(
            {
                "epoch": epoch,
                "loss": epoch_loss,
                "val_ndcg": metric,
                "samples_per_s": throughput,
                "seconds": seconds,
            }
        )
        if comm.rank == 0:
            done = epoch - first_epoch + 1
            eta = (time.perf_counter() - started) / done * (params.epochs - epoch)
            print(
                f"[train] epoch {epoch}/{params.epochs}  loss {epoch_loss:.4f}  "
                f"val ndcg@{params.eval_k} {metric:.4f}  {throughput:,.0f} samples/s  "
                f"({comm.size} ranks, {comm.name}, {device.type})  eta {eta:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            if params.checkpoint_path:
                _save_checkpoint(
                    params.checkpoint_path,
                    {
                        "fingerprint": params.fingerprint,
                        "epoch": epoch,
                        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "optimizer": copy.deepcopy(optimizer.state_dict()),
                        "best_metric": best_metric,
                        "best_state": best_state,
                        "bad_epochs": bad_epochs,
                        "history": history,
                    },
                )
        if params.patience > 0 and bad_epochs >= params.patience:
            if comm.rank == 0:
                print(
                    f"[train] early stop: no validation gain for {bad_epochs} epochs; "
                    f"best ndcg@{params.eval_k} {best_metric:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
            break
    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "state_dict": best_state,
        "best_val_ndcg": best_metric,
        "history": history,
        "device": device.type,
        "ranks": comm.size,
        "launcher": comm.name,
        "resumed_from_epoch": None if checkpoint is None else checkpoint["epoch"],
    }


def memory_batches(rows: dict[str, Any], batch_size: int, seed: int) -> Iterator[dict[str, Any]]:
    """An endless iterator over in-memory rows (dict of equal-length arrays), reshuffled per pass.

    The same loop as Petastorm feeds, for the input-pipeline benchmark and for debugging.
    """
    import torch

    tensors = {key: torch.as_tensor(value) for key, value in rows.items()}
    n = len(next(iter(tensors.values())))
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield {key: value[index] for key, value in tensors.items()}


def petastorm_batches(converter: Any, comm: Any, params: TrainParams) -> Any:
    """A context manager yielding this rank's shard as an endless batch iterator."""
    pool: dict[str, Any] = (
        {"reader_pool_type": "dummy"} if params.reader_pool == "dummy" else {"workers_count": 1}
    )
    return converter.make_torch_dataloader(
        batch_size=params.batch_size,
        num_epochs=None,
        cur_shard=comm.rank,
        shard_count=comm.size,
        shuffle_row_groups=True,
        seed=params.seed,
        **pool,
    )


def train_worker(
    launcher: str,
    converter: Any,
    validation: dict[str, Any],
    params: TrainParams,
    init_state: dict[str, Any] | None = None,
    all_ranks: bool = False,
) -> dict[str, Any] | None:
    """What each rank runs: set up communication, read its Petastorm shard, `fit`.

    Returns the result on rank 0 and None on the others (on every rank with `all_ranks`, which
    the tests use to compare the ranks' parameters).
    """
    import torch

    if launcher == "horovod":
        comm: Any = HorovodComm()
    else:
        comm = TorchDistComm("nccl" if torch.cuda.is_available() else "gloo")
    with petastorm_batches(converter, comm, params) as loader:
        result = fit(comm, iter(loader), validation, params, init_state)
    result["rank"] = comm.rank
    return result if comm.rank == 0 or all_ranks else None
