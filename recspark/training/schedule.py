"""How many optimizer steps a gradient-trained candidate takes: epochs, capped by a sample budget.

A fit sees at most `max_samples` training rows (two-tower: interactions; SASRec: sequences),
whatever the size of the data, so a candidate's cost stops growing with the data once one
night's rows exceed what the model needs (`train.max_samples`, `train.sasrec.max_samples`).
The cap is in samples, not seconds: the same data and config give the same schedule, so the
same model, on any machine.

Below the budget nothing changes: `epochs` passes over the rows, with early stopping. Above it:
  * the budget still holds at least one pass: as many whole passes as fit in it;
  * it holds less than one pass: `PARTIAL_ROUNDS` rounds of budget / `PARTIAL_ROUNDS` samples
    each (fewer if `epochs` is smaller), each followed by validation, early stopping and a
    checkpoint like an epoch, so the best round is kept. The input is shuffled (Petastorm row
    groups, in-memory permutations), so a round is a sample of the rows, not their start.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PARTIAL_ROUNDS", "Schedule", "schedule"]

PARTIAL_ROUNDS = 4


@dataclass(frozen=True)
class Schedule:
    epochs: int  # validation rounds (whole passes unless `capped` and under one pass fits)
    steps_per_epoch: int  # optimizer steps per round, each of `global_batch` rows
    capped: bool  # the budget, not `epochs`, set the length


def schedule(epochs: int, n_rows: int, global_batch: int, max_samples: int | None) -> Schedule:
    """The rounds and steps of a fit of `epochs` passes over `n_rows` rows, `global_batch` rows a
    step (all ranks together), within `max_samples` rows (None: no cap)."""
    steps_per_pass = max(1, n_rows // global_batch)
    wanted = Schedule(epochs, steps_per_pass, capped=False)
    if max_samples is None or epochs * steps_per_pass * global_batch <= max_samples:
        return wanted
    budget_steps = max(1, max_samples // global_batch)
    if budget_steps >= steps_per_pass:
        return Schedule(budget_steps // steps_per_pass, steps_per_pass, capped=True)
    rounds = max(1, min(epochs, PARTIAL_ROUNDS, budget_steps))
    return Schedule(rounds, budget_steps // rounds, capped=True)
