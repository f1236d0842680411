"""Post-training int8 quantization of factors for scoring (symmetric, one scale per row).

Each row ``a`` (an item vector, or a user vector at scoring time) is stored as ``q = rint(a / s)``
in int8 with ``s = max|a| / 127``, so ``q`` lies in [-127, 127] and the reconstruction ``q * s``
is off by at most ``s / 2`` per element. An all-zero row gets ``s = 0`` and ``q = 0`` (exact).

Error of a score. With ``u`` a user row (scale ``su``), ``v`` an item row (scale ``sv``), both of
dimension ``d``, and ``u'``, ``v'`` their reconstructions::

    |u'.v' - u.v| <= (su * |v|_1 + sv * |u|_1) / 2 + d * su * sv / 4
                  <= (sqrt(d) / 127 + d / 64516) * |u|_2 * |v|_2

(the second line because ``|x|_1 <= sqrt(d) |x|_2`` and ``max|x| <= |x|_2``): at most 6.4 % of
``|u|_2 |v|_2`` for d = 64, whatever the data. That worst case needs every rounding error to line
up; the rounding errors are in practice independent, and the typical error is
``sqrt(su^2 |v|_2^2 + sv^2 |u|_2^2) / sqrt(12)``, about 1e-3 of ``|u|_2 |v|_2`` for Gaussian-like
rows of d = 64. The int8 x int8 products are summed exactly in int32 (no overflow while
d * 127^2 < 2^31, i.e. d <= 133143; above that the float fallback is used) and rescaled in float32
(relative error ~1e-7 more). A top-K list changes only where two candidates' scores are closer
than that error, so the effect is swaps around the K-th place, not different recommendations.

When to use it (figures: `benchmarks/quantize.py` defaults, 100k x 20k, d = 64, K = 10, one
thread, torch 2.13, users per CPU-second vs float32 `top_k`; docs/benchmarks/quantize.md):

* Memory, always: the item matrix shrinks from 4d to d + 4 bytes a row (3.8x for d = 64), which
  is what is broadcast to, and cached in, every Spark Python worker.
* Speed depends on the CPU. `torch._int_mm` runs int8 x int8 -> int32 on CPU (oneDNN, VNNI/AMX)
  with no shape or alignment constraint but one (torch 2.13: m = 1, k = 63, n = 19999 all exact;
  an inner dimension of 1 returns garbage, so d = 1 takes the float path). Since the top-K pass
  is chunk-pruned (`ranking.topk.top_k_rows`) the product dominates a block, and on an AVX-512
  AMD EPYC compute="int8" scores 2.1-2.2x the users of float32 at 64 users a block (1.8-2.1x at
  256). With the old full `torch.topk` pass it was 1.56x there and 0.91-1.17x on an AMX Xeon.
  Overlap@10 with float32 0.994, NDCG@10 -0.4 %.
* Keep blocks small with int8 (`score.users_per_batch` <= 256): above ~1,000 users a block int8
  drops to 0.75x float32. `torch._int_mm` allocates a fresh int32 block on every call (it takes
  no `out=`), so a large block is mapped and page-faulted anew each time, where float32 reuses
  one buffer (`ranking.topk.ScoreBuffer`).
* compute="bfloat16" (items dequantized once to bf16 in the worker, product and top-K in bf16):
  1.5-1.7x float32 on the EPYC, 1.4-1.8x on the AMX Xeon, same loss (overlap@10 0.992, NDCG@10
  -0.5 %), int8 still what is shipped. On a CPU without bf16 units torch emulates bf16 and it
  is likely slower than float32: measure first.
* Not for item-item models with more than 133143 items (int32 could overflow: the float fallback
  is then used, slower than float32 scoring), nor where exact float scores are needed downstream
  (the scores carry the error above).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from recspark.ranking.factors import HistoryFactors, MixedFactors, SeenItems
from recspark.ranking.topk import mask_seen, top_k_rows
from recspark.vocab import QuantizedCompute

QMAX = 127
# Largest d for which a sum of d products of two int8 in [-127, 127] cannot overflow int32.
MAX_EXACT_DIM = (2**31 - 1) // (QMAX * QMAX)
# torch 2.13's CPU `_int_mm` is wrong for an inner dimension below 2 (see `_int_product`).
_MIN_INT_MM_DIM = 2


def quantize_rows(a: NDArray[Any]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """Symmetric per-row int8 quantization.

    Args:
        a: (n, d) finite values (converted to float32 first).

    Returns:
        (q, scale): q (n, d) int8 in [-127, 127] and scale (n,) float32 = max|row| / 127, with
        |a - q * scale[:, None]| <= scale / 2 element-wise (up to float32 rounding). An all-zero
        row has scale 0 and q 0.

    Raises:
        ValueError: `a` is not 2-D or holds NaN or infinity.
    """
    x = np.asarray(a, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"quantize_rows needs a 2-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("quantize_rows: the array holds NaN or infinite values")
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], dtype=np.float32)
    scale = (amax / np.float32(QMAX)).astype(np.float32)
    divisor = np.where(scale > 0, scale, np.float32(1.0))
    q = np.clip(np.rint(x / divisor[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize_rows(q: NDArray[np.int8], scale: NDArray[np.float32]) -> NDArray[np.float32]:
    """(n, d) float32 reconstruction q * scale[:, None]."""
    return (q.astype(np.float32) * scale[:, None]).astype(np.float32, copy=False)


class UserVectorSource(Protocol):
    """The user half of a FactorSet: what QuantizedFactors keeps to build user vectors."""

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]: ...


@dataclass(frozen=True)
class UserTable:
    """A vector per user index (the user half of IdFactors, without the float items)."""

    users: NDArray[Any]

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        return np.asarray(self.users[users])


@dataclass(frozen=True)
class MultiHot:
    """Multi-hot rows of the seen items (the user half of HistoryFactors, without the items)."""

    n_items: int

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        return SeenItems.from_lists(seen).multi_hot(self.n_items)


@dataclass(frozen=True)
class QuantizedFactors:
    """A FactorSet whose item vectors are stored in int8 with a float32 scale per item.

    Build it with `from_factors` (any FactorSet) or `from_items` (a user-vector source and a
    float item matrix). `user_vectors` returns float32 user vectors, as the wrapped source gives
    them: `int8_scores` and `top_k_int8` quantize them per batch (dynamic quantization), so user
    vectors keep full precision until the product. `items` exists for the FactorSet protocol and
    the float path: it dequantizes the whole matrix on every access (4x the int8 memory), so the
    int8 scorers use `q_items` and `item_scales` instead.
    """

    q_items: NDArray[np.int8]
    item_scales: NDArray[np.float32]
    source: UserVectorSource

    @classmethod
    def from_items(cls, source: UserVectorSource, items: NDArray[Any]) -> QuantizedFactors:
        """Quantize `items` (n_items, d); user vectors keep coming from `source`."""
        q, scale = quantize_rows(items)
        return cls(q, scale, source)

    @classmethod
    def from_factors(cls, factors: Any) -> QuantizedFactors:
        """Quantize the items of any FactorSet.

        For IdFactors (and any object with `users` and `items` arrays) and for HistoryFactors, only
        the user half is kept, so the float item matrix can be freed; any other FactorSet
        (MixedFactors among them) is kept whole as the user-vector source.
        """
        items = np.asarray(factors.items)
        source: UserVectorSource
        if isinstance(factors, HistoryFactors):
            source = MultiHot(items.shape[1])
        elif isinstance(factors, MixedFactors):
            source = factors
        elif isinstance(getattr(factors, "users", None), np.ndarray):
            source = UserTable(factors.users)
        else:
            source = factors
        return cls.from_items(source, items)

    @property
    def items(self) -> NDArray[Any]:
        """(n_items, d) dequantized float32 item vectors (computed on each access)."""
        return dequantize_rows(self.q_items, self.item_scales)

    @functools.cached_property
    def bf16_items(self) -> torch.Tensor:
        """(n_items, d) dequantized items as a bfloat16 torch tensor, made on first use.

        Kept for the life of the object (2 bytes a value, half of float32) and left out of its
        pickle, so what is shipped stays int8.
        """
        return torch.from_numpy(self.items).to(torch.bfloat16)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("bf16_items", None)
        return state

    @property
    def dim(self) -> int:
        return int(self.q_items.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held for the items (int8 values + scales)."""
        return int(self.q_items.nbytes + self.item_scales.nbytes)

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        """(len(users), d) float32 user vectors from the source."""
        return np.asarray(self.source.user_vectors(users, seen), dtype=np.float32)


