"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): a closed-form item-item baseline.

With X the binary user x item matrix of the training pairs and G = X^T X its item Gram matrix,

    P = (G + l2 I)^-1,    B[i, j] = -P[i, j] / P[j, j],    B[j, j] = 0,

and the score row of a user is x_u @ B (x_u: the user's multi-hot history). No user vector is
learned, so a user who was not in training is scored from their history alone; scoring uses
`HistoryFactors(items=B.T)`.

Cost (n = n_items). Everything is dense on the driver:
  * memory: the float32 gram (4 n^2 bytes), then the float64 copy of G + l2 I, its inverse
    and torch's workspace while inverting, then B (4 n^2): peak about 28 n^2 bytes
    (`ease_driver_bytes`; measured +23 n^2 over the gram at 9,724 items): 2.6 GiB at 10k
    items, 10.4 GiB at 20k, 42 GiB at 40k. float32 inversion needs about 15 n^2.
  * time: the inversion is O(n^3). MovieLens latest-small (9,724 items, 2 cores shared with
    other jobs): torch.linalg.inv 13-15 s in float64 (26-37 s under heavier load), 7-8 s in
    float32; 20k items is ~8x that. float32 changes no recommendation there (max |B64 - B32|
    = 2.4e-7 for max |B| = 0.11; NDCG@10 0.4112 both ways), but float64 stays the default:
    it is robust to a badly conditioned G (small l2, many items), and the gram's memory, not
    time, is what bounds EASE.
  * the gram (`item_gram`) is computed by Spark; only its non-zero upper-triangle triples
    reach the driver: 4-5 s for the 75k training pairs of MovieLens latest-small on 2 cores
    (8-10 s when the Python workers start cold).

Hence `train.ease.max_items`: `fit_ease` refuses a catalog above it before any work is done.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from pyspark.sql import DataFrame
from torch import nn

from recspark.ranking.factors import HistoryFactors
from recspark.schemas import ITEM_INDEX, USER_INDEX

__all__ = [
    "DEFAULT_L2",
    "DEFAULT_MAX_ITEMS",
    "EaseModel",
    "ease_driver_bytes",
    "ease_weights",
    "fit_ease",
    "item_gram",
]

DEFAULT_L2 = 200.0
"""Best of a sweep on MovieLens latest-small (NDCG@10 0.412 vs popularity 0.220); l2 grows
with the number of interactions, so re-tune it for much larger data."""

DEFAULT_MAX_ITEMS = 20_000
"""About 10.4 GiB of driver memory (`ease_driver_bytes`) and minutes of inversion."""

MAX_ITEMS_KEY = "train.ease.max_items"

# Sparse x^T x of one chunk of users is computed at a time: the product of a chunk has at most
# sum over its users of n_u^2 entries, kept below this (~20 bytes each in torch's COO), so a
# Python worker needs a few hundred MB whatever the size of its partition.
_CHUNK_PRODUCTS = 1 << 24
# One stage-2 task adds up the partial triples of one block of gram rows in a dense float32
# accumulator of at most this many cells (64 MB).
_BLOCK_CELLS = 1 << 24
# Triples per binary payload row (12 bytes each: 48 MB), far below Arrow's 2 GB per batch.
_PAYLOAD_TRIPLES = 1 << 22


def ease_driver_bytes(n_items: int) -> int:
    """Peak driver memory of `fit_ease` for `n_items` items, in bytes (about 28 n^2).

    The float32 gram (4), the float64 copy of G + l2 I and its inverse (8 + 8), torch's
    workspace for the inverse (about 4 more in practice) and the float32 weights (4).
    """
    return 28 * n_items * n_items


def _encode(i: NDArray[Any], j: NDArray[Any], c: NDArray[Any]) -> bytes:
    """Triples as one byte string: int32 rows, int32 columns, float32 counts."""
    return (
        i.astype(np.int32).tobytes() + j.astype(np.int32).tobytes() + c.astype(np.float32).tobytes()
    )


def _decode(payload: bytes) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]:
    n = len(payload) // 12
    i = np.frombuffer(payload, dtype=np.int32, count=n)
    j = np.frombuffer(payload, dtype=np.int32, count=n, offset=4 * n)
    c = np.frombuffer(payload, dtype=np.float32, count=n, offset=8 * n)
    return i, j, c


