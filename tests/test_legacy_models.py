"""Models already registered keep loading: pickles that name the classes by their old paths."""

from __future__ import annotations

from pathlib import Path

import mlflow.pytorch
import numpy as np
import pytest
import torch

from recspark.config import Config
from recspark.models.base import ScoringModel
from recspark.ranking.factors import HistoryFactors, IdFactors
from recspark.ranking.topk import top_k
from recspark.scoring.udf import MlflowModelFactors

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models_before_ranking_layer"


@pytest.mark.parametrize(
    "name, old_paths",
    [
        ("two_tower", [b"recspark.models.base", b"ScoringModel", b"recspark.models.two_tower"]),
        ("ease", [b"recspark.models.base", b"ScoringModel", b"recspark.models.ease"]),
    ],
)
def test_pickles_with_the_old_class_paths_load_and_score(name: str, old_paths: list[bytes]) -> None:
    pickled = (FIXTURES / name / "data" / "model.pth").read_bytes()
    for path in old_paths:  # the fixture really is an old pickle
        assert path in pickled
    model = mlflow.pytorch.load_model(str(FIXTURES / name), map_location="cpu")
    assert isinstance(model, ScoringModel)
    expected = np.load(FIXTURES / f"{name}_scores.npy")
    with torch.no_grad():
        if name == "ease":
            history = torch.zeros(2, 9)
            history[0, [1, 2]] = 1
            history[1, 5] = 1
            scores = model(history)
        else:
            scores = model(torch.tensor([0, 1, 5]))
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-6)


def test_old_pickles_give_factor_sets_that_rank(base_config: Config) -> None:
    """What the score stage does with a registered version: load it, then rank."""
    uri = base_config.mlflow_tracking_uri
    tower = MlflowModelFactors(uri, str(FIXTURES / "two_tower")).load()
    assert isinstance(tower, IdFactors)
    vectors = tower.user_vectors(np.array([0, 1]), [None, [3]])
    items, scores = top_k(vectors, tower.items, [[], [3]], 4)
    assert items.shape == (2, 4) and 3 not in items[1]
    assert np.all(np.diff(scores, axis=1) <= 0)
    ease = MlflowModelFactors(uri, str(FIXTURES / "ease")).load()
    assert isinstance(ease, HistoryFactors)
    vectors = ease.user_vectors(np.array([0]), [[1, 2]])
    items, _ = top_k(vectors, ease.items, [[1, 2]], 3)
    assert not {1, 2} & set(items[0].tolist())
