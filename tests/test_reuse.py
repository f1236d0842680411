"""Candidates retrained every N runs: when a kept fit serves, and a kept fit on grown id maps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recspark.config import ConfigError, load_config
from recspark.models.base import ScoringModel
from recspark.models.registry import SequentialRecommender, with_users
from recspark.models.two_tower import TwoTower
from recspark.ranking.blend import blend_factors
from recspark.ranking.factors import HistoryFactors, IdFactors, grown, known_users
from recspark.training.candidates import Trained, closed_form, closed_form_parts
from recspark.training.reuse import Kept, capped, retrain_reason, settings_hash, within_catalog
from recspark.training.settings import candidate_settings

from .conftest import CONF_DIR


def test_retrain_every_names_kept_candidates_only() -> None:
    config = load_config(CONF_DIR, "test", ["train.retrain_every={sasrec: 7}"])
    assert config.train.retrain_every == {"sasrec": 7}
    with pytest.raises(ConfigError, match=r"train\.retrain_every .*blend is refit"):
        load_config(CONF_DIR, "test", ["train.retrain_every={blend: 2}"])
    with pytest.raises(ConfigError, match=r"train\.retrain_every .*als is not in train\.cand"):
        load_config(CONF_DIR, "test", ["train.candidates=[ease]", "train.retrain_every={als: 2}"])
    with pytest.raises(ConfigError, match=r"train\.retrain_every"):
        load_config(CONF_DIR, "test", ["train.retrain_every={sasrec: 0}"])


def test_a_kept_fit_serves_until_n_runs_or_a_settings_change() -> None:
    kept = Kept("run-a", "2026-01-01", 0, "s1")
    assert retrain_reason(None, 3, "s1") == "no kept fit"
    assert retrain_reason(kept, 3, "s1") is None  # the 2nd run of 3
    assert retrain_reason(dataclasses.replace(kept, age=1), 3, "s1") is None  # the 3rd
    assert "served 3 of 3 runs" in str(retrain_reason(dataclasses.replace(kept, age=2), 3, "s1"))
    assert retrain_reason(kept, 3, "s2") == "its settings changed"
    # every 2 runs: the fit of run 1 serves run 2, run 3 trains
    assert retrain_reason(kept, 2, "s1") is None
    assert retrain_reason(dataclasses.replace(kept, age=1), 2, "s1") is not None


def test_histories_drop_the_items_newer_than_the_fit_and_stay_left_padded() -> None:
    # catalog of 5 when fit (padding 5), 8 tonight (padding 8): items 5..7 are new
    tonight = np.array([[8, 8, 1, 6, 2], [8, 8, 8, 8, 8], [3, 7, 4, 0, 5]])
    np.testing.assert_array_equal(
        within_catalog(tonight, 5), [[5, 5, 5, 1, 2], [5, 5, 5, 5, 5], [5, 5, 3, 4, 0]]
    )
    users, histories = next(capped([(np.array([0, 4, 1]), tonight)], n_users=3, n_items=5))
    np.testing.assert_array_equal(users, [0, 1])  # user 4 is unknown to a 3-user network
    np.testing.assert_array_equal(histories, [[5, 5, 5, 1, 2], [5, 5, 3, 4, 0]])


def test_grown_factors_score_old_items_alike_and_new_items_zero() -> None:
    rng = np.random.default_rng(0)
    ids = IdFactors(users=rng.normal(size=(4, 3)), items=rng.normal(size=(5, 3)))
    bigger = grown(ids, 7)
    assert isinstance(bigger, IdFactors)
    assert known_users(bigger) == 4  # users the fit never saw stay unknown (cold start)
    scores = bigger.users @ bigger.items.T
    np.testing.assert_allclose(scores[:, :5], ids.users @ ids.items.T)
    np.testing.assert_array_equal(scores[:, 5:], 0)
    with_new_users = grown(ids, 7, n_users=6)
    assert isinstance(with_new_users, IdFactors)
    np.testing.assert_array_equal(with_new_users.users[4:], 0)
    item_item = HistoryFactors(items=rng.normal(size=(5, 5)))
    wide = grown(item_item, 7)
    assert isinstance(wide, HistoryFactors) and wide.items.shape == (7, 7)
    seen = [np.array([0, 2]), np.array([1, 6])]
    old = item_item.user_vectors(np.arange(2), [seen[0], seen[1][:1]]) @ item_item.items.T
    new = wide.user_vectors(np.arange(2), seen) @ wide.items.T
    np.testing.assert_allclose(new[:, :5], old)  # a new seen item adds nothing
    np.testing.assert_array_equal(new[:, 5:], 0)


def test_a_grown_network_keeps_old_users_and_gives_new_ones_their_history_part() -> None:
    torch.manual_seed(0)
    tower = TwoTower(n_users=3, n_items=6, dim=4, use_history=True)
    bigger = with_users(tower, 5)
    assert (tower.n_users, bigger.n_users) == (3, 5)
    assert tower.user_tower.weight.shape[0] == 3  # the kept fit is left as it was
    history = torch.tensor([[6, 1, 2], [6, 6, 4]])
    users = torch.tensor([1, 4])
    with torch.no_grad():
        vectors = bigger.user_vectors(users, history)
        assert torch.allclose(vectors[0], tower.user_vectors(users[:1], history[:1])[0])
        history_part = bigger.user_vectors(users[1:], history[1:]) - bigger.user_tower(users[1:])
        assert torch.allclose(vectors[1], history_part[0])
        assert torch.count_nonzero(bigger.user_tower.weight[3:]) == 0
    sequential = SequentialRecommender(3, 6, 4, max_len=3, n_layers=1, n_heads=1, dropout=0.0)
    assert with_users(sequential, 5).n_users == 5
    assert with_users(sequential, 2) is sequential


def test_a_blend_takes_a_member_that_knows_fewer_users() -> None:
    rng = np.random.default_rng(1)
    fresh = IdFactors(users=rng.normal(size=(5, 2)), items=rng.normal(size=(4, 2)))
    kept = IdFactors(users=rng.normal(size=(3, 2)), items=rng.normal(size=(4, 2)))
    blended = blend_factors([fresh, kept], [0.5, 2.0])
    assert isinstance(blended, IdFactors)
    scores = blended.users @ blended.items.T
    np.testing.assert_allclose(
        scores[:3],
        0.5 * fresh.users[:3] @ fresh.items.T + 2.0 * kept.users @ kept.items.T,
        atol=1e-5,
    )
    np.testing.assert_allclose(scores[3:], 0.5 * fresh.users[3:] @ fresh.items.T, atol=1e-5)


def test_a_kept_closed_form_fit_is_not_refit() -> None:
    factors = IdFactors(users=np.ones((2, 2)), items=np.ones((3, 2)))

    def fit(age: int | None) -> Trained:
        kept = None if age is None else Kept("r", "2026-01-01", age, "s")
        return closed_form(ScoringModel("als", None, factors), {}, 0.0, kept=kept)

    assert closed_form_parts({"als": fit(None)}, "als") == ["als"]
    assert closed_form_parts({"als": fit(0)}, "als") == ["als"]  # trained this run
    assert closed_form_parts({"als": fit(1)}, "als") == []  # a fit of an earlier run


def test_a_kept_fit_is_retrained_when_its_loss_threshold_or_sample_budget_changes() -> None:
    def settings(*overrides: str) -> str:
        config = load_config(CONF_DIR, "test", list(overrides))
        return settings_hash(candidate_settings(config, "two_tower"))

    base = settings()
    assert settings() == base
    assert settings("train.sampled_softmax_above=10") != base
    assert settings("train.max_samples=1000") != base
    assert settings("train.loss=sampled_softmax") != base