def _payload_rows(
    block: int, i: NDArray[Any], j: NDArray[Any], c: NDArray[Any], per_row: int
) -> Iterator[pd.DataFrame]:
    for start in range(0, len(i), per_row):
        end = start + per_row
        yield pd.DataFrame(
            {"block": [block], "payload": [_encode(i[start:end], j[start:end], c[start:end])]}
        )


def _upper_products(
    users: NDArray[Any], items: NDArray[Any], n_items: int, chunk_products: int
) -> Iterator[tuple[NDArray[Any], NDArray[Any], NDArray[Any]]]:
    """The i <= j triples of X^T X for the pairs of whole users, a chunk of users at a time.

    Chunks are consecutive users whose sum of n_u^2 stays near `chunk_products`; each chunk's
    triples are unique, but two chunks can share an (i, j): the caller sums them.
    """
    user_t = torch.from_numpy(users.astype(np.int64))
    item_t = torch.from_numpy(items.astype(np.int64))
    _, rows = torch.unique(user_t, return_inverse=True)
    n_rows = int(rows.max()) + 1
    # coalesce sorts by (row, item) and merges repeated pairs; the values are then reset to 1
    # so that X is binary whatever the duplicates.
    x = torch.sparse_coo_tensor(
        torch.stack([rows, item_t]),
        torch.ones(len(rows), dtype=torch.float32),
        (n_rows, n_items),
        check_invariants=False,
    ).coalesce()
    row_of = x.indices()[0].numpy()
    per_user = np.bincount(row_of, minlength=n_rows).astype(np.int64)
    chunk_of_user = np.cumsum(per_user * per_user) // chunk_products
    starts = np.searchsorted(chunk_of_user[row_of], np.unique(chunk_of_user[row_of]))
    bounds = [*starts.tolist(), len(row_of)]
    indices = x.indices()
    for start, end in pairwise(bounds):
        part = torch.sparse_coo_tensor(
            indices[:, start:end],
            torch.ones(end - start, dtype=torch.float32),
            (n_rows, n_items),
            is_coalesced=True,
            check_invariants=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            gram = part.t().to_sparse_csr() @ part.to_sparse_csr()
        crow = gram.crow_indices()
        i = torch.repeat_interleave(torch.arange(n_items), crow[1:] - crow[:-1]).numpy()
        j = gram.col_indices().numpy()
        c = gram.values().numpy()
        keep = i <= j
        yield i[keep], j[keep], c[keep]


def _partial_grams(
    n_items: int, n_blocks: int, chunk_products: int, per_row: int
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Stage 1: the partition's partial gram, as payload rows keyed by row block (i % n_blocks).

    The partition holds whole users (it is partitioned by user_index), so its X_p^T X_p is
    exact for them and the gram is the sum of the partitions' products.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        frames = [b for b in batches if len(b)]
        if not frames:
            return
        pairs = pd.concat(frames, ignore_index=True)
        users = pairs[USER_INDEX].to_numpy()
        items = pairs[ITEM_INDEX].to_numpy()
        if items.min() < 0 or items.max() >= n_items:
            raise ValueError(
                f"{ITEM_INDEX} must be in [0, {n_items}), got {items.min()} to {items.max()}"
            )
        for i, j, c in _upper_products(users, items, n_items, chunk_products):
            block = i % n_blocks
            order = np.argsort(block, kind="stable")
            i, j, c, block = i[order], j[order], c[order], block[order]
            edges = np.searchsorted(block, np.arange(n_blocks + 1))
            for b in range(n_blocks):
                lo, hi = edges[b], edges[b + 1]
                if hi > lo:
                    yield from _payload_rows(b, i[lo:hi], j[lo:hi], c[lo:hi], per_row)

    return run


def _summed_block(
    n_items: int, n_blocks: int, per_row: int
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Stage 2: add up every partition's triples of one row block; emit its non-zero triples."""

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        block = int(pdf["block"].iloc[0])
        n_rows = len(range(block, n_items, n_blocks))
        acc = np.zeros(n_rows * n_items, dtype=np.float32)  # exact for counts below 2^24
        for payload in pdf["payload"]:
            i, j, c = _decode(payload)
            np.add.at(acc, (i.astype(np.int64) // n_blocks) * n_items + j, c)
        flat = np.flatnonzero(acc)
        i = (flat // n_items) * n_blocks + block
        j = flat % n_items
        frames = list(_payload_rows(block, i, j, acc[flat], per_row))
        return pd.concat(frames) if frames else pd.DataFrame({"block": [], "payload": []})

    return run


def item_gram(
    train_pairs_df: DataFrame, n_items: int, n_partitions: int | None = None
) -> NDArray[np.float32]:
    """G = X^T X, X the binary user x item matrix of the distinct (user_index, item_index) pairs.

    Computed by Spark in two stages; the interactions never reach the driver:
      1. the pairs are partitioned by user (`n_partitions`, default the default parallelism);
         each task builds its users' sparse X_p and X_p^T X_p with torch (CSR x CSR, in chunks
         of users to bound memory), keeps the upper triangle, and emits it as binary payloads
         of (i, j, count) triples keyed by row block i % n_blocks;
      2. one task per row block adds the partitions' triples up in a dense accumulator and
         emits the block's non-zero triples.
    The driver streams those (toLocalIterator) into a dense float32 matrix, filling both
    triangles. Counts are exact in float32 below 2^24 users per item pair.

    Why this shape: G is far denser than X (MovieLens latest-small: 76k pairs, 18M non-zeros in
    G, 34M user-level pair products), so anything that makes a Spark row per product is slow.
    Measured on that data (local[2], same load, warm / first call): a SQL self-join on
    user_index grouped by (i, j) 18-20 s; per-partition products emitted as (i, j, c) rows
    and summed by groupBy 11-16 s; dense per-partition row blocks summed by RDD reduceByKey
    8-10 s; per-partition triples summed on the driver 5-9 s (but then the driver receives one
    copy per partition); this version 4-5 s warm, 8-10 s cold, one copy to the driver.

    Args:
        train_pairs_df: rows with user_index and item_index (other columns are ignored).
        n_items: the catalog size; every item_index must be in [0, n_items).
        n_partitions: stage-1 tasks (user partitions).

    Returns:
        (n_items, n_items) float32, symmetric; G[i, i] is the number of users of item i.
    """
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    spark = train_pairs_df.sparkSession
    parts = n_partitions or spark.sparkContext.defaultParallelism
    rows_per_block = max(1, _BLOCK_CELLS // n_items)
    n_blocks = max(parts, -(-n_items // rows_per_block))
    payload_schema = "block int, payload binary"
    partials = (
        train_pairs_df.select(USER_INDEX, ITEM_INDEX)
        .repartition(parts, USER_INDEX)
        .mapInPandas(
            _partial_grams(n_items, n_blocks, _CHUNK_PRODUCTS, _PAYLOAD_TRIPLES),  # type: ignore[arg-type]
            payload_schema,
        )
    )
    summed = partials.groupBy("block").applyInPandas(
        _summed_block(n_items, n_blocks, _PAYLOAD_TRIPLES), payload_schema
    )
    gram = np.zeros((n_items, n_items), dtype=np.float32)
    for row in summed.select("payload").toLocalIterator():
        i, j, c = _decode(bytes(row["payload"]))
        gram[i, j] = c
        gram[j, i] = c
    return gram


def ease_weights(
    gram: NDArray[Any], l2: float, dtype: Literal["float64", "float32"] = "float64"
) -> NDArray[np.float32]:
    """The EASE weights B for item gram `gram` and L2 penalty `l2` (closed form, no iterations).

    B = I - P diagMat(1 / diag(P)) with P = (G + l2 I)^-1, i.e. B[i, j] = -P[i, j] / P[j, j]
    off the diagonal and 0 on it (the constraint that stops an item from predicting itself).

    Args:
        gram: (n, n) symmetric X^T X (not modified).
        l2: the ridge penalty, > 0: larger shrinks the weights of rare item pairs.
        dtype: precision of the inversion. float32 took about half the time on 9.7k items
            (7-8 s vs 13-15 s) and gave the same NDCG@10; float64 is the safe default.

    Returns:
        (n, n) float32 B, zero diagonal.
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be square, got shape {gram.shape}")
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    a = torch.tensor(gram, dtype=torch_dtype)  # a copy: the caller's gram stays as it is
    a.diagonal().add_(l2)
    p = torch.linalg.inv(a)
    del a
    p.div_(-p.diagonal().clone())  # column j divided by -P[j, j]
    p.fill_diagonal_(0.0)
    return p.to(torch.float32).numpy()


class EaseModel(nn.Module):
    """The EASE weights B as a torch module: scores = history @ B for multi-hot histories.

    B is a buffer, not a parameter: it is solved in closed form, never trained by gradient, and
    is saved with the module's state_dict (so MLflow's pytorch flavour stores it).
    """

    weights: torch.Tensor

    def __init__(self, weights: NDArray[Any] | torch.Tensor) -> None:
        """Wrap a solved (n_items, n_items) B, e.g. from `ease_weights`."""
        super().__init__()
        b = torch.as_tensor(weights, dtype=torch.float32)
        if b.ndim != 2 or b.shape[0] != b.shape[1]:
            raise ValueError(f"EASE weights must be square, got shape {tuple(b.shape)}")
        self.register_buffer("weights", b.contiguous())

    @property
    def n_items(self) -> int:
        return int(self.weights.shape[0])

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """(batch, n_items) scores for (batch, n_items) multi-hot histories."""
        return history.to(self.weights.dtype) @ self.weights

    @torch.no_grad()
    def item_vectors(self) -> NDArray[np.float32]:
        """(n_items, n_items) B.T, float32 and C-contiguous: row j holds scored item j's weights."""
        return np.ascontiguousarray(self.weights.detach().cpu().T.numpy(), dtype=np.float32)

    def factor_set(self) -> HistoryFactors:
        """The scoring view: user vector = multi-hot history, score = history @ B."""
        return HistoryFactors(items=self.item_vectors())


def fit_ease(
    train_pairs_df: DataFrame,
    n_items: int,
    l2: float = DEFAULT_L2,
    max_items: int = DEFAULT_MAX_ITEMS,
    dtype: Literal["float64", "float32"] = "float64",
) -> EaseModel:
    """Fit EASE on the distinct (user_index, item_index) pairs of `train_pairs_df`.

    Raises:
        ValueError: if n_items is above `max_items` (config `train.ease.max_items`): the dense
            n_items x n_items matrices must fit in driver memory. Checked before any work.
    """
    if n_items > max_items:
        need = ease_driver_bytes(n_items) / 2**30
        raise ValueError(
            f"EASE needs dense {n_items} x {n_items} matrices on the driver (about {need:.1f} GiB"
            f" of driver memory, and O(n_items^3) time), but n_items={n_items} is above"
            f" {MAX_ITEMS_KEY}={max_items}. Raise {MAX_ITEMS_KEY} if the driver has the memory,"
            " or use another model for this catalog."
        )
    gram = item_gram(train_pairs_df, n_items)
    return EaseModel(ease_weights(gram, l2, dtype=dtype))
