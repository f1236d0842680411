"""Benchmark: recspark's SASRec on per-user sequence files under the S3Rec / BSARec protocol.

No Spark: the file is read into numpy, the model (`recspark.models.sasrec.SASRec`) is trained in
one process with plain torch. The input is one line per user, `user item item ...`, items in time
order (the S3Rec CIKM 2020 preprocessing of Amazon Beauty, Sports, ...).

Protocol (leave-one-out, as in S3Rec and BSARec):
- test: each user's last item; input: every item before it;
- validation: each user's second-last item; input: the items before it; never a training target;
- training: each user's sequence without its last two items, a target at every position
  (next-item full-catalog cross-entropy, `SASRec.loss(..., n_negatives=None)`);
- full ranking over the catalog, the user's earlier items masked (the target keeps its score),
  at most the last `max_len` items as input; HR@10 and NDCG@10 over all users;
- early stopping on validation NDCG@10 (`--patience` epochs without gain), test metrics of the
  best validation epoch.

The optimizer mirrors `recspark.training.loop` (Adam, L2 `weight_decay`, no clipping, constant
learning rate, every batch full: the remainder of a shuffled pass is dropped) unless
`--optimizer adamw`, `--warmup-epochs` or `--clip` say otherwise.

Usage:
    python benchmarks/sequential.py ../shared/data/s3rec-amazon/Beauty.txt \
        [--dim 64 --layers 2 --heads 2 --dropout 0.5 --lr 1e-3 --batch-size 128 ...] [--json out]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from recspark.models.sasrec import SASRec

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Data:
    """Sequences as 0-based item indices; `n_items` is also the padding index."""

    n_items: int
    train: list[IntArray]  # sequence minus its last two items
    valid_target: IntArray
    test_target: IntArray
    full: list[IntArray]  # the whole sequence (inputs of test = full[:-1])


def load(path: str) -> Data:
    """Read `user item item ...` lines; item ids are mapped densely in order of appearance."""
    index: dict[str, int] = {}
    seqs: list[IntArray] = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:  # a user needs >= 3 items: training, validation, test
            continue
        seqs.append(np.array([index.setdefault(f, len(index)) for f in fields[1:]], np.int64))
    return Data(
        n_items=len(index),
        train=[s[:-2] for s in seqs],
        valid_target=np.array([s[-2] for s in seqs]),
        test_target=np.array([s[-1] for s in seqs]),
        full=seqs,
    )


def left_pad(rows: list[IntArray], pad: int, width: int | None = None) -> torch.Tensor:
    """Rows -> (B, width) left-padded tensor (width: the longest row)."""
    width = width or max(1, max(len(r) for r in rows))
    out = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        if len(r):
            out[i, width - len(r) :] = r[-width:]
    return torch.from_numpy(out)


def training_batches(
    data: Data, max_len: int, batch_size: int, rng: np.random.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled pass: (input, target) pairs, each row the last max_len + 1 training items."""
    pad = data.n_items
    windows = [s[-(max_len + 1) :] for s in data.train if len(s) >= 2]
    order = rng.permutation(len(windows))
    batches = []
    for start in range(0, len(order) - batch_size + 1, batch_size):
        rows = [windows[i] for i in order[start : start + batch_size]]
        inp = left_pad([r[:-1] for r in rows], pad)
        target = left_pad([r[1:] for r in rows], pad)
        batches.append((inp, target))
    return batches


@torch.no_grad()
def rank_metrics(
    model: SASRec, inputs: list[IntArray], targets: IntArray, k: int, batch_size: int = 1024
) -> dict[str, float]:
    """HR@k and NDCG@k of each row's target over the full catalog, the row's input items masked."""
    model.eval()
    n_items, max_len = model.n_items, model.max_len
    hits, gains = 0.0, 0.0
    # Users in order of length, each batch padded to its longest row only: left padding changes
    # no output of the model, and short batches encode faster.
    order = np.argsort([len(r) for r in inputs], kind="stable")
    items = model.item_vectors().T
    for start in range(0, len(inputs), batch_size):
        index = order[start : start + batch_size]
        rows = [inputs[i] for i in index]
        seq = left_pad([r[-max_len:] for r in rows], n_items)
        scores = model.user_vectors_from_sequences(seq) @ items
        target = torch.as_tensor(targets[index]).unsqueeze(1)
        target_score = scores.gather(1, target)
        seen = torch.zeros(len(rows), n_items + 1, dtype=torch.bool)
        seen.scatter_(1, left_pad(rows, n_items), True)
        scores = scores.masked_fill(seen[:, :n_items], float("-inf"))
        rank = (scores > target_score).sum(1).float()
        hit = rank < k
        hits += float(hit.sum())
        gains += float(torch.where(hit, 1.0 / torch.log2(rank + 2.0), 0.0).sum())
    model.train()
    return {f"hr@{k}": hits / len(inputs), f"ndcg@{k}": gains / len(inputs)}


