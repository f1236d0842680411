"""Benchmark: int8 item quantization for top-K scoring, speed and quality against float32.

Scores users against the whole catalog the way `recspark.scoring.udf` does (one product per block
of users, seen items excluded, top-K), with each variant:

* float32   `recspark.ranking.topk.top_k` on float32 factors (the baseline, ground truth)
* int8      `recspark.ranking.quantize.top_k_int8`: int8 items, users quantized per block,
            int8 x int8 -> int32 product (`torch._int_mm`), rescaled to float32
* int8-deq  int8 item storage, dequantized to float32 once, then `top_k` (the memory gain of
            int8 at float32 speed; its quality is that of quantizing the items alone)
* int8-bf16 `top_k_int8(..., compute="bfloat16")`: int8 item storage, dequantized to bfloat16
            once, product and top-K in bfloat16
* bf16      users and items in bfloat16, product and top-K in bfloat16
* fp16      the same in float16

Item bytes: shipped = what is broadcast to / cached by each worker, in memory = what scoring
holds. Speed: users/s for each variant and block size (users per product), the best of
--repeats runs over the same --timed-users users. By default the clock is the process's CPU
time, not wall time: on a shared machine wall time mostly measures the other processes (with
--threads 1 and an idle machine the two agree; with more threads CPU time gives users per
CPU-second, use --clock wall for the wall-clock rate).

Quality, on --quality-users users: the float32 top-K is the ground truth; mean overlap@K (share
of the float top-K found) and NDCG@K with the float top-K as the relevant items (float32
scores 1.0 by construction, so 1 - NDCG is the relative loss).

Factors are random (low rank, item norms spread like popularity) unless --factors names an .npz
file with arrays `users` (n_users, d) and `items` (n_items, d), e.g. a trained model's factors.

Usage:
    python benchmarks/quantize.py [--users 100000 --items 20000 --dim 64 --k 10]
        [--blocks 64 256 1024 4096] [--threads 1] [--factors factors.npz]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from recspark.ranking.factors import IdFactors
from recspark.ranking.quantize import QuantizedFactors, int_mm_works, top_k_int8
from recspark.ranking.topk import ScoreBuffer, top_k

TopK = Callable[[NDArray[Any], list[Any], int], tuple[NDArray[Any], NDArray[Any]]]


def random_factors(
    n_users: int, n_items: int, dim: int, rank: int, seed: int
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Low-rank Gaussian factors; item norms lognormal (popular items score higher)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(rank, dim)).astype(np.float32) / np.sqrt(rank)
    users = rng.normal(size=(n_users, rank)).astype(np.float32) @ mix
    items = rng.normal(size=(n_items, rank)).astype(np.float32) @ mix
    items *= rng.lognormal(0.0, 0.5, size=(n_items, 1)).astype(np.float32)
    return users, items


def _top_k_half(dtype: torch.dtype, items: NDArray[Any]) -> TopK:
    """top_k with users and items in `dtype` (bfloat16 / float16): product and top-K in it."""
    items_t = torch.from_numpy(items).to(dtype).T

    def run(users: NDArray[Any], seen: list[Any], k: int) -> tuple[NDArray[Any], NDArray[Any]]:
        scores = torch.from_numpy(users).to(dtype) @ items_t
        rows = [np.full(len(s), r) for r, s in enumerate(seen) if s is not None and len(s)]
        if rows:
            cols = [np.asarray(s, dtype=np.int64) for s in seen if s is not None and len(s)]
            scores[
                torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))
            ] = float("-inf")
        best = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        out_items = best.indices.numpy().copy()
        values = best.values.float().numpy()
        out_items[~np.isfinite(values)] = -1
        return out_items, values

    return run


def _scorer(name: str, users: NDArray[Any], items: NDArray[Any]) -> tuple[TopK, int, int]:
    """The scorer called `name`, the item bytes it ships, and those it holds when scoring."""
    if name == "float32":
        buffer = ScoreBuffer()  # one block reused, as a worker's Ranker does

        def float32(u: NDArray[Any], s: list[Any], k: int) -> tuple[NDArray[Any], NDArray[Any]]:
            return top_k(u, items, s, k, buffer)

        return float32, items.nbytes, items.nbytes
    if name in ("bf16", "fp16"):
        half = _top_k_half(torch.bfloat16 if name == "bf16" else torch.float16, items)
        return half, items.size * 2, items.size * 2
    if name not in ("int8", "int8-deq", "int8-bf16"):
        raise SystemExit(f"unknown variant {name!r}")
    qf = QuantizedFactors.from_factors(IdFactors(users, items))
    if name == "int8-deq":
        deq = qf.items
        deq_buffer = ScoreBuffer()

        def int8_deq(u: NDArray[Any], s: list[Any], k: int) -> tuple[NDArray[Any], NDArray[Any]]:
            return top_k(u, deq, s, k, deq_buffer)

        return int8_deq, qf.nbytes, deq.nbytes
    compute: Literal["int8", "bfloat16"] = "int8" if name == "int8" else "bfloat16"
    held = qf.nbytes
    if compute == "bfloat16":
        held += qf.bf16_items.numel() * 2  # dequantized once, as a worker would

    def int8(u: NDArray[Any], s: list[Any], k: int) -> tuple[NDArray[Any], NDArray[Any]]:
        return top_k_int8(u, qf, s, k, compute=compute)

    return int8, qf.nbytes, held


def variants(
    names: list[str], users: NDArray[Any], items: NDArray[Any]
) -> tuple[dict[str, TopK], dict[str, tuple[int, int]], dict[str, float]]:
    """Scorers by name, the item bytes each ships and holds, and seconds to prepare them."""
    scorers: dict[str, TopK] = {}
    nbytes: dict[str, tuple[int, int]] = {}
    prep: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        scorer, shipped, held = _scorer(name, users, items)
        prep[name] = time.perf_counter() - started
        scorers[name], nbytes[name] = scorer, (shipped, held)
    return scorers, nbytes, prep


def time_variants(
    scorers: dict[str, TopK],
    users: NDArray[Any],
    seen: list[Any],
    k: int,
    block: int,
    repeats: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """Best users/s of each scorer over `repeats` runs; the runs of the variants interleave."""
    best = dict.fromkeys(scorers, float("inf"))
    for _ in range(repeats):
        for name, scorer in scorers.items():
            started = clock()
            for start in range(0, len(users), block):
                scorer(users[start : start + block], seen[start : start + block], k)
            best[name] = min(best[name], clock() - started)
    return {name: len(users) / seconds for name, seconds in best.items()}


def quality(truth: NDArray[Any], got: NDArray[Any], k: int) -> tuple[float, float]:
    """(mean overlap@k, mean NDCG@k) of `got` lists with the `truth` lists as relevant items."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    overlaps, ndcgs = [], []
    for want, have in zip(truth, got, strict=True):
        relevant = set(want[want >= 0].tolist())
        if not relevant:
            continue
        hits = np.array([item in relevant for item in have[:k]], dtype=np.float64)
        overlaps.append(hits.sum() / len(relevant))
        ndcgs.append((hits * discounts).sum() / discounts[: len(relevant)].sum())
    return float(np.mean(overlaps)), float(np.mean(ndcgs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="random users (100000)")
    parser.add_argument("--items", type=int, default=20_000, help="random items (20000)")
    parser.add_argument("--dim", type=int, default=64, help="factor dimension (64)")
    parser.add_argument("--rank", type=int, default=32, help="rank of the random factors (32)")
    parser.add_argument("--k", type=int, default=10, help="top-K (10)")
    parser.add_argument("--seen", type=int, default=20, help="random seen items per user (20)")
    parser.add_argument(
        "--blocks",
        type=int,
        nargs="+",
        default=[64, 256, 1024, 2048],
        help="users per product (64 256 1024 2048; the scorer's default batch is 2048)",
    )
    parser.add_argument(
        "--timed-users", type=int, default=8192, help="users scored per timed run (8192)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (3)")
    parser.add_argument(
        "--quality-users", type=int, default=4096, help="users for the quality check (4096)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["float32", "int8", "int8-bf16", "bf16"],
        help="of float32 int8 int8-deq int8-bf16 bf16 fp16 (float32 int8 int8-bf16 bf16)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a task slot)")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default="cpu", help="time measured (cpu: process CPU)"
    )
    parser.add_argument("--factors", type=Path, help=".npz with arrays `users` and `items`")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.factors is not None:
        with np.load(args.factors) as data:
            users = np.ascontiguousarray(data["users"], dtype=np.float32)
            items = np.ascontiguousarray(data["items"], dtype=np.float32)
        source = str(args.factors)
    else:
        users, items = random_factors(args.users, args.items, args.dim, args.rank, args.seed)
        source = f"random rank-{args.rank}"
    names = list(dict.fromkeys(["float32", *args.variants]))
    n_users, n_items, dim = users.shape[0], items.shape[0], items.shape[1]
    rng = np.random.default_rng(args.seed + 1)
    n_seen = min(args.seen, n_items)
    seen = [rng.choice(n_items, size=n_seen, replace=False) for _ in range(n_users)]
    scorers, nbytes, prep = variants(names, users, items)

    print(
        f"{source} factors: {n_users} users x {n_items} items, d={dim}, K={args.k}, "
        f"{n_seen} seen per user; torch {torch.__version__}, {args.threads} thread(s), "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"torch._int_mm used: {int_mm_works()}\n"
    )
    timed = users[: min(args.timed_users, n_users)]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    speeds = {
        block: time_variants(scorers, timed, seen, args.k, block, args.repeats, clock)
        for block in args.blocks
    }
    head = " | ".join(f"block {b}" for b in args.blocks)
    unit = "users per CPU-second" if args.clock == "cpu" else "users/s, wall clock"
    print(f"Speed, {unit} (best of {args.repeats} runs of {len(timed)} users)\n")
    print(f"| variant | items shipped | items in memory | prepare s | {head} |")
    print("|---|---:|---:|---:|" + "---:|" * len(args.blocks))
    for name in names:
        cells = " | ".join(
            f"{speeds[b][name]:,.0f} ({speeds[b][name] / speeds[b]['float32']:.2f}x)"
            for b in args.blocks
        )
        shipped, held = (f"{n / 2**20:.1f} MiB" for n in nbytes[name])
        print(f"| {name} | {shipped} | {held} | {prep[name]:.3f} | {cells} |")

    checked = users[: min(args.quality_users, n_users)]
    block = max(args.blocks)
    results: dict[str, NDArray[Any]] = {}
    for name, scorer in scorers.items():
        parts = [
            scorer(checked[s : s + block], seen[s : s + block], args.k)[0]
            for s in range(0, len(checked), block)
        ]
        results[name] = np.concatenate(parts)
    print(f"\nQuality against float32 top-{args.k} ({len(checked)} users)\n")
    print(f"| variant | overlap@{args.k} | NDCG@{args.k} | NDCG change |")
    print("|---|---:|---:|---:|")
    for name in names:
        overlap, ndcg = quality(results["float32"], results[name], args.k)
        print(f"| {name} | {overlap:.4f} | {ndcg:.4f} | {100 * (ndcg - 1):+.2f} % |")


if __name__ == "__main__":
    main()
