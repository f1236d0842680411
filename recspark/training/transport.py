"""How the ranks talk: `LocalComm` (one process), `HorovodComm` and `TorchDistComm`.

The epoch loop (`recspark.training.loop`) sees only this interface: average the ranks' gradients
(`exchange`, then `update`), sum metrics (`allreduce_sum`) and share objects (`broadcast_object`).
Horovod averages while backward runs (`DistributedOptimizer` over gloo/NCCL; sparse embedding
gradients by its sparse all-gather of each table's touched rows); torch.distributed, as
TorchDistributor starts it, all-reduces the dense gradients after backward and exchanges the
sparse ones by one packed all-gather of every table's rows (`recspark.training.exchange`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from recspark.training.exchange import (
    dense_gradients,
    packed,
    set_gathered,
    sparse_tables,
    to_gather,
)


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