def build_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    if args.optimizer == "adamw":
        # No decay on biases, layer norms and positions: the usual split.
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos_emb" not in n]
        other = [p for n, p in model.named_parameters() if p.dim() < 2 or "pos_emb" in n]
        groups: list[dict[str, Any]] = [{"params": decay}, {"params": other, "weight_decay": 0.0}]
        return torch.optim.AdamW(
            groups, lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, args.beta2)
        )
    return torch.optim.Adam(
        model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, args.beta2)
    )


def train_epoch(
    model: SASRec,
    optimizer: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    args: argparse.Namespace,
    step: int,
    steps_per_epoch: int,
) -> tuple[float, int]:
    """(mean loss over batches, global step after the epoch)."""
    model.train()
    total = 0.0
    warmup = args.warmup_epochs * steps_per_epoch
    for inp, target in batches:
        step += 1
        if warmup:
            for group in optimizer.param_groups:
                group["lr"] = args.lr * min(1.0, step / warmup)
        optimizer.zero_grad()
        loss = model.loss(inp, target, None)
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        total += float(loss.detach())
    return total / max(1, len(batches)), step


def build_model(data: Data, args: argparse.Namespace) -> SASRec:
    extra: dict[str, Any] = {}
    if args.temperature is not None:
        extra["learn_temperature"] = args.temperature
    return SASRec(
        data.n_items,
        args.dim,
        args.max_len,
        n_layers=args.layers,
        n_heads=args.heads,
        dropout=args.dropout,
        item_bias=args.item_bias,
        **extra,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load(args.path)
    n_users = len(data.full)
    print(
        f"{args.path}: {n_users} users, {data.n_items} items, "
        f"{sum(len(s) for s in data.full)} interactions",
        flush=True,
    )
    model = build_model(data, args)
    optimizer = build_optimizer(model, args)
    valid_inputs = data.train
    test_inputs = [s[:-1] for s in data.full]
    best: dict[str, Any] = {"val_ndcg@10": -1.0}
    history, step, bad, started = [], 0, 0, time.perf_counter()
    steps_per_epoch = len(data.train) // args.batch_size
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        batches = training_batches(data, args.max_len, args.batch_size, rng)
        loss, step = train_epoch(model, optimizer, batches, args, step, steps_per_epoch)
        t_train = time.perf_counter() - t0
        val = rank_metrics(model, valid_inputs, data.valid_target, 10)
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "loss": loss,
            "val_ndcg@10": val["ndcg@10"],
            "val_hr@10": val["hr@10"],
            "train_s": t_train,
            "s": seconds,
        }
        history.append(row)
        improved = val["ndcg@10"] > best["val_ndcg@10"] + 1e-5
        if improved:
            bad = 0
            test = rank_metrics(model, test_inputs, data.test_target, 10)
            best = {
                "epoch": epoch,
                "val_ndcg@10": val["ndcg@10"],
                "val_hr@10": val["hr@10"],
                "test_ndcg@10": test["ndcg@10"],
                "test_hr@10": test["hr@10"],
            }
        else:
            bad += 1
        print(
            f"epoch {epoch:3d}  loss {loss:.4f}  val ndcg@10 {val['ndcg@10']:.4f}  "
            f"hr@10 {val['hr@10']:.4f}  {t_train:.1f}s train  {seconds:.1f}s"
            f"{'  *' if improved else ''}",
            flush=True,
        )
        elapsed = time.perf_counter() - started
        if bad >= args.patience > 0 or (args.time_budget_s and elapsed > args.time_budget_s):
            break
    result = {
        "data": args.path,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "best": best,
        "epochs_run": len(history),
        "seconds": time.perf_counter() - started,
        "stopped": "patience"
        if bad >= args.patience > 0
        else ("time_budget" if len(history) < args.epochs else "max_epochs"),
        "history": history,
    }
    print(
        f"RESULT {Path(args.path).stem}: best epoch {best.get('epoch')} of {len(history)}  "
        f"val ndcg@10 {best['val_ndcg@10']:.4f}  test ndcg@10 {best.get('test_ndcg@10', 0):.4f}"
        f"  test hr@10 {best.get('test_hr@10', 0):.4f}  ({result['seconds']:.0f}s, "
        f"stopped: {result['stopped']})",
        flush=True,
    )
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("path", help="per-user sequence file: `user item item ...` per line")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--item-bias", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="learned logit temperature, initial value (default: off)",
    )
    p.add_argument(
        "--optimizer",
        choices=("adam", "adamw"),
        default="adam",
        help="adam: as recspark.training.loop (L2 weight decay); adamw: decoupled",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.0, help="gradient-norm clip; 0: none")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=200, help="at most")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--time-budget-s", type=float, default=0.0, help="stop after; 0: none")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the result here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if math.isfinite(result["best"]["val_ndcg@10"]) else 1


if __name__ == "__main__":
    sys.exit(main())