@functools.cache
def int_mm_works() -> bool:
    """Whether `torch._int_mm` multiplies int8 CPU matrices exactly on this build."""
    if not hasattr(torch, "_int_mm"):
        return False
    gen = torch.Generator().manual_seed(0)
    for m, d, n in ((1, 2, 5), (3, 37, 29), (20, 64, 33)):
        a = torch.randint(-QMAX, QMAX + 1, (m, d), dtype=torch.int8, generator=gen)
        b = torch.randint(-QMAX, QMAX + 1, (n, d), dtype=torch.int8, generator=gen)
        try:
            got = torch._int_mm(a, b.T)
        except (RuntimeError, NotImplementedError):
            return False
        if got.dtype != torch.int32 or not torch.equal(got.long(), a.long() @ b.long().T):
            return False
    return True


def _int_product(q_users: NDArray[np.int8], q_items: NDArray[np.int8]) -> torch.Tensor:
    """(B, N) float32 torch tensor q_users @ q_items.T, exact below MAX_EXACT_DIM.

    int8 x int8 -> int32 with `torch._int_mm` where it works, converted to float32 in place
    (same buffer: float32 and int32 have the same size); otherwise a float32 product of the int8
    values (exact while the sums stay below 2^24, i.e. d <= 1040; relative error ~6e-8 above).
    d = 1 always takes the float path: torch 2.13's CPU `_int_mm` returns garbage for an inner
    dimension of 1 (and of 0) when the second matrix has more than one column.
    """
    qu = torch.from_numpy(q_users)
    qi = torch.from_numpy(q_items)
    if _MIN_INT_MM_DIM <= q_items.shape[1] <= MAX_EXACT_DIM and int_mm_works():
        try:
            ints = torch._int_mm(qu, qi.T)
        except RuntimeError:
            pass
        else:
            floats = ints.view(torch.float32)
            floats.copy_(ints)  # element-wise in place: each float replaces its own int
            return floats
    return qu.to(torch.float32) @ qi.to(torch.float32).T


