"""The registered model as MLflow serves it: top-K original item ids for original user ids.

`UserIdRecommender` is the `python_function` flavor of every version the train stage registers,
so `mlflow models serve -m models:/recspark@champion` (or `mlflow.pyfunc.load_model`) answers
by user id, as an application asks:

    input   user_id (string), k (long, optional: default `score.k` when the model was trained)
    output  user_id, rank (1 = best), item_id, score, reason; k rows per user (fewer where the
            user has seen almost the whole catalog), in input order

The rules are the score stage's (`recspark.scoring.score`): a user the model knows, with a
positive train or held-out interaction, gets the model's best unseen items (reason
`personalized`); anyone else, including a user id the model has never seen, the most popular
items they have not seen (`popular_fallback`). Seen items are those of the run the model was
trained for (its train and held-out pairs), so answers match that night's `recommendations`.

Artifacts (logged with the model, loaded on first use):
- `scoring_model`: the pickled `ScoringModel` (scoring reads its factors from here too);
- `users`: Parquet, user_id, user_index, seen (list<int>), warm (bool), history (list<int>: the
  positive items by time, oldest first; what the refresh stream extends);
- `items`: Parquet, item_index, item_id, popularity (users with a positive interaction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel
from numpy.typing import NDArray

from recspark.models.base import ScoringModel
from recspark.ranking.factors import IdFactors, SeenItems, known_users
from recspark.ranking.ranker import Ranker

MODEL_ARTIFACT, USERS_ARTIFACT, ITEMS_ARTIFACT = "scoring_model", "users", "items"
USER_ID, K = "user_id", "k"
OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score", "reason")
PERSONALIZED, POPULAR_FALLBACK = "personalized", "popular_fallback"


@dataclass(frozen=True)
class Lookup:
    """What answering needs, built once from the artifacts."""

    users: pd.Index  # user_id -> row of the arrays below
    user_index: NDArray[np.int64]
    warm: NDArray[np.bool_]  # known to the model, with a positive interaction
    seen: SeenItems
    item_ids: NDArray[Any]  # by item_index
    model: Ranker
    popular: Ranker


def _parquet(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def build_lookup(scoring: ScoringModel, users_path: str, items_path: str) -> Lookup:
    """The lookup of a model and its users / items tables (the `users`, `items` artifacts)."""
    import pyarrow.parquet as pq

    users_table = pq.read_table(users_path)
    users = users_table.select([USER_ID, "user_index", "warm"]).to_pandas()
    items = _parquet(items_path).sort_values("item_index")
    factors = scoring.factor_set()
    index = users["user_index"].to_numpy(np.int64)
    limit = known_users(factors)
    warm = users["warm"].to_numpy(bool) & (index < (limit if limit is not None else np.inf))
    n_items = len(items)
    popularity = items["popularity"].to_numpy(np.float64) - np.arange(n_items) / max(n_items, 1)
    return Lookup(
        users=pd.Index(users[USER_ID].astype(str)),
        user_index=index,
        warm=warm,
        seen=SeenItems.from_arrow(users_table.column("seen").combine_chunks()),
        item_ids=items["item_id"].astype(str).to_numpy(object),
        model=Ranker(factors),
        popular=Ranker(IdFactors(users=np.ones((1, 1)), items=popularity.reshape(-1, 1))),
    )


class UserIdRecommender(PythonModel):
    """Top-K item ids by user id (see the module docstring); `k` is the default K."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.artifacts: dict[str, str] = {}

    def load_context(self, context: Any) -> None:
        self.artifacts = dict(context.artifacts)

    @functools.cached_property
    def scoring_model(self) -> ScoringModel:
        """The trained model's factors and network (what the score stage ranks with)."""
        import torch

        model = torch.load(
            _model_file(self.artifacts[MODEL_ARTIFACT]), map_location="cpu", weights_only=False
        )
        if not isinstance(model, ScoringModel):
            raise TypeError(f"artifact {MODEL_ARTIFACT} holds a {type(model).__name__}")
        return model

    @functools.cached_property
    def lookup(self) -> Lookup:
        return build_lookup(
            self.scoring_model, self.artifacts[USERS_ARTIFACT], self.artifacts[ITEMS_ARTIFACT]
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """The top-K rows of every input row's user (see the module docstring).

        Raises:
            ValueError: no `user_id` column, or a `k` below 1.
        """
        frame = pd.DataFrame(model_input)
        if USER_ID not in frame.columns:
            raise ValueError(f"the input needs a '{USER_ID}' column; it has {list(frame.columns)}")
        ks = _ks(frame, self.k, len(self.lookup.item_ids))
        return answer(self.lookup, frame[USER_ID].astype(str).to_numpy(object), ks)


def load_scoring_model(model_uri: str) -> Any:
    """The `ScoringModel` of a registered version (or any model URI or folder): from the
    `scoring_model` artifact of a version logged by this module, or the pickled torch module of
    a version logged before it (`pytorch` flavor; recspark 0.1's bare TwoTower included)."""
    import mlflow.models
    import mlflow.pyfunc
    import mlflow.pytorch

    if "pytorch" in mlflow.models.get_model_info(model_uri).flavors:
        return mlflow.pytorch.load_model(model_uri, map_location="cpu")
    served = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not isinstance(served, UserIdRecommender):
        raise TypeError(f"{model_uri} is a {type(served).__name__}, not a recspark model")
    return served.scoring_model


def signature() -> Any:
    """The model signature: user_id (and an optional k) in, ranked item ids out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", USER_ID), ColSpec("long", K, required=False)])
    outputs = Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("integer", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("double", "score"),
            ColSpec("string", "reason"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def _model_file(path: str) -> str:
    """The pickle inside an artifact that is a file or a folder holding one file."""
    found = Path(path)
    if found.is_dir():
        (found,) = list(found.iterdir())
    return str(found)


def _ks(frame: pd.DataFrame, default: int, n_items: int) -> NDArray[np.int64]:
    """Each row's K: its `k` where given, else the default; capped at the catalog."""
    if K in frame.columns:
        asked = pd.to_numeric(frame[K], errors="coerce").fillna(default)
    else:
        asked = pd.Series(default, index=frame.index)
    if (asked < 1).any():
        raise ValueError(f"'{K}' must be at least 1; got {int(asked.min())}")
    return np.minimum(asked.to_numpy(np.int64), max(n_items, 1))


def answer(lookup: Lookup, user_ids: NDArray[Any], ks: NDArray[np.int64]) -> pd.DataFrame:
    """Output rows for `user_ids` (one K each), in input order, best first per user."""
    rows = lookup.users.get_indexer(user_ids)
    known = rows >= 0
    warm = np.zeros(len(rows), dtype=bool)
    warm[known] = lookup.warm[rows[known]]
    empty = np.zeros(0, dtype=np.int64)
    seen = SeenItems.from_lists([lookup.seen[r] if r >= 0 else empty for r in rows])
    k = int(ks.max()) if len(ks) else 0
    items = np.full((len(rows), k), -1, dtype=np.int64)
    scores = np.full((len(rows), k), -np.inf)
    for ranker, chosen in ((lookup.model, warm), (lookup.popular, ~warm)):
        picked = np.flatnonzero(chosen)
        if not len(picked) or not k:
            continue
        users = (
            lookup.user_index[rows[picked]]
            if ranker is lookup.model
            else np.zeros(len(picked), dtype=np.int64)  # popularity: one user vector
        )
        their_seen = SeenItems.from_lists([seen[i] for i in picked])
        vectors = ranker.user_vectors(users, their_seen)
        items[picked], scores[picked] = ranker.top_k(vectors, their_seen, k)
    return _rows(lookup, user_ids, ks, items, scores, warm)


def _rows(
    lookup: Lookup,
    user_ids: NDArray[Any],
    ks: NDArray[np.int64],
    items: NDArray[np.int64],
    scores: NDArray[Any],
    warm: NDArray[np.bool_],
) -> pd.DataFrame:
    rank = np.arange(items.shape[1])[None, :]
    keep = (rank < ks[:, None]) & (items >= 0)
    row, col = np.nonzero(keep)
    return pd.DataFrame(
        {
            "user_id": user_ids[row].astype(str),
            "rank": (col + 1).astype(np.int32),
            "item_id": lookup.item_ids[items[row, col]].astype(str),
            "score": scores[row, col].astype(np.float64),
            "reason": np.where(warm[row], PERSONALIZED, POPULAR_FALLBACK),
        },
        columns=list(OUTPUT_COLUMNS),
    )


__all__ = [
    "ITEMS_ARTIFACT",
    "MODEL_ARTIFACT",
    "OUTPUT_COLUMNS",
    "USERS_ARTIFACT",
    "Lookup",
    "UserIdRecommender",
    "answer",
    "build_lookup",
    "load_scoring_model",
    "signature",
]
