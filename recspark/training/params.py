"""What the train stage ships to every rank: `TrainParams`, one candidate's training settings
(built from the configuration by `recspark.training.settings`), and the `StateDict` a warm start
copies. No Spark and no configuration: every rank imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from recspark.models.registry import SasrecParams
from recspark.vocab import GradientModel, LossName, ReaderPool

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TrainParams:
    """Everything a rank needs to train: built by the train stage, shipped to every rank."""

    model: GradientModel
    n_users: int
    n_items: int
    embedding_dim: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    steps_per_epoch: int
    max_samples: int | None = None  # the sample budget that set epochs x steps (a record)
    loss: LossName = "softmax"
    negatives: int = 0
    in_batch_negatives: int | None = None  # rows whose positives are in-batch negatives (None: all)
    use_history: bool = True
    history_dropout: float = 0.0
    sasrec: SasrecParams = field(default_factory=SasrecParams)
    patience: int = 3
    min_gain_se: float = 0.0  # an epoch must beat the best by this many standard errors
    eval_k: int = 10
    checkpoint_path: str | None = None
    fingerprint: str = ""
    threads: int = 0  # torch intra-op threads per rank on CPU; 0: the cores / ranks per machine
    reader_pool: ReaderPool = "thread"  # Petastorm: thread (decode beside training) | dummy
    # Batches per optimizer step, one process only: it then replays what that many ranks compute
    # (the reference data-parallel training must equal; tests/test_sparse_training.py).
    accumulate: int = 1
    sparse_gradients: bool = True  # sampled losses: sparse embedding gradients (False: dense)
    bf16: bool = False  # forward and loss under bfloat16 autocast (GPUs with bf16 units)
    # Wait for every rank before the exchange, timing the wait as idle (benchmarks: it separates
    # waiting for a slower rank from the exchange itself, at one more collective a step).
    measure_idle: bool = False
