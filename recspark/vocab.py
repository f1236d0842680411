"""The words configuration fields take, each set with one home: a `Literal` type.

The config loader checks every such field against its type (`recspark.config`), and the modules
that act on the words list them from here (`choices(ModelName)`), so a new model, loss or
precision is added in one place.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

ModelName = Literal["two_tower", "sasrec", "ease", "als"]
GradientModel = Literal["two_tower", "sasrec"]  # trained by gradient descent on ranks
ClosedForm = Literal["ease", "als"]  # fit in closed form from the Spark Gram or MLlib
# What train.candidates may list: a model, or `blend` (a weighted mix of the other candidates).
CandidateName = Literal["two_tower", "sasrec", "ease", "als", "blend"]
Launcher = Literal["horovod", "torch_distributor"]
LossName = Literal["softmax", "sampled_softmax", "bpr"]
# train.loss: a loss, or `auto` (the sampled softmax above train.sampled_softmax_above items).
LossSetting = Literal["auto", "softmax", "sampled_softmax", "bpr"]
Precision = Literal["float32", "int8", "bfloat16"]  # how scoring multiplies (score.precision)
QuantizedCompute = Literal["int8", "bfloat16"]  # the products over int8-quantized items
ReaderPool = Literal["thread", "dummy"]  # Petastorm decoding beside training, or inline
SplitName = Literal["leave_last_k", "global_time", "random_by_user", "random_by_item", "external"]
NegativeSampling = Literal["uniform", "popularity"]
Baseline = Literal["popularity", "als", "ease"]
SourceFormat = Literal["csv", "tsv", "text", "json", "parquet", "delta", "sequence_lines"]
SourcePreset = Literal[
    "movielens_udata",
    "movielens_dat",
    "movielens_csv",
    "amazon_ratings",
    "lastfm_user_artists",
    "s3rec_sequences",
]
SyntheticFormat = Literal["csv", "parquet"]
StreamSource = Literal["files", "kafka"]  # stream.source: what the streaming ingest reads
OnlineStoreName = Literal["redis"]  # online.store: where the export stage writes
MetastoreKind = Literal["embedded", "external"]  # catalog.metastore
RowKind = Literal["pairs", "sequences"]  # the training rows a gradient model reads


def choices(literal: Any) -> tuple[str, ...]:
    """The words of a Literal type, in declaration order."""
    return tuple(get_args(literal))


__all__ = [
    "Baseline",
    "CandidateName",
    "ClosedForm",
    "GradientModel",
    "Launcher",
    "LossName",
    "LossSetting",
    "ModelName",
    "NegativeSampling",
    "Precision",
    "QuantizedCompute",
    "ReaderPool",
    "RowKind",
    "SourceFormat",
    "SourcePreset",
    "SplitName",
    "StreamSource",
    "SyntheticFormat",
    "choices",
]
