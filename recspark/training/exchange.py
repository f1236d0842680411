"""The torch.distributed ranks' gradient exchange for models with sparse embedding gradients.

Every step, after the last backward:
- the dense gradients (MLPs, attention, positions) are averaged in one flattened all-reduce;
- every sparse embedding table's touched rows travel in one packed all-gather: the row counts of
  each table (a few integers), the row indices of all tables, their gradient rows, flattened.
  That is three all-gathers a step whatever the number of tables, instead of two per table.

Each rank then holds the same uncoalesced sparse gradient per table, the mean over ranks
(`LazyAdam` coalesces it), so every rank applies the same update. The launcher gathers
(`to_gather`, along the first dimension, sizes differing between ranks) and hands the result to
`set_gathered`. Horovod does not use it: its own sparse path (an all-gather per table, overlapped
with backward by `DistributedOptimizer`) measured faster here than this packed exchange after
backward (`benchmarks/train.py --catalogs`, docs/benchmarks/train.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SparseParts:
    """This rank's touched rows of every sparse table, packed for one all-gather each."""

    tables: list[torch.Tensor]  # the same order on every rank
    counts: torch.Tensor  # (T,) rows per table
    rows: torch.Tensor  # (R,) the tables' row indices, table after table
    values: torch.Tensor  # (sum of rows x width,) their gradient rows, flattened


def sparse_tables(model: torch.nn.Module) -> list[torch.Tensor]:
    """The weights of `model`'s embedding tables with sparse gradients, in module order."""
    tables = []
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and module.sparse:
            tables.append(module.weight)
    return tables


def packed(tables: list[torch.Tensor]) -> SparseParts:
    """The tables' sparse gradients (none: no rows), packed as they are: the gradient hook of
    `coalesce_sparse_gradients` already made their rows distinct, and `LazyAdam` sums any
    repeated row of the gathered gradient, so no second sort here."""
    counts, rows, values = [], [], []
    for table in tables:
        grad = table.grad
        if grad is None:
            counts.append(0)
            continue
        counts.append(grad._nnz())
        rows.append(grad._indices()[0])
        values.append(grad._values().reshape(-1))
    device = tables[0].device
    return SparseParts(
        tables,
        torch.tensor(counts, dtype=torch.long, device=device),
        torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=device),
        torch.cat(values) if values else torch.zeros(0, device=device),
    )


def to_gather(parts: SparseParts) -> list[torch.Tensor]:
    """The three tensors every rank all-gathers: counts (1, T), rows, flattened values."""
    return [parts.counts.unsqueeze(0), parts.rows, parts.values]


def set_gathered(parts: SparseParts, gathered: list[torch.Tensor], size: int) -> None:
    """Replace each table's gradient by the mean over the ranks, from the gathered
    `to_gather` tensors (every rank's, rank after rank)."""
    all_counts, all_rows, all_values = gathered  # (size, T), (R_all,), (V_all,)
    widths = [int(t[0].numel()) for t in parts.tables]
    rows: list[list[torch.Tensor]] = [[] for _ in parts.tables]
    values: list[list[torch.Tensor]] = [[] for _ in parts.tables]
    row_at = value_at = 0
    for rank in range(size):
        for t, width in enumerate(widths):
            n = int(all_counts[rank, t])
            rows[t].append(all_rows[row_at : row_at + n])
            values[t].append(all_values[value_at : value_at + n * width].view(n, width))
            row_at, value_at = row_at + n, value_at + n * width
    for t, table in enumerate(parts.tables):
        indices = torch.cat(rows[t]).unsqueeze(0)
        mean = torch.cat(values[t]) / size
        table.grad = torch.sparse_coo_tensor(
            indices, mean.view(-1, *table.shape[1:]), table.shape, check_invariants=False
        )


def dense_gradients(model: torch.nn.Module, sparse: list[torch.Tensor]) -> list[torch.Tensor]:
    """The dense gradients to average, zeros where a parameter got none this step (every rank
    must reduce the same tensors)."""
    skip = {id(t) for t in sparse}
    grads = []
    for param in model.parameters():
        if id(param) in skip or not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    return grads
