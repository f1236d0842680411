"""EASE and Spark MLlib ALS fit with the configured settings: one function for the train stage's
candidates (and their refit) and the evaluate stage's baselines.

The settings are `train.ease` (l2, max_items) and `evaluate.als` (rank, reg_param, alpha,
max_iter) with `train.seed`. The caller chooses the pairs: both stages pass bare positive
(user, item) pairs, the setting ALS was tuned on (`models.als.fit_als` would read a strength
column as the rating where the DataFrame has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pyspark.sql import DataFrame

from recspark.config import Config
from recspark.models.encoders import FoldInSpec
from recspark.ranking.factors import FactorSet
from recspark.vocab import ClosedForm


@dataclass(frozen=True)
class ClosedFormFit:
    """The fit model (EASE's module; None for ALS), its factors and its settings, and what
    folds a new history in (ALS; `recspark.models.encoders`)."""

    network: torch.nn.Module | None
    factors: FactorSet
    params: dict[str, Any]
    encoder_spec: FoldInSpec | None = None


def fit_closed_form(
    name: ClosedForm, pairs: DataFrame, config: Config, n_users: int, n_items: int
) -> ClosedFormFit:
    """EASE or ALS fit on the positive `pairs` (user_index, item_index[, strength])."""
    if name == "ease":
        from recspark.models.ease import fit_ease

        ease_cfg = config.train.ease
        ease = fit_ease(pairs, n_items, ease_cfg.l2, max_items=ease_cfg.max_items)
        return ClosedFormFit(ease, ease.factor_set(), {"l2": ease_cfg.l2})
    from recspark.models.als import fit_als

    als = config.evaluate.als
    factors = fit_als(
        pairs, n_users, n_items, rank=als.rank, reg_param=als.reg_param, alpha=als.alpha,
        max_iter=als.max_iter, seed=config.train.seed,
    )  # fmt: skip
    return ClosedFormFit(None, factors, als.model_dump(), FoldInSpec(als.reg_param, als.alpha))


__all__ = ["ClosedForm", "ClosedFormFit", "fit_closed_form"]
