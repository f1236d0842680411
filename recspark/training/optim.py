"""An Adam that updates only the embedding rows a step touched (for sparse gradients).

`torch.optim.Adam` rejects sparse gradients and `torch.optim.SparseAdam` rejects dense ones; a
model trained with a sampled loss has both (embedding tables, then MLPs and attention). `LazyAdam`
takes both in one optimizer, which is what Horovod's `DistributedOptimizer` wraps:

- a dense gradient gets Adam's update (L2 `weight_decay` added to the gradient, as torch's Adam);
- a sparse gradient (an `nn.Embedding(sparse=True)` table) is coalesced and updates the moments
  and values of its rows only ("lazy" Adam, as SparseAdam and TensorFlow's LazyAdam): rows not
  looked up keep their moments, so a step costs O(rows touched), not O(catalog). Weight decay
  applies to the touched rows.

Bias correction uses the parameter's step count, as SparseAdam does. The moment buffers are
created with the optimizer, so `hvd.broadcast_optimizer_state` finds a full state and does not
take a dummy step (which would move the step count away from a single process's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam for a mix of dense and sparse gradients (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"bad LazyAdam settings: lr={lr} betas={betas} eps={eps}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                self.state[param] = {
                    "step": torch.zeros((), dtype=torch.float64),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                state["step"] += 1
                if param.grad.is_sparse:
                    _sparse_update(param, param.grad, state, group)
                else:
                    _dense_update(param, param.grad, state, group)
        return loss


def _scales(state: dict[str, Any], group: dict[str, Any]) -> tuple[float, float]:
    """(step size, sqrt of the second moment's bias correction) at this step."""
    beta1, beta2 = group["betas"]
    step = float(state["step"])
    return group["lr"] / (1 - beta1**step), math.sqrt(1 - beta2**step)


def _dense_update(
    param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
) -> None:
    beta1, beta2 = group["betas"]
    if group["weight_decay"]:
        grad = grad.add(param, alpha=group["weight_decay"])
    state["exp_avg"].lerp_(grad, 1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size, correction = _scales(state, group)
    denom = (state["exp_avg_sq"].sqrt() / correction).add_(group["eps"])
    param.addcdiv_(state["exp_avg"], denom, value=-step_size)


def _sparse_update(
    param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
) -> None:
    """Adam on the gradient's rows: gathered once, updated in place, written back once (
    index_select / index_copy_ / index_add_, several times faster on CPU than indexing)."""
    beta1, beta2 = group["betas"]
    grad = grad.coalesce()
    rows, values = grad.indices()[0], grad.values()
    if group["weight_decay"]:
        values = values.add(param.index_select(0, rows), alpha=group["weight_decay"])
    exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
    exp_avg_sq.mul_(beta2).addcmul_(values, values, value=1 - beta2)
    state["exp_avg"].index_copy_(0, rows, exp_avg)
    state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
    step_size, correction = _scales(state, group)
    denom = exp_avg_sq.sqrt_().div_(correction).add_(group["eps"])
    # Rows are distinct (coalesced), so adding the step to each is Adam's update of it.
    param.index_add_(0, rows, exp_avg.div_(denom), alpha=-step_size)


def has_sparse_gradients(model: torch.nn.Module) -> bool:
    """Whether any embedding table of `model` gives sparse gradients."""
    return any(isinstance(m, torch.nn.Embedding) and m.sparse for m in model.modules())


def coalesce_sparse_gradients(model: torch.nn.Module) -> None:
    """Coalesce each sparse embedding gradient as it is computed, before the ranks exchange it:
    a table looked up many times in a batch (histories, shared input and output embeddings)
    otherwise sends one row per lookup instead of one per distinct row."""
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding) and module.sparse:
            module.weight.register_hook(lambda g: g.coalesce() if g.is_sparse else g)
