"""The blend and champion selection: validation NDCG, the weight grid, one matrix product."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.config import load_config
from recspark.models.base import ScoringModel
from recspark.ranking.blend import (
    ValidationTargets,
    blend_factors,
    fit_blend,
    grid_gains,
    masked_scores,
    simplex_grid,
    target_gains,
    target_ndcg,
)
from recspark.ranking.factors import HistoryFactors, IdFactors, MixedFactors, SeenItems
from recspark.ranking.ranker import Ranker
from recspark.training.candidates import (
    Trained,
    blend_candidate,
    closed_form_parts,
    plan_candidates,
    winner,
    with_refit,
)

from .conftest import CONF_DIR

N_USERS, N_ITEMS = 60, 12


def _targets(rng: np.random.Generator) -> ValidationTargets:
    """Each user has seen 3 random items and holds out a 4th one."""
    seen, targets = [], []
    for _ in range(N_USERS):
        items = rng.choice(N_ITEMS, size=4, replace=False)
        seen.append(np.sort(items[:3]))
        targets.append(items[3])
    return ValidationTargets(
        np.arange(N_USERS), np.asarray(targets, np.int64), SeenItems.from_lists(seen)
    )


def _oracle(validation: ValidationTargets, noise: float, rng: np.random.Generator) -> IdFactors:
    """An id model whose score of each user's target is 1 + noise, others noise."""
    users = np.zeros((N_USERS, N_ITEMS), np.float32)
    users[np.arange(N_USERS), validation.targets] = 1.0
    users += rng.normal(scale=noise, size=users.shape).astype(np.float32)
    return IdFactors(users=users, items=np.eye(N_ITEMS, dtype=np.float32))


def test_target_ndcg_ranks_the_target_against_unseen_items() -> None:
    items = np.eye(3, dtype=np.float32)
    factors = IdFactors(users=np.asarray([[3.0, 2.0, 1.0]], np.float32), items=items)
    seen_first = ValidationTargets(np.asarray([0]), np.asarray([1]), SeenItems.from_lists([[0]]))
    unseen = ValidationTargets(np.asarray([0]), np.asarray([1]), SeenItems.from_lists([[]]))
    assert target_ndcg(factors, seen_first, k=2) == pytest.approx(1.0)  # item 0 is masked
    assert target_ndcg(factors, unseen, k=2) == pytest.approx(1 / np.log2(3))
    assert target_ndcg(factors, unseen, k=1) == 0.0
    assert np.isneginf(masked_scores(factors, seen_first)[0, 0])


def test_simplex_grid_holds_every_member_alone() -> None:
    grid = simplex_grid(3, 4)
    assert len(grid) == 15
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    for member in range(3):
        assert any((row == np.eye(3)[member]).all() for row in grid)


def test_grid_gains_equal_the_gains_of_every_blend_formed() -> None:
    rng = np.random.default_rng(7)
    n_rows, n_items, k = 40, 30, 5
    targets = rng.integers(0, n_items, n_rows)
    good = rng.normal(size=(n_rows, n_items))
    good[np.arange(n_rows), targets] += 2.0  # the target near the top: most rows score
    scores = [good, rng.normal(size=(n_rows, n_items)), rng.normal(size=(n_rows, n_items))]
    for s in scores:  # seen items, masked in every member
        s[:, :3] = -np.inf
    scores[2][0, targets[0]] = np.nan  # a diverged member on row 0
    scores[1][1, targets[1]] = -np.inf  # and a target masked by one member on row 1
    grid = simplex_grid(3, 4)
    expected = []
    for weights in grid:
        blended = sum(
            (w * s for w, s in zip(weights, scores, strict=True) if w > 0), np.zeros_like(good)
        )
        expected.append(target_gains(blended, targets, k).sum())
    np.testing.assert_allclose(grid_gains(scores, targets, grid, k), expected)
    assert 0 < min(expected) < max(expected)  # the weights matter on this data


def test_blend_never_validates_below_its_best_member() -> None:
    rng = np.random.default_rng(0)
    validation = _targets(rng)
    good, weak = _oracle(validation, 0.6, rng), _oracle(validation, 3.0, rng)
    fit = fit_blend([weak, good], validation, k=3, steps=10)
    assert fit.ndcg >= target_ndcg(good, validation, 3) - 1e-12
    assert fit.ndcg >= target_ndcg(weak, validation, 3) - 1e-12
    # the fitted blend, as one FactorSet, scores what the fit measured
    blended = blend_factors([weak, good], fit.factors_weights)
    assert target_ndcg(blended, validation, 3) == pytest.approx(fit.ndcg)


def test_two_noisy_views_blend_better_than_either() -> None:
    rng = np.random.default_rng(1)
    validation = _targets(rng)
    a, b = _oracle(validation, 1.0, rng), _oracle(validation, 1.0, rng)
    fit = fit_blend([a, b], validation, k=3, steps=10)
    assert 0 < fit.weights[0] < 1  # independent noise averages out: both members are used
    assert fit.ndcg > max(target_ndcg(a, validation, 3), target_ndcg(b, validation, 3))


