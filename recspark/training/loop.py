"""The train function every Horovod rank runs (imported by the executors, not the driver)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from recspark.schemas import ITEM_INDEX, LABEL, USER_INDEX


@dataclass(frozen=True)
class TrainParams:
    n_users: int
    n_items: int
    embedding_dim: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    steps_per_epoch: int


def horovod_train(converter: Any, params: TrainParams) -> dict[str, Any] | None:
    """Data-parallel training of the two-tower model on one Horovod rank.

    Each rank reads its own shard of the Petastorm dataset; gradients are averaged by
    `hvd.DistributedOptimizer` (gloo on CPU, NCCL on GPU); rank 0's initial parameters are
    broadcast so every rank starts equal; the learning rate is scaled by the number of ranks.

    Returns:
        On rank 0: the trained state dict (CPU tensors), per-epoch history and the device used.
        On the other ranks: None.
    """
    import horovod.torch as hvd
    import torch

    from recspark.models.two_tower import TwoTower

    hvd.init()
    torch.manual_seed(params.seed)
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(hvd.local_rank())
        device = torch.device("cuda", hvd.local_rank())
    else:
        # Ranks share the machine's cores: one intra-op thread each avoids oversubscription.
        torch.set_num_threads(max(1, (torch.get_num_threads() // hvd.local_size())))
        device = torch.device("cpu")

    model = TwoTower(params.n_users, params.n_items, params.embedding_dim).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params.learning_rate * hvd.size(), weight_decay=params.weight_decay
    )
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    history: list[dict[str, float]] = []
    started = time.perf_counter()
    with converter.make_torch_dataloader(
        batch_size=params.batch_size,
        num_epochs=None,
        cur_shard=hvd.rank(),
        shard_count=hvd.size(),
        shuffle_row_groups=True,
        seed=params.seed,
        workers_count=1,
    ) as loader:
        batches = iter(loader)
        for epoch in range(1, params.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            loss_sum, samples = 0.0, 0
            for _ in range(params.steps_per_epoch):
                batch = next(batches)
                users = batch[USER_INDEX].to(device, dtype=torch.long)
                items = batch[ITEM_INDEX].to(device, dtype=torch.long)
                labels = batch[LABEL].to(device, dtype=torch.float32)
                optimizer.zero_grad()
                loss = loss_fn(model(users, items), labels)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.item()) * len(labels)
                samples += len(labels)
            seconds = time.perf_counter() - t0
            totals = hvd.allreduce(
                torch.tensor([loss_sum, float(samples)]), op=hvd.Sum, name=f"epoch_totals_{epoch}"
            )
            epoch_loss = float(totals[0] / totals[1])
            throughput = float(totals[1]) / seconds
            history.append(
                {
                    "epoch": epoch,
                    "loss": epoch_loss,
                    "samples_per_s": throughput,
                    "seconds": seconds,
                }
            )
            if hvd.rank() == 0:
                elapsed = time.perf_counter() - started
                eta = elapsed / epoch * (params.epochs - epoch)
                print(
                    f"[train] epoch {epoch}/{params.epochs}  loss {epoch_loss:.4f}  "
                    f"{throughput:,.0f} samples/s  ({hvd.size()} ranks, {device.type})  "
                    f"eta {eta:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    if hvd.rank() != 0:
        return None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"state_dict": state, "history": history, "device": device.type, "ranks": hvd.size()}
