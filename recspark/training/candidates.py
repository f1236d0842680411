"""Champion selection: which candidates a run trains, the blend of them, and the winner.

Every candidate of `train.candidates` is trained on the same rows (the validation targets left
out) and measured by one function on the same validation users (`ranking.blend.target_ndcg`:
full catalog, the user's other train items excluded). The candidate with the best validation
NDCG@`evaluate.k` is the one the run registers and the gate judges; on a tie the one listed first
wins, and a blend wins only when it is strictly better than every member.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recspark.config import Config
from recspark.models.base import ScoringModel
from recspark.models.ease import MAX_ITEMS_KEY
from recspark.models.encoders import blend_spec
from recspark.ranking.blend import ValidationTargets, blend_factors, fit_blend, target_ndcg
from recspark.ranking.factors import FactorSet
from recspark.results import EpochStats
from recspark.training.reuse import Kept
from recspark.vocab import CandidateName, ClosedForm, choices

BLEND: CandidateName = "blend"
# Fit in closed form (or by Spark MLlib) rather than on the ranks: cheap to refit after selection.
CLOSED_FORM: tuple[str, ...] = choices(ClosedForm)


@dataclass(frozen=True)
class Trained:
    """A trained candidate and how it was trained, before it is logged."""

    model: ScoringModel
    params: dict[str, Any]  # logged as MLflow params
    history: tuple[EpochStats, ...]
    best_val_ndcg: float | None  # the training loop's best epoch (gradient models)
    seconds: float
    ranks: int
    launcher: str
    device: str
    resumed_from_epoch: int | None = None
    # The factors validation scores: user vectors from the validation histories.
    val_factors: FactorSet | None = None
    val_ndcg: float = float("nan")  # the selection metric (set by `validated`)
    notes: dict[str, str] = field(default_factory=dict)  # logged as MLflow tags
    # A blend: what multiplies each member's raw scores (members with weight 0 left out).
    blend_weights: dict[str, float] = field(default_factory=dict)
    # `train.retrain_every`: where its fit is kept and its age (age 0, run "": trained this run).
    kept: Kept | None = None
    store: ScoringModel | None = None  # the validated fit to keep for later runs (before refit)
    # The fit handed to the evaluate stage as its baseline, and which (`training.baseline_fits`).
    baseline: tuple[FactorSet, str] | None = None

    @property
    def reused(self) -> bool:
        """A fit of an earlier run, re-evaluated rather than trained."""
        return self.kept is not None and self.kept.age > 0


def closed_form(
    model: ScoringModel, params: dict[str, Any], seconds: float, **extra: Any
) -> Trained:
    """A candidate fit on the driver or by Spark (EASE, ALS, a blend): no epochs, no ranks."""
    return Trained(
        model=model,
        params=params,
        history=(),
        best_val_ndcg=None,
        seconds=seconds,
        ranks=1,
        launcher="closed_form",
        device="cpu",
        **extra,
    )


@dataclass(frozen=True)
class Plan:
    """The candidates to train, in order, and the ones left out with the reason."""

    models: tuple[CandidateName, ...]
    blend: bool
    skipped: dict[str, str]


def plan_candidates(config: Config, n_items: int) -> Plan:
    """The configured candidates that fit the data: EASE only up to `train.ease.max_items`.

    A blend is planned when at least two other candidates remain.
    """
    skipped: dict[str, str] = {}
    models: list[CandidateName] = []
    for name in config.train.candidates:
        if name == BLEND:
            continue
        if name == "ease" and n_items > config.train.ease.max_items:
            skipped[name] = f"{n_items:,} items is more than {MAX_ITEMS_KEY}"
            continue
        models.append(name)
    blend = BLEND in config.train.candidates
    if blend and len(models) < 2:
        skipped[BLEND] = f"needs two other candidates; has {models}"
        blend = False
    return Plan(tuple(models), blend, skipped)


def validated(trained: Trained, validation: ValidationTargets, k: int) -> Trained:
    """`trained` with its validation NDCG@k measured on its validation factors."""
    factors = trained.val_factors or trained.model.factor_set()
    return dataclasses.replace(
        trained, val_factors=factors, val_ndcg=target_ndcg(factors, validation, k)
    )


def blend_model(members: Mapping[str, Trained], weights: Mapping[str, float]) -> ScoringModel:
    """The blend of `members` with `weights` on their raw scores, as one ScoringModel that also
    keeps its members' encoders (a refreshed user's vector, `recspark.models.encoders`)."""
    names = list(weights)
    factor_sets = [members[n].model.factor_set() for n in names]
    model = ScoringModel(BLEND, None, blend_factors(factor_sets, [weights[n] for n in names]))
    model.encoder_spec = blend_spec(
        [(n, members[n].model, f, weights[n]) for n, f in zip(names, factor_sets, strict=True)],
        [weights[n] for n in names if members[n].model.history_based],
    )
    return model


def blend_candidate(
    members: Mapping[str, Trained],
    validation: ValidationTargets,
    k: int,
    steps: int,
    max_points: int = 100,
) -> Trained:
    """The blend of `members` with simplex-grid weights fit on the validation users."""
    started = time.perf_counter()
    names = list(members)
    val_factors = [members[n].val_factors or members[n].model.factor_set() for n in names]
    fit = fit_blend(val_factors, validation, k, steps, max_points)
    weights = fit.factors_weights
    params = {f"weight.{n}": w for n, w in zip(names, fit.weights, strict=True)}
    params |= {f"scale.{n}": s for n, s in zip(names, fit.scales, strict=True)}
    return closed_form(
        blend_model(members, dict(zip(names, weights, strict=True))),
        {"model": BLEND, "grid_steps": steps, **params},
        time.perf_counter() - started,
        val_factors=blend_factors(val_factors, weights),
        val_ndcg=fit.ndcg,
        notes={"members": ",".join(n for n, w in zip(names, fit.weights, strict=True) if w > 0)},
        blend_weights={n: w for n, w in zip(names, weights, strict=True) if w > 0},
    )


def closed_form_parts(trained: Mapping[str, Trained], best: str) -> list[str]:
    """The closed-form models the selected candidate serves (itself, or its blend members) that
    were fit this run (a kept fit of an earlier run is served as it was kept)."""
    parts = list(trained[best].blend_weights) if best == BLEND else [best]
    return [name for name in parts if name in CLOSED_FORM and not trained[name].reused]


def with_refit(trained: Mapping[str, Trained], best: str, refit: Mapping[str, Trained]) -> Trained:
    """The selected candidate serving `refit` models in place of their validated fits.

    Its validation NDCG stays the one it was selected by (measured before the refit).
    """
    chosen = trained[best]
    if best != BLEND:
        return dataclasses.replace(
            refit[best],
            val_ndcg=chosen.val_ndcg,
            notes={"refit": "true"},
            kept=chosen.kept,
            store=chosen.store,
        )
    notes = {**chosen.notes, "refit": ",".join(refit)}
    model = blend_model({**trained, **refit}, chosen.blend_weights)
    return dataclasses.replace(chosen, model=model, notes=notes)


def winner(trained: Mapping[str, Trained], order: Sequence[str]) -> str:
    """The best candidate by validation NDCG (NaN loses); ties go to the first in `order`.

    A blend whose NDCG only equals its best member's loses to that member: it is the same model,
    scored at a higher cost.
    """

    def key(name: str) -> tuple[float, int]:
        ndcg = trained[name].val_ndcg
        return (ndcg if ndcg == ndcg else float("-inf"), -order.index(name))

    ranked = sorted(trained, key=key, reverse=True)
    best = ranked[0]
    if best == BLEND and len(ranked) > 1 and key(ranked[1])[0] >= trained[BLEND].val_ndcg:
        return ranked[1]
    return best


__all__ = [
    "BLEND",
    "CLOSED_FORM",
    "Plan",
    "Trained",
    "blend_candidate",
    "closed_form_parts",
    "plan_candidates",
    "validated",
    "winner",
    "with_refit",
]