def _check_users(user_vectors: NDArray[Any], qfactors: QuantizedFactors) -> None:
    if user_vectors.ndim != 2 or user_vectors.shape[1] != qfactors.dim:
        raise ValueError(
            f"user vectors of shape {user_vectors.shape} do not match items of dimension "
            f"{qfactors.dim}"
        )


def int8_scores(user_vectors: NDArray[Any], qfactors: QuantizedFactors) -> NDArray[np.float32]:
    """(B, n_items) float32 approximate scores user_vectors @ items.T.

    The users are quantized per row, multiplied with the int8 items (int32 sums), and rescaled
    by user scale x item scale. Error per score: see the module docstring.
    """
    _check_users(user_vectors, qfactors)
    q_users, user_scales = quantize_rows(user_vectors)
    scores: NDArray[np.float32] = _int_product(q_users, qfactors.q_items).numpy()
    scores *= qfactors.item_scales[None, :]
    scores *= user_scales[:, None]
    return scores


def top_k_int8(
    user_vectors: NDArray[Any],
    qfactors: QuantizedFactors,
    seen: Sequence[Any],
    k: int,
    compute: QuantizedCompute = "int8",
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Best k unseen items per user, scored with int8 items: drop-in for `ranking.topk.top_k`.

    Same contract as `top_k` (seen items excluded; where a user has fewer than k unseen items,
    item -1 and score -inf fill the row), with `qfactors` in place of the float item matrix.

    compute="int8": users quantized per row, int8 x int8 -> int32 product; the ranking uses the
    int32 sums times the item scales only (a user's scale is positive and the same for all
    items, so it does not change the order) and the k kept scores are then multiplied by it.
    The scores carry the error of the module docstring, so the order can differ from the float
    order between items whose float scores are closer than that error.

    compute="bfloat16": the items dequantized once to bfloat16 (`qfactors.bf16_items`, twice the
    int8 memory in the worker), users cast to bfloat16, product and top-K in bfloat16. Faster
    on CPUs with bf16 matrix units (AMX, AVX512-BF16) because the score matrix, which dominates
    the time, is half the bytes; the scores keep ~3 significant digits (8-bit mantissa).

    Args:
        user_vectors: (B, d) float user vectors (from `qfactors.user_vectors`).
        qfactors: the quantized items.
        seen: per user, the item indices to exclude (array-likes or None, or `SeenItems`).
        k: how many to keep.
        compute: "int8" or "bfloat16", as above.

    Returns:
        (items, scores), each (B, min(k, n_items)), scores float32.
    """
    _check_users(user_vectors, qfactors)
    user_scales: NDArray[np.float32] | None = None
    if compute == "int8":
        q_users, user_scales = quantize_rows(user_vectors)
        scores = _int_product(q_users, qfactors.q_items)
        scores.mul_(torch.from_numpy(qfactors.item_scales))
    elif compute == "bfloat16":
        users_t = torch.from_numpy(np.asarray(user_vectors, dtype=np.float32))
        scores = users_t.to(torch.bfloat16) @ qfactors.bf16_items.T
    else:
        raise ValueError(f"compute must be 'int8' or 'bfloat16', got {compute!r}")
    mask_seen(scores, seen)
    best_values, best_items = top_k_rows(scores, k)
    items = best_items.numpy().copy()
    values = best_values.to(torch.float32).numpy().copy()
    missing = ~np.isfinite(values)
    if user_scales is not None:
        values *= np.where(missing, np.float32(1.0), user_scales[:, None])
    items[missing] = -1
    return items, values
