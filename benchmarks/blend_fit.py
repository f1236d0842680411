"""Benchmark: the blend's grid search (`ranking.blend.grid_gains`) against forming every blend.

One validation block of synthetic members: --users rows, --items items, --members score
matrices that share a common part and lift each row's target by the row's difficulty (one
exponential draw a row, shared by the members, as real targets are easy or hard for every model)
times the member's strength (from --strongest to --weakest), the first 20 items of every row
masked as seen. With the defaults the members' HR@10 run from about 0.2 down to 0.06 and most
rows' targets rank low in every member, as on the Amazon files. Both ways compute the summed
NDCG@k of every point of the simplex grid the train stage uses for that many members
(`train.blend.grid_steps` 10 capped at 100 points); the script checks they agree and prints the
seconds of each and how many rows and items the pruning leaves in play.

Usage:
    python benchmarks/blend_fit.py [--users 1024 --items 12000 --members 4 --k 10]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from recspark.ranking.blend import grid_gains, grid_steps, simplex_grid, target_gains


def members(args: argparse.Namespace) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(args.seed)
    targets = rng.integers(0, args.items, args.users)
    common = rng.normal(size=(args.users, args.items)).astype(np.float32)
    difficulty = rng.exponential(size=args.users).astype(np.float32)
    scores = []
    for strength in np.linspace(args.strongest, args.weakest, args.members):
        s = 0.5 * common + rng.normal(size=(args.users, args.items)).astype(np.float32)
        s[np.arange(args.users), targets] += strength * difficulty
        s[:, :20] = -np.inf
        scores.append(s)
    return scores, targets


def formed(scores: list[np.ndarray], targets: np.ndarray, grid: np.ndarray, k: int) -> np.ndarray:
    totals = []
    for weights in grid:
        blended = sum((w * s for w, s in zip(weights, scores, strict=True) if w > 0), 0 * scores[0])
        totals.append(target_gains(blended, targets, k).sum())
    return np.asarray(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--items", type=int, default=12000)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--strongest", type=float, default=2.0, help="target lift, in std")
    parser.add_argument("--weakest", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scores, targets = members(args)
    grid = simplex_grid(args.members, grid_steps(args.members, 10, 100))
    started = time.perf_counter()
    fast = grid_gains(scores, targets, grid, args.k)
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = formed(scores, targets, grid, args.k)
    slow_s = time.perf_counter() - started
    above = [s > s[np.arange(len(targets)), targets][:, None] for s in scores]
    always = np.logical_and.reduce(above)
    live = always.sum(axis=1) < args.k
    mixed = (np.logical_or.reduce(above) & ~always)[live].sum() / max(int(live.sum()), 1)
    result = {
        "grid_points": len(grid),
        "hr_at_k_of_each_member": [float((a.sum(axis=1) < args.k).mean()) for a in above],
        "rows_in_play": float(live.mean()),
        "items_in_play_per_row": float(mixed / args.items),
        "grid_gains_s": round(fast_s, 2),
        "blends_formed_s": round(slow_s, 2),
        "speedup": round(slow_s / fast_s, 2),
        "max_abs_difference": float(np.abs(fast - slow).max()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
