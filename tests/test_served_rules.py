"""The rules the registered model answers by (`recspark.models.served.answer`), on a model and
users small enough to rank by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recspark.models.served import Lookup, answer
from recspark.ranking.factors import IdFactors, SeenItems
from recspark.ranking.ranker import Ranker


def _lookup() -> Lookup:
    # Item vectors rank i0 > i1 > i2 > i3 for user a; popularity ranks i2 > i0 > i1 > i3.
    model = IdFactors(
        users=np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32),
        items=np.array([[4.0, 0.0], [3.0, 0.0], [2.0, 0.0], [1.0, 0.0]], dtype=np.float32),
    )
    popularity = np.array([5.0, 3.0, 9.0, 1.0]) - np.arange(4) / 4
    return Lookup(
        users=pd.Index(["a", "b"]),
        user_index=np.array([0, 1]),
        warm=np.array([True, False]),  # b has no positive interaction
        seen=SeenItems.from_lists([[1], [2]]),
        item_ids=np.array(["i0", "i1", "i2", "i3"], dtype=object),
        model=Ranker(model),
        popular=Ranker(IdFactors(users=np.ones((1, 1)), items=popularity.reshape(-1, 1))),
    )


def test_known_users_get_the_model_and_the_rest_popular_unseen_items() -> None:
    got = answer(_lookup(), np.array(["a", "b", "z"], dtype=object), np.array([2, 2, 1]))
    expected = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "z"],
            "rank": [1, 2, 1, 2, 1],
            # a: the model's best unseen (i1 seen); b: popular unseen (i2 seen); z: unknown
            "item_id": ["i0", "i2", "i0", "i1", "i2"],
            "score": [4.0, 2.0, 5.0, 2.75, 8.5],
            "reason": ["personalized"] * 2 + ["popular_fallback"] * 3,
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_a_user_who_has_seen_almost_everything_gets_fewer_rows() -> None:
    lookup = _lookup()
    full = Lookup(**{**lookup.__dict__, "seen": SeenItems.from_lists([[0, 1, 2], [2]])})
    got = answer(full, np.array(["a"], dtype=object), np.array([3]))
    assert list(got["item_id"]) == ["i3"]
    assert answer(full, np.array([], dtype=object), np.array([], dtype=np.int64)).empty


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_refused(k: int) -> None:
    from recspark.models.served import UserIdRecommender

    model = UserIdRecommender(3)
    model.__dict__["lookup"] = _lookup()  # the cached lookup, without artifacts
    with pytest.raises(ValueError, match="'k' must be at least 1"):
        model.predict(None, pd.DataFrame({"user_id": ["a"], "k": [k]}))