def test_blend_of_item_item_and_id_models_is_one_product() -> None:
    rng = np.random.default_rng(2)
    ease = HistoryFactors(items=rng.normal(size=(N_ITEMS, N_ITEMS)).astype(np.float32))
    tower = IdFactors(
        users=rng.normal(size=(N_USERS, 4)).astype(np.float32),
        items=rng.normal(size=(N_ITEMS, 4)).astype(np.float32),
    )
    blended = blend_factors([ease, tower], [0.3, 2.0])
    assert isinstance(blended, MixedFactors)
    users, seen = np.asarray([0, 5]), [[1, 2], [3]]
    expected = 0.3 * (ease.user_vectors(users, seen) @ ease.items.T) + 2.0 * (
        tower.user_vectors(users, seen) @ tower.items.T
    )
    got = blended.user_vectors(users, seen) @ blended.items.T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # a zero weight leaves the member out; the scoring model keeps the mixed kind
    assert isinstance(blend_factors([ease, tower], [0.0, 1.0]), IdFactors)
    restored = ScoringModel("blend", None, blended).factor_set()
    assert isinstance(restored, MixedFactors)
    np.testing.assert_array_equal(restored.items, blended.items)
    # ranking, int8 and explanations take it like any model
    ranker = Ranker(blended)
    items, _ = ranker.top_k(ranker.user_vectors(users, seen), seen, 3)
    assert not set(items[0]) & {1, 2}
    int8_items, _ = Ranker(blended, "int8").top_k(ranker.user_vectors(users, seen), seen, 3)
    assert int8_items.shape == (2, 3)
    assert ranker.explain(items, seen, 10).shape == (2, 3)


def _trained(factors: IdFactors, ndcg: float) -> Trained:
    return Trained(
        model=ScoringModel("two_tower", None, factors),
        params={},
        history=(),
        best_val_ndcg=None,
        seconds=0.0,
        ranks=1,
        launcher="closed_form",
        device="cpu",
        val_factors=factors,
        val_ndcg=ndcg,
    )


def test_selection_picks_the_better_candidate_and_a_blend_only_when_strictly_better() -> None:
    rng = np.random.default_rng(3)
    validation = _targets(rng)
    good, weak = _oracle(validation, 0.5, rng), _oracle(validation, 4.0, rng)
    trained = {
        "two_tower": _trained(weak, target_ndcg(weak, validation, 3)),
        "sasrec": _trained(good, target_ndcg(good, validation, 3)),
    }
    order = ["two_tower", "sasrec", "blend"]
    assert winner(trained, order) == "sasrec"
    trained["blend"] = blend_candidate(trained, validation, k=3, steps=10)
    assert trained["blend"].val_ndcg >= trained["sasrec"].val_ndcg
    expected = "blend" if trained["blend"].val_ndcg > trained["sasrec"].val_ndcg else "sasrec"
    assert winner(trained, order) == expected
    # a tie goes to the candidate listed first; NaN never wins
    tie = {"a": trained["sasrec"], "b": trained["sasrec"]}
    assert winner(tie, ["b", "a"]) == "b"
    nan = {"a": _trained(good, float("nan")), "b": trained["two_tower"]}
    assert winner(nan, ["a", "b"]) == "b"


def test_plan_skips_ease_above_its_item_limit_and_a_blend_without_members() -> None:
    config = load_config(CONF_DIR, "test", ["train.ease.max_items=50"])
    plan = plan_candidates(config, n_items=100)
    assert plan.models == ("two_tower", "sasrec", "als") and plan.blend
    assert "train.ease.max_items" in plan.skipped["ease"]
    lonely = load_config(CONF_DIR, "test", ["train.candidates=[two_tower,ease,blend]"])
    plan = plan_candidates(
        lonely.model_copy(update={"train": lonely.train.model_copy(update={})}), n_items=10**6
    )
    assert plan.models == ("two_tower",) and not plan.blend and "blend" in plan.skipped


def test_refit_replaces_the_closed_form_members_a_blend_serves() -> None:
    rng = np.random.default_rng(4)
    validation = _targets(rng)
    tower, als = _oracle(validation, 1.0, rng), _oracle(validation, 1.0, rng)
    trained = {"two_tower": _trained(tower, 0.0), "als": _trained(als, 0.0)}
    trained["blend"] = blend_candidate(trained, validation, k=3, steps=10)
    assert closed_form_parts(trained, "blend") == ["als"]
    assert closed_form_parts(trained, "two_tower") == []
    refit_factors = IdFactors(users=als.users * 0, items=als.items)
    refit = with_refit(trained, "blend", {"als": _trained(refit_factors, 0.0)})
    assert refit.val_ndcg == trained["blend"].val_ndcg  # selected by its validated fit
    # the served blend now scores the tower part alone (the refit ALS part is all zeros)
    served = refit.model.factor_set()
    users = np.arange(N_USERS)
    w = trained["blend"].blend_weights["two_tower"]
    np.testing.assert_allclose(
        served.user_vectors(users, validation.seen) @ served.items.T,
        w * (tower.users @ tower.items.T),
        rtol=1e-5,
        atol=1e-5,
    )
