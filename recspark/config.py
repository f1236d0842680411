"""Typed, strict configuration: `conf/base.yaml` + an environment overlay + command-line overrides.

Each section is a frozen pydantic model that forbids unknown keys; fields that take one of a few
words are `Literal` types from `recspark.vocab`, and the rules for a value sit next to its field.
Unknown keys and bad values are errors that name the key and the file (or the `--set` override)
they came from.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from recspark.vocab import (
    Baseline,
    CandidateName,
    Launcher,
    LossName,
    LossSetting,
    MetastoreKind,
    NegativeSampling,
    OnlineStoreName,
    Precision,
    ReaderPool,
    SourceFormat,
    SourcePreset,
    SplitName,
    StreamSource,
    SyntheticFormat,
)


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


class RuleError(ValueError):
    """A rule across fields of one section failed; `key` names the field it reports on."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


SqlAuth = Literal["none", "password"]


def is_loopback(host: str) -> bool:
    """True for `localhost` and addresses of the loopback network (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def join_path(base: str, *parts: str) -> str:
    """`base` / `parts` for local paths and URIs alike (`s3a://bucket/lake` keeps its `//`)."""
    if "://" in base:
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def _is_absolute(location: str) -> bool:
    """A URI or an absolute path: used as it is, not resolved against a folder."""
    return "://" in location or Path(location).is_absolute()


def _as_text(value: Any) -> Any:
    """YAML numbers and dates where text is expected (`"8"`, `2025-11-01`) are taken as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


Text = Annotated[str, BeforeValidator(_as_text)]


def _identifier(value: str) -> str:
    """A name that goes into SQL text as it is: refused unless a plain lower-case identifier
    (the Hive metastore lower-cases names; nothing else can break out of the quoting)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,127}", value):
        raise ValueError(
            f"must be a lower-case SQL identifier (a-z, 0-9, _; not starting with a digit), "
            f"got {value!r}"
        )
    return value


Identifier = Annotated[str, BeforeValidator(_as_text), AfterValidator(_identifier)]
Count = Annotated[int, Field(ge=1)]
RawColumn = Literal["user_id", "item_id", "event_type", "value", "event_ts"]


class Section(BaseModel):
    """A config section: frozen, strict types, unknown keys refused.

    Each field's docstring is its description (`use_attribute_docstrings`): the configuration
    reference of the documentation site is generated from them (docs/gen_ref_pages.py), and
    tests/test_config_defaults.py checks that every field has one.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True
    )


class SparkConfig(Section):
    app_name: Text = "recspark"
    """The Spark application name (shown in the UI and by the cluster manager)."""
    master: Text | None = "local[2]"
    """The master when Python starts Spark (`local[2]`, `spark://host:7077`, ...); under
    `spark-submit` its `--master` wins. null: Spark's own default."""
    bind_address: Text | None = "127.0.0.1"
    """Every port and the UI of a Spark that Python starts bind here (the process's `SPARK_LOCAL_IP`
    is set to it). null: the environment decides (`SPARK_LOCAL_IP`, else every interface), as a
    cluster driver needs. Under `spark-submit` export `SPARK_LOCAL_IP` yourself."""
    conf: dict[Text, Text] = {
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.snapshotPartitions": "2",
    }
    """Spark settings passed to the session as they are (`spark.driver.memory`,
    `spark.sql.shuffle.partitions`, ...); an overlay's entries are merged with these key by key.
    Keys naming a secret, password, token, credential or access key are redacted wherever recspark
    prints or logs them."""


class PathsConfig(Section):
    root: Text = "."
    """The folder every relative path below (and elsewhere in the configuration) resolves against;
    itself relative to the project root (the folder holding `conf/`)."""
    lakehouse: Text = "lakehouse"
    """Where the Delta tables live: `<lakehouse>/<table name>`. Any Hadoop file system URI
    (`s3a://`, `abfss://`, `hdfs://`) works."""
    raw: Text = "data/raw"
    """Where the synthetic generator writes and ingest reads (`source.path` is under it)."""
    work: Text = "work"
    """Scratch: the Petastorm cache, training checkpoints and kept fits. Read with local file APIs:
    on a multi-node cluster a POSIX mount every node sees."""
    reports: Text = "reports"
    """The report stage's pages: `<reports>/<run_date>/run_report.html`."""


class TablesConfig(Section):
    interactions: Identifier = "interactions"
    """Clean events, partitioned by `event_date`, written by MERGE on the event key."""
    interactions_quarantine: Identifier = "interactions_quarantine"
    """Rejected input rows, each with its reason."""
    user_ids: Identifier = "user_ids"
    """The user id map: `user_id` to a contiguous `user_index`, kept across runs."""
    item_ids: Identifier = "item_ids"
    """The item id map: `item_id` to a contiguous `item_index`, kept across runs."""
    train_interactions: Identifier = "train_interactions"
    """The (user, item) pairs the models train on."""
    holdout: Identifier = "holdout"
    """The held-out (user, item) pairs the evaluate stage measures on."""
    training_set: Identifier = "training_set"
    """Labelled examples (positives and sampled negatives) for pointwise models."""
    model_metrics: Identifier = "model_metrics"
    """Every metric of every model, baseline and candidate of a run."""
    recommendations: Identifier = "recommendations"
    """Every published run's recommendations, partitioned by `run_date`."""
    recommendations_staging: Identifier = "recommendations_staging"
    """A scored run, written and validated here before publishing."""
    recommendations_latest: Identifier = "recommendations_latest"
    """The published run analysts and applications read."""
    pipeline_runs: Identifier = "pipeline_runs"
    """One row per stage run, failed ones too (a log)."""
    user_features: Identifier = "user_features"
    """Per-user profile features."""
    item_features: Identifier = "item_features"
    """Per-item profile and popularity features."""
    user_sequences: Identifier = "user_sequences"
    """Each user's latest train items in time order."""
    run_health: Identifier = "run_health"
    """The monitoring checks' results (`monitoring.*`)."""
    forget_requests: Identifier = "forget_requests"
    """`recspark forget`'s audit: one row per request, no ids."""
    fresh_recommendations: Identifier = "fresh_recommendations"
    """`recspark refresh`: each refreshed top-K."""
    refresh_batches: Identifier = "refresh_batches"
    """`recspark refresh`: one row per micro-batch (its health)."""


TableKey = Literal[
    "interactions",
    "interactions_quarantine",
    "user_ids",
    "item_ids",
    "train_interactions",
    "holdout",
    "training_set",
    "model_metrics",
    "recommendations",
    "recommendations_staging",
    "recommendations_latest",
    "pipeline_runs",
    "user_features",
    "item_features",
    "user_sequences",
    "run_health",
    "forget_requests",
    "fresh_recommendations",
    "refresh_batches",
]
"""The keys of `tables` (tests/test_config.py checks they are the fields of TablesConfig)."""


class SourceConfig(Section):
    preset: SourcePreset | None = None
    """A public layout that sets format, header, delimiter, columns, mapping, constants and
    timestamp_format: `movielens_udata` (`u.data`), `movielens_dat` (`ratings.dat`), `movielens_csv`
    (`ratings.csv`), `amazon_ratings`, `lastfm_user_artists`, `s3rec_sequences` (S3Rec `user item
    item ...` lines such as `Beauty.txt`: one purchase per item, stamped 2000-01-01 00:00 UTC plus
    one hour per position; a line without items is quarantined). null: the settings below as
    written."""
    format: SourceFormat = "csv"
    """`csv`, `tsv`, `text` (any delimiter, e.g. `::`), `json` (JSON lines), `parquet`, `delta` (an
    existing Delta table) or `sequence_lines` (`user item item ...` per line, split on `delimiter`;
    blank: any whitespace)."""
    path: Text = "events"
    """A file, a folder or a Delta table, relative to `paths.raw`; `{run_date}` in it is replaced by
    the run date (nightly landing folders, e.g. `events/date={run_date}`). Read literally: `[`, `{`,
    `*` and `?` are not patterns."""
    header: bool = False
    """Text formats: the first line holds the field names; each file is then read by its own header
    and mapped by name."""
    delimiter: Text = ","
    """Text formats: the field delimiter (several characters allowed)."""
    multiline: bool = False
    """Text formats are read per RFC 4180 (a quoted field may hold the delimiter; a doubled quote in
    it is one quote). true: a quoted field may also hold line breaks, each file is read by one task,
    and an unclosed quote makes the rest of its file one malformed record. false: one record per
    line (an unclosed quote costs that line only)."""
    columns: list[Text] = ["user_id", "item_id", "event_type", "value", "event_ts"]
    """Field names in file order for headerless text, and the fields read from JSON (or, from Kafka,
    of a delimited message)."""
    mapping: dict[RawColumn, Text] = {}
    """recspark column -> source column, for sources that name them differently, e.g. `{user_id:
    userId, item_id: movieId, value: rating, event_ts: timestamp}`."""
    constants: dict[RawColumn, Text] = {}
    """Constant values for columns the source lacks, e.g. `{event_type: rating}`; `event_ts:
    "@run_date"` stamps undated events with the run date."""
    timestamp_format: Text = "yyyy-MM-dd HH:mm:ss"
    """A Spark datetime pattern (read in the session time zone), `epoch_seconds`, `epoch_millis`, or
    `iso8601` (`2026-01-01T10:00:00Z` in its usual variants: `T` or a space, fractional seconds,
    offsets `Z`, `+01`, `+01:00`, `+0100`; no offset means UTC). Typed timestamps (Parquet, Delta)
    are used as they are."""
    item_catalog: Text | None = "items"
    """A CSV (with a header `item_id,...`) relative to `paths.raw`: events for items not in it are
    quarantined as `unknown_item`, and its columns join `item_features`. null: no check."""


class IngestConfig(Section):
    event_weights: Annotated[dict[Text, float], Field(min_length=1)] = {
        "view": 1.0,
        "click": 2.0,
        "add_to_cart": 3.0,
        "purchase": 5.0,
        "rating": 3.0,
        "play": 1.0,
    }
    """The implicit-feedback weight of each event type; an event type not listed is quarantined as
    `unknown_event_type`."""
    rating_min: float = 0.5
    """The lowest valid rating (below: `rating_out_of_range`)."""
    rating_max: float = 5.0
    """The highest valid rating (above: `rating_out_of_range`)."""
    rating_threshold: float | None = None
    """Explicit ratings to implicit feedback: a rating below this gets weight 0 (kept as seen, never
    a positive). null: every rating is a positive."""
    count_types: list[Text] = ["play"]
    """Event types whose value is a count (e.g. plays): their weight is multiplied by the value."""
    future_tolerance_s: int | None = 3600
    """Events later than the end of the run date plus this many seconds are `future_timestamp`.
    null: no check."""
    min_timestamp: Text | None = "1995-01-01 00:00:00"
    """Events before this time are `too_old`. null: no check."""
    near_duplicate_window_s: float = 2.0
    """A repeat of (user, item, event type) within this many seconds of the previous one is a
    `near_duplicate` (double clicks, retrying clients; a burst keeps its first event). 0: off."""
    max_events_per_user_day: int | None = 5000
    """Users with more clean events than this on one day have all that day's events quarantined as
    `bot_like_user`. null: off."""
    max_value: Annotated[float, Field(ge=0.0)] | None = 1_000_000.0
    """A value (play count, rating, ...) above this is `bad_value`, as are values that are not
    finite or negative. null: no upper bound."""
    max_id_length: Count | None = 256
    """User or item ids longer than this many characters (after trimming) are `id_too_long`. null:
    no limit."""
    pseudonymise_users: bool = False
    """Replace every user id at ingest by HMAC-SHA256(key, id) as 64 hex characters, before anything
    is written (the quarantine's raw_record is then left empty). The key (at least 32 characters)
    comes from `pseudonym_key_env` or `pseudonym_key_file`, never from configuration; without one
    ingest stops (exit 2)."""
    pseudonym_key_env: Text = "RECSPARK_PSEUDONYM_KEY"
    """The environment variable holding the pseudonym key."""
    pseudonym_key_file: Text | None = None
    """A secret file whose first line is the pseudonym key, read when the environment variable is
    unset."""


class KafkaConfig(Section):
    """stream.kafka: the topic the streaming ingest reads when stream.source is kafka."""

    bootstrap_servers: Text = "127.0.0.1:9092"
    """The Kafka brokers, `host:port[,host:port...]`."""
    topic: Text | None = None
    """The topic to read; required with `stream.source: kafka`."""
    # earliest | latest | Spark's JSON of offsets per partition; for a query's first run only
    # (later runs go on from the checkpoint).
    starting_offsets: Text = "earliest"
    """`earliest`, `latest` or Spark's JSON of offsets per partition; for a query's first run only
    (later runs go on from the checkpoint)."""
    max_offsets_per_trigger: Count | None = None
    """Messages per micro-batch at most. null: every new message."""
    fetch_max_wait_ms: Count = 10
    """The consumers' `fetch.max.wait.ms`: how long a fetch waits for more messages. Kafka's
    default, 500 ms, is paid by every micro-batch at the end of its offset range (a read of a
    few thousand messages took 0.8 s instead of 0.28 s); `options` can still set it."""
    checkpoint: Text = "work/checkpoints/ingest_kafka"
    """The streaming query's checkpoint (the offsets read), under `paths.root`: keep it with the
    lakehouse."""
    # How long the check before a run waits for the brokers to describe the topic.
    start_timeout_s: Count = 30
    """How long the check before a run waits for the brokers to describe the topic; past it the run
    fails with one line."""
    # Kafka consumer settings, passed to Spark's connector as `kafka.<key>` (security.protocol,
    # sasl.jaas.config, ...): never printed (recspark/credentials.py).
    options: dict[Text, Text] = {}
    """Kafka consumer settings, passed to Spark's connector as `kafka.<key>` (`security.protocol`,
    `sasl.mechanism`, `sasl.jaas.config`, ...): never printed."""

    @model_validator(mode="after")
    def _options_are_consumer_settings(self) -> Self:
        for key in self.options:
            if key.startswith("kafka.") or key == "bootstrap.servers":
                raise RuleError(
                    "options",
                    f"{key!r}: give the consumer setting without `kafka.` (it is added), and the "
                    "brokers as stream.kafka.bootstrap_servers",
                )
        return self


class StreamConfig(Section):
    source: StreamSource = "files"
    """What `recspark run --stage ingest_stream` reads: `files` (new files of `landing`) or `kafka`
    (new messages of `kafka.topic`), cleaned with the same rules as ingest, exactly once."""
    landing: Text = "data/landing"
    """The folder the streaming ingest watches, relative to `paths.root`; read with the `source`
    settings."""
    checkpoint: Text = "work/checkpoints/ingest_stream"
    """The file stream's checkpoint, relative to `paths.root`."""
    max_files_per_trigger: int | None = None
    """Files per micro-batch at most. null: every new file."""
    kafka: KafkaConfig = KafkaConfig()
    """The Kafka source of the streaming ingest and of `recspark refresh`."""

    @model_validator(mode="after")
    def _kafka_needs_a_topic(self) -> Self:
        if self.source == "kafka" and not self.kafka.topic:
            raise RuleError("kafka.topic", "stream.source kafka needs the topic to read")
        return self


class FeaturesConfig(Section):
    min_user_interactions: int = 3
    """Users with fewer distinct positive items than this are kept but marked
    `is_below_min_interactions` in `user_features`; such users get no held-out part."""
    min_item_interactions: int = 2
    """Items with fewer distinct users than this are kept but marked `is_below_min_interactions` in
    `item_features`."""
    split: SplitName = "leave_last_k"
    """How the held-out part is chosen: `leave_last_k` (each user's latest `holdout_per_user`
    items), `global_time` (the last `holdout_days` before the end of the run date), `random_by_user`
    / `random_by_item` (seeded, stratified, `test_ratio`), or `external` (a published benchmark's
    own split: the pairs listed in `external_test`)."""
    external_test: Text | None = None
    """For `split: external` (and only then): a CSV (with a header), TSV or Parquet file with
    columns `user_id`, `item_id`, the pairs held out; relative paths are under `paths.raw`."""
    holdout_per_user: Count = 1
    """`leave_last_k`: the latest items held out per user."""
    holdout_days: int = 7
    """`global_time`: the days before the end of the run date that are held out."""
    test_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    """`random_by_user` / `random_by_item`: the share of pairs held out."""
    negatives: NegativeSampling = "uniform"
    """How `training_set`'s negatives are drawn: `uniform`, or `popularity` (probability
    proportional to popularity ** `popularity_alpha`)."""
    negatives_per_positive: int = 4
    """Sampled negatives per positive pair in `training_set`."""
    popularity_alpha: float = 0.75
    """The exponent of popularity-weighted negative sampling."""
    windows_days: list[int] = [7, 30]
    """The activity and popularity windows (days) of the profile tables."""
    sequence_length: int = 50
    """The last N train items per user kept in `user_sequences` (the history the two-tower and
    SASRec read)."""
    seed: int = 42
    """The seed of the split and the negative sampling."""

    @model_validator(mode="after")
    def _external_test_with_external_split(self) -> Self:
        if (self.split == "external") != (self.external_test is not None):
            raise RuleError(
                "external_test",
                "set it (a file of held-out user_id, item_id pairs) exactly when "
                "features.split is external",
            )
        return self


class SasrecConfig(Section):
    batch_size: int = 64
    """Sequences per rank per step (each holds up to `features.sequence_length` targets)."""
    layers: int = 2
    """Self-attention blocks."""
    heads: int = 1
    """Attention heads per block."""
    dropout: float = 0.5
    """Dropout rate (Amazon Beauty, next-item protocol: test NDCG@10 0.0553 at 0.5 against 0.0529 at
    0.2)."""
    epochs: Count | None = 100
    """SASRec's own epoch limit: it needs tens of epochs where the two-tower needs a few. null:
    `train.epochs`."""
    max_samples: Count | None = 600_000
    """Sequences one fit may see over all its epochs (capped; `recspark/training/schedule.py`).
    null: no cap."""
    learning_rate: float | None = 0.001
    """Per rank, scaled by the number of ranks like `train.learning_rate`. null:
    `train.learning_rate`."""
    weight_decay: float | None = None
    """null: `train.weight_decay`."""
    patience: int | None = 5
    """Epochs without validation gain before early stopping. null: `train.patience`."""


class EaseConfig(Section):
    l2: float = 200.0
    """The ridge penalty lambda."""
    max_items: int = 20000
    """EASE is skipped above this many items: its matrices are dense on the driver, about 28 x
    items^2 bytes at peak (10 GiB at 20,000)."""


class BlendConfig(Section):
    grid_steps: Count = 10
    """The blend's weights lie on the simplex in steps of 1/grid_steps (every member alone
    included); each member's scores are first divided by their spread on validation."""
    max_grid_points: Count = 100
    """Fewer steps where the grid would have more points than this (4 members: 6 steps, 84
    points)."""


DEFAULT_CANDIDATES: list[CandidateName] = ["two_tower", "sasrec", "ease", "als", "blend"]


class TrainConfig(Section):
    candidates: Annotated[list[CandidateName], Field(min_length=1)] = DEFAULT_CANDIDATES
    """The models trained every run, each on the same rows and measured on the same validation users
    (NDCG@`evaluate.k`); the best goes to the gate. `two_tower` (user tower: id + encoder of the
    recent history; item tower: id + bias), `sasrec` (self-attention over the user's sequence,
    next-item), `ease` (closed-form item-item; skipped above `ease.max_items`), `als` (Spark MLlib
    implicit ALS, settings `evaluate.als`), `blend` (a weighted mix of the other candidates' scores,
    weights fit on validation). One model: a one-element list."""
    launcher: Launcher = "horovod"
    """What starts the training ranks: `horovod` (`horovod.spark.run`) or `torch_distributor`
    (Spark's TorchDistributor)."""
    num_proc: Count = 2
    """Training ranks (Spark tasks); each reads its own Petastorm shard. Needs that many free task
    slots at once."""
    embedding_dim: Count = 64
    """The dimension of user and item vectors."""
    epochs: Count = 8
    """Epochs at most; early stopping may end sooner."""
    max_samples: Count | None = 4_000_000
    """Training rows one fit may see over all its epochs (capped; `recspark/training/schedule.py`).
    Larger data gets fewer passes (or, under one pass, 4 validation rounds of max_samples / 4 rows),
    so the cost stops growing with the data; in rows, not seconds, so a run is reproducible. null:
    no cap."""
    batch_size: Count = 256
    """Training rows per rank per step."""
    learning_rate: float = 0.0025
    """Per rank; scaled by the number of ranks."""
    weight_decay: float = 0.0
    """The optimizer's weight decay."""
    loss: LossSetting = "auto"
    """`auto` (softmax up to `sampled_softmax_above` items, sampled_softmax above), `softmax`
    (against the whole catalog, O(items) per row), `sampled_softmax` (the batch's positives +
    `negatives` items drawn uniformly and shared by the batch, logQ-corrected, sparse embedding
    gradients) or `bpr` (one sampled negative per positive; two_tower only)."""
    sampled_softmax_above: Count = 50000
    """`loss: auto` switches to the sampled softmax above this many items."""
    negatives: Annotated[int, Field(ge=0)] = 1024
    """The sampled softmax's shared uniform negatives per batch."""
    in_batch_negatives: Annotated[int, Field(ge=0)] = 1024
    """In-batch negatives: the positives of the batch's rows, or of this many drawn at random where
    a batch has more (SASRec: every position of every sequence). 0: none."""
    sparse_gradients: bool = True
    """Sampled losses train the embedding tables with sparse gradients (LazyAdam; the ranks exchange
    only the rows a step touched). false: dense gradients, every table all-reduced whole at each
    step."""
    bf16: bool = False
    """bfloat16 autocast for the forward pass and loss (GPUs with bf16 units; CPUs with AVX512-BF16
    too). Its effect on quality is not measured."""
    use_history: bool = True
    """two_tower: the user tower also encodes the user's recent history."""
    history_dropout: float = 0.5
    """two_tower: the share of history items hidden in each batch."""
    patience: int = 3
    """Early stop after this many epochs without validation gain."""
    min_gain_se: Annotated[float, Field(ge=0.0)] = 0.0
    """The validation gain an epoch needs, in standard errors of its validation NDCG, to count as
    a gain for `patience`: a smaller gain keeps the better parameters but counts as an epoch
    without gain. 0: any gain above 1e-5 counts (noise-sized gains keep training going)."""
    validation_users: int = 10000
    """Users whose latest train item is held out for validation (selection and early stopping): at
    1,000 the standard error of NDCG@10 exceeds the gains between epochs."""
    validation_items_per_user: Count = 1
    """Held-out items per validation user (each its own target; a user keeps at least one train
    item). More targets: a less noisy selection and blend."""
    reader_pool: ReaderPool = "thread"
    """Petastorm decoding: `thread` (a reader thread beside training) or `dummy` (inline, in the
    training thread; less contention where each rank has a single core)."""
    checkpoint_dir: Text = "work/checkpoints/train"
    """Training checkpoints, per run date and model: a killed run resumes from here. A shared file
    system on a cluster."""
    warm_start: bool = False
    """Start from the champion's parameters (same model kind): incremental training."""
    seed: int = 42
    """The seed of initialisation, shuffling and sampling in training."""
    nics: list[Text] = []
    """Network interfaces Horovod uses between ranks (`[lo]` on one machine, e.g. `[eth0]` on a
    cluster); []: Horovod chooses."""
    start_timeout_s: int = 120
    """Seconds Horovod waits for all ranks to start; raise it on a shared cluster."""
    sasrec: SasrecConfig = SasrecConfig()
    """SASRec's architecture and its own schedule."""
    ease: EaseConfig = EaseConfig()
    """EASE's settings."""
    blend: BlendConfig = BlendConfig()
    """The blend's weight grid."""
    refit: bool = True
    """After selection, a closed-form winner (ease, als; or such a blend member) is refit on every
    train pair, the validation items included. false: served as validated."""
    retrain_every: dict[CandidateName, Count] = {}
    """Candidates trained only every N runs, e.g. `{sasrec: 7}`: the fit is kept in its MLflow child
    run and re-evaluated in between on each run's validation users. Unlisted candidates: every run;
    `blend` cannot be kept."""

    @model_validator(mode="before")
    @classmethod
    def _model_was_replaced(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "model" in data:
            raise RuleError(
                "model",
                "train.model was replaced by train.candidates, a list "
                f"(e.g. train.candidates=[{data['model']}])",
            )
        return data

    @model_validator(mode="after")
    def _candidates_are_distinct(self) -> Self:
        if len(set(self.candidates)) != len(self.candidates):
            raise RuleError("candidates", f"lists a model twice: {self.candidates}")
        if "blend" in self.candidates and len(self.candidates) < 3:
            raise RuleError("candidates", "blend needs at least two other candidates to mix")
        return self

    @model_validator(mode="after")
    def _retrain_every_names_candidates(self) -> Self:
        for name in self.retrain_every:
            if name == "blend":
                raise RuleError(
                    "retrain_every", "blend is refit on every run's validation; it cannot be kept"
                )
            if name not in self.candidates:
                raise RuleError("retrain_every", f"{name} is not in train.candidates")
        return self

    @model_validator(mode="after")
    def _bpr_is_for_two_tower(self) -> Self:
        if self.loss == "bpr" and "sasrec" in self.candidates:
            raise RuleError(
                "candidates",
                "sasrec learns with softmax or sampled_softmax, not bpr: drop sasrec from the "
                "candidates or choose another train.loss",
            )
        return self

    def loss_for(self, n_items: int) -> LossName:
        """The loss a catalog of `n_items` trains with (`auto` resolved)."""
        if self.loss != "auto":
            return self.loss
        return "sampled_softmax" if n_items > self.sampled_softmax_above else "softmax"


class MlflowConfig(Section):
    tracking_uri: Text = "mlruns/mlflow.db"
    """A SQLite file under `paths.root`, or any URI (`http://...`, `sqlite:///...`). A server's
    login comes from the environment (`MLFLOW_TRACKING_USERNAME` / `_PASSWORD` or
    `MLFLOW_TRACKING_TOKEN`), not from this URI."""
    artifact_root: Text = "mlruns/artifacts"
    """The artifact folder, with a local store only (a tracking server keeps its own)."""
    experiment: Text = "recspark"
    """The MLflow experiment the runs go to."""
    registered_model: Text = "recspark"
    """The registered model's name, whatever the model; its kind is the version's `model_name`
    tag."""
    champion_alias: Text = "champion"
    """The registry alias the gate moves and the score stage reads."""


class AlsConfig(Section):
    rank: int = 128
    """Latent factors."""
    reg_param: float = 0.2
    """Regularisation (MLlib scales it by each user's and item's number of ratings)."""
    alpha: float = 1.0
    """The confidence weight of implicit feedback."""
    max_iter: int = 10
    """Iterations (above 15 MLlib's lineage overflows the stack: no checkpointing)."""


class EvaluateConfig(Section):
    k: Count = 10
    """The gate's cut-off."""
    ks: Annotated[list[Count], Field(min_length=1)] = [5, 10, 20]
    """Every metric is reported at each of these cut-offs."""
    baselines: list[Baseline] = ["popularity", "als"]
    """Scored beside the model on the same held-out data: `popularity`, `als`, `ease`."""
    gate_tolerance: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.02
    """The champion alias moves to a new model only if it beats popularity and its NDCG@k is at most
    this fraction below the current champion's (measured on today's held-out data)."""
    active_min_interactions: Count = 5
    """Segments: users with fewer train interactions than this are `new`, the rest `active`."""
    report: bool = True
    """Log `evaluation_report.md` and its PNG plots to the model's MLflow run."""
    reuse_candidate_fits: bool = True
    """A baseline that is also a train candidate (als, ease) is scored from the fit the train stage
    logged in that candidate's child run instead of being fit again. false: fit again on the whole
    train split."""
    als: AlsConfig = AlsConfig()
    """Spark MLlib implicit ALS: the baseline and the `als` candidate."""


class ScoreConfig(Section):
    k: Count = 10
    """Recommendations per user."""
    users_per_batch: int = 256
    """Users per matrix product: 64-256 keeps the (users x items) score block in cache."""
    precision: Precision = "float32"
    """`float32`, `int8` (items quantized to int8: 3.8x smaller, top-10 overlap ~0.99 with float32)
    or `bfloat16` (int8 items computed in bf16)."""
    explain_history: Annotated[int, Field(ge=0)] = 200
    """Each recommendation is explained by the user's seen item that supports it most, among the
    first this many seen items. 0: no explanations."""
    min_coverage: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    """Validation before publishing: at least this fraction of the catalog must be recommended to
    someone (capped by `min_coverage_items`)."""
    min_coverage_items: Count | None = 100
    """The coverage floor in items at most: on a large catalog even a good model's top-K sits on a
    small share of it. null: `min_coverage` of the catalog however large."""
    exact_max_items: int = 500_000
    """Catalogs above this many items are not ranked whole: each user's shortlist of unseen items
    (co-visitation neighbours, then popular items) is scored instead (embedding models only,
    float32)."""
    max_candidates: Count = 500
    """A shortlist's items at most (at least `k`)."""
    candidate_history: Count = 50
    """The user's latest items whose neighbours enter the shortlist."""
    neighbours_per_item: Count = 100
    """Co-visitation neighbours taken per history item."""
    popular_candidates: int = 100
    """The most popular items added to every shortlist."""

    @model_validator(mode="after")
    def _shortlist_holds_k(self) -> Self:
        if self.max_candidates < self.k:
            raise RuleError("max_candidates", "must be at least score.k")
        return self


class SyntheticConfig(Section):
    n_users: Count = 2000
    """Users."""
    n_items: Count = 500
    """Items."""
    n_interactions: int = 50000
    """Events generated (defective rows included)."""
    n_clusters: Count = 8
    """Latent taste clusters of users and items."""
    cluster_affinity: float = 0.8
    """The share of a user's events inside their taste cluster."""
    popularity_exponent: float = 2.5
    """Larger: more skewed item popularity within a cluster."""
    n_days: int = 60
    """Days the events spread over, from `start_date`."""
    start_date: Text = "2025-11-01"
    """The first day of events, YYYY-MM-DD."""
    defect_rate: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.02
    """The share of rows with a planted defect (duplicates, null users, unknown items, bad ratings
    or timestamps, unknown event types, truncated lines)."""
    late_rate: float = 0.03
    """The share of events landing 1-3 days after their own day."""
    format: SyntheticFormat = "csv"
    """The files written: `csv` or `parquet`."""
    partitions: int = 4
    """Spark partitions of the generating job (each writes its own files)."""
    seed: int = 7
    """The generator's seed: every draw is a hash of (seed, row, purpose)."""
    hostile_ids: bool = False
    """Give one user in 97 an id in another script, with quotes, the delimiter or a formula / SQL
    look-alike (conf/test.yaml turns it on; the demo keeps plain ids)."""


class CatalogConfig(Section):
    enabled: bool = True
    """Register every table by name in a Spark catalog database after each stage (`SELECT ... FROM
    recspark.recommendations_latest`). false: tables by path only."""
    database: Identifier = "recspark"
    """The catalog database: a lower-case identifier."""
    metastore: MetastoreKind = "embedded"
    """`embedded`: a Derby metastore under `paths.root` (one JVM at a time: stop the SQL server
    before a nightly on the same root); `external`: a Hive metastore service at `metastore_uri`
    (clusters)."""
    metastore_uri: Text | None = None
    """`thrift://metastore-host:9083`, required with `metastore: external`."""
    metastore_db: Text = "metastore_db"
    """The embedded metastore's folder, under `paths.root`."""
    warehouse: Text = "spark-warehouse"
    """Spark's warehouse folder (recspark's tables live in the lakehouse)."""
    sql_host: Text = "127.0.0.1"
    """Where `recspark sql-server` listens; an address beyond loopback needs `sql_auth:
    password`."""
    sql_port: Count = 10000
    """The SQL server's port."""
    sql_auth: SqlAuth = "none"
    """`none`, or `password`: clients log in as `sql_user` with the password from `sql_password_env`
    or `sql_password_file`. Plain text on the wire: use a trusted network or TLS."""
    sql_user: Text | None = None
    """The one user `sql_auth: password` admits."""
    sql_password_env: Text = "RECSPARK_SQL_PASSWORD"
    """The environment variable holding the SQL server's password."""
    sql_password_file: Text | None = None
    """A secret file (relative to `paths.root`) whose first line is the password, read when the
    variable is unset."""

    @model_validator(mode="after")
    def _external_needs_a_uri(self) -> Self:
        if self.metastore == "external" and not self.metastore_uri:
            raise RuleError("metastore_uri", "catalog.metastore external needs its thrift:// URI")
        return self

    @model_validator(mode="after")
    def _served_beyond_loopback_needs_a_password(self) -> Self:
        if self.sql_auth == "password" and not self.sql_user:
            raise RuleError("sql_user", "catalog.sql_auth password needs the user name sql_user")
        if self.sql_auth == "none" and not is_loopback(self.sql_host):
            raise RuleError(
                "sql_host",
                f"{self.sql_host} is not a loopback address: the SQL server listens beyond this "
                "machine only with catalog.sql_auth password (docs/guides/security.md)",
            )
        return self


class OnlineConfig(Section):
    store: OnlineStoreName | None = None
    """The export stage's key-value store, read by applications at request time: `redis`, or null
    (the export stage does nothing)."""
    redis_url: Text = "redis://127.0.0.1:6379/0"
    """The Redis server, `redis://host:6379/0` (`rediss://` for TLS), without a password."""
    redis_password_env: Text = "RECSPARK_REDIS_PASSWORD"
    """The environment variable holding the Redis password (AUTH, or the ACL user named in the URL);
    it wins over a password written into `redis_url`."""
    redis_password_file: Text | None = None
    """A secret file whose first line is the Redis password, read when the variable is unset."""
    key_prefix: Text = "recspark"
    """Keys are `{prefix}:current`, `{prefix}:recs:{version}`, ..."""
    batch_size: Count = 1000
    """Users per round trip from each Spark task."""
    keep_versions: Count = 2
    """Complete versions kept; older ones expire."""
    expire_after_s: Count = 3600
    """An old version's keys live this long after it stops being current."""


Threshold = Annotated[float, Field(ge=0.0)] | None


class CheckThresholds(Section):
    """A monitoring check's bounds on its compared figure (recspark/health.py); null: none."""

    warn_below: Threshold = None
    """Warn when the compared figure is below this. null: no bound."""
    fail_below: Threshold = None
    """Fail (exit 11) when the compared figure is below this. null: no bound."""
    warn_above: Threshold = None
    """Warn when the compared figure is above this. null: no bound."""
    fail_above: Threshold = None
    """Fail (exit 11) when the compared figure is above this. null: no bound."""


class ChecksConfig(Section):
    rows_in: CheckThresholds = CheckThresholds(
        warn_below=0.7, fail_below=0.4, warn_above=2.0, fail_above=None
    )
    """Rows in, against the trailing median."""
    quarantine_rate: CheckThresholds = CheckThresholds(warn_above=3.0, fail_above=10.0)
    """Quarantined / rows in, overall (subject `all`) and per reason."""
    new_users: CheckThresholds = CheckThresholds(warn_above=3.0, fail_above=10.0)
    """The share of the day's users that the id map did not hold before."""
    new_items: CheckThresholds = CheckThresholds(warn_above=3.0, fail_above=10.0)
    """The share of the day's items that the id map did not hold before."""
    model_ndcg: CheckThresholds = CheckThresholds(warn_below=0.9, fail_below=0.7)
    """The published model's NDCG@`evaluate.k` on the day's held-out users."""
    churn: CheckThresholds = CheckThresholds(warn_above=0.8, fail_above=0.98)
    """1 - the mean share of a user's top-K also in the published run (users in both; 1: all new);
    judged on the figure itself, not a ratio."""
    coverage: CheckThresholds = CheckThresholds(warn_below=0.7, fail_below=0.3)
    """The share of the catalog recommended to someone."""


class MonitoringConfig(Section):
    enabled: bool = True
    """Check the night as a whole after ingest and before publishing, each figure against its median
    over the trailing runs; a `fail` stops the run with exit code 11."""
    trailing_runs: Count = 7
    """Earlier run dates in the baseline (their median)."""
    min_trailing_runs: Count = 3
    """Fewer earlier runs: the check is recorded as `no_baseline`."""
    rate_floor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.001
    """Rates and shares are compared as at least this."""
    checks: ChecksConfig = ChecksConfig()
    """Thresholds per check on today's figure divided by its trailing median (churn: the figure
    itself)."""


class PrivacyConfig(Section):
    vacuum_retention_hours: Annotated[float, Field(ge=0.0)] = 0.0
    """`recspark forget` VACUUMs the tables it changed with this retention. 0: the rows are
    physically gone when forget returns (a job reading an older version at that moment fails). Above
    0: they stay in time travel until a later forget or VACUUM after the retention."""


class RefreshConfig(Section):
    """The refresh stream (`recspark refresh`, recspark/online/refresh.py)."""

    checkpoint: Text = "work/checkpoints/refresh"
    """The refresh stream's own Kafka offsets (under `paths.root`)."""
    trigger_interval_s: Annotated[float, Field(ge=0.0)] = 1.0
    """A micro-batch at most this often, in seconds (0: as soon as one ends)."""
    k: Count | None = None
    """Recommendations per user. null: `score.k`."""
    batch_size: Count = 256
    """Users per matrix product on a worker."""
    ingest_checkpoint: Text = "work/checkpoints/refresh_ingest"
    """The offsets of the stream's second query, which ingests the topic's events into
    `interactions` (exactly once) and quarantines the rest (under `paths.root`)."""
    ingest_interval_s: Annotated[float, Field(ge=0.0)] = 60.0
    """The ingest query's micro-batches at most this often, in seconds. Each also appends the
    refresh's staged rows to `fresh_recommendations`, which so trails the lists by up to this."""
    history_events: Count = 1000
    """Events since the night kept per user in the online store (the oldest are dropped)."""
    history_ttl_s: Count = 172_800
    """A user's events since the night expire this long after their last one, in seconds."""


class Config(Section):
    spark: SparkConfig = SparkConfig()
    """The Spark session."""
    paths: PathsConfig = PathsConfig()
    """Where data, tables, scratch and reports live."""
    tables: TablesConfig = TablesConfig()
    """Table names (also their names in the catalog)."""
    source: SourceConfig = SourceConfig()
    """The raw event source the ingest stage reads."""
    ingest: IngestConfig = IngestConfig()
    """Cleaning rules: what is quarantined, and event weights."""
    stream: StreamConfig = StreamConfig()
    """The streaming ingest (files or Kafka)."""
    features: FeaturesConfig = FeaturesConfig()
    """Id maps, profiles, sequences, the split and negatives."""
    train: TrainConfig = TrainConfig()
    """The train stage: candidates, launcher, schedule, losses."""
    mlflow: MlflowConfig = MlflowConfig()
    """The MLflow tracking store and registry."""
    evaluate: EvaluateConfig = EvaluateConfig()
    """The evaluate stage: metrics, baselines and the gate."""
    score: ScoreConfig = ScoreConfig()
    """The score stage: top-K, precision, validation, shortlists."""
    catalog: CatalogConfig = CatalogConfig()
    """Table registration in a Spark catalog and the SQL server."""
    online: OnlineConfig = OnlineConfig()
    """The online store the export stage writes."""
    refresh: RefreshConfig = RefreshConfig()
    """The refresh stream (`recspark refresh`)."""
    monitoring: MonitoringConfig = MonitoringConfig()
    """The night's health checks (`run_health`)."""
    privacy: PrivacyConfig = PrivacyConfig()
    """`recspark forget`."""
    synthetic: SyntheticConfig = SyntheticConfig()
    """The seeded synthetic data generator (`recspark generate`, the demo)."""
    project_root: str = Field(".", exclude=True)
    """Where the configuration was loaded from (the folder above `conf/`); set by the loader, never
    read from files."""
    env: str = "base"
    """The environment overlay applied; set by the loader, never read from files."""

    # -- resolved locations -------------------------------------------------------------------
    def path(self, relative: str) -> str:
        """Resolve a path from the config against paths.root (absolute paths and URIs pass)."""
        if _is_absolute(relative):
            return relative
        root = Path(self.paths.root)
        if not root.is_absolute():
            root = Path(self.project_root) / root
        return str((root / relative).resolve())

    def table_path(self, table_key: TableKey) -> str:
        """The Delta location of one table named in `tables`, e.g. `table_path("interactions")`."""
        return join_path(self.path(self.paths.lakehouse), getattr(self.tables, table_key))

    def raw_file(self, relative: str) -> str:
        """A location under paths.raw (absolute paths and URIs pass unchanged)."""
        return relative if _is_absolute(relative) else join_path(self.raw_path, relative)

    @property
    def raw_path(self) -> str:
        return self.path(self.paths.raw)

    @property
    def work_path(self) -> str:
        return self.path(self.paths.work)

    @property
    def mlflow_tracking_uri(self) -> str:
        uri = self.mlflow.tracking_uri
        if "://" in uri or uri.startswith("databricks"):
            return uri
        return f"sqlite:///{self.path(uri)}"

    @property
    def mlflow_artifact_root(self) -> str:
        return self.path(self.mlflow.artifact_root)


# -- loading -----------------------------------------------------------------------------------
_SEP = "."
# Mapping settings whose own keys may contain dots (spark.conf.spark.driver.memory).
_MAPPING_SETTINGS = (
    "spark.conf",
    "source.mapping",
    "source.constants",
    "ingest.event_weights",
    "stream.kafka.options",
)
_NOT_FROM_FILES = ("project_root", "env")
Origins = dict[str, str]  # dotted key -> the file or override it came from


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _merge(
    into: dict[str, Any], data: Mapping[str, Any], origin: str, origins: Origins, prefix: str = ""
) -> None:
    """Merge `data` into `into` (mappings key by key, anything else replaced); note origins."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key, {}), dict):
            origins.setdefault(dotted, origin)
            _merge(into.setdefault(key, {}), value, origin, origins, dotted + _SEP)
        else:
            into[key] = value
            origins[dotted] = origin


def _parse_override(item: str) -> dict[str, Any]:
    """`a.b.c=value` as the nested mapping {a: {b: {c: value}}}; the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}': empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': the value is not valid YAML: {exc}") from exc
    keys = key.split(_SEP)
    for prefix in _MAPPING_SETTINGS:
        if key.startswith(prefix + _SEP):
            keys = [*prefix.split(_SEP), key[len(prefix) + 1 :]]
    nested: Any = value
    for part in reversed(keys):
        nested = {part: nested}
    return dict(nested)


def _origin_of(origins: Origins, dotted: str) -> str:
    """Where `dotted` (or, for a whole section, its first key) came from."""
    if dotted in origins:
        return origins[dotted]
    found = next((o for k, o in origins.items() if k.startswith(dotted + _SEP)), None)
    if found is not None:
        return found
    parent = dotted.rpartition(_SEP)[0]
    return _origin_of(origins, parent) if parent else "?"


_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping of settings",
    "model_attributes_type": "expected a mapping of settings",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be above"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be below"),
}


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section at `loc` (a path of field names from Config)."""
    model: type[BaseModel] = Config
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(k for k in model.model_fields if k not in _NOT_FROM_FILES)


def _describe(error: Mapping[str, Any], origins: Origins) -> str:
    """One pydantic error as `key (from origin): what is wrong`."""
    loc = tuple(str(p) for p in error["loc"] if p != "[key]")  # a bad key of a mapping
    kind = error["type"]
    if kind == "extra_forbidden":
        dotted = _SEP.join(loc)
        known = ", ".join(_known_keys(loc[:-1]))
        return f"unknown key '{dotted}' in {_origin_of(origins, dotted)}; known keys here: {known}"
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, RuleError):
        loc = (*loc, cause.key)
        problem = str(cause)
    elif kind == "literal_error":
        problem = f"expected one of {error['ctx']['expected']}, got {error['input']!r}"
    elif kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        problem = f"{words} {error['ctx'][bound]}, got {error['input']!r}"
    elif kind == "too_short":
        problem = f"needs at least {error['ctx']['min_length']} entries, got {error['input']!r}"
    else:
        problem = f"{_EXPECTED.get(kind, error['msg'])}, got {error['input']!r}"
    dotted = _SEP.join(loc)
    return f"{dotted} (from {_origin_of(origins, dotted)}): {problem}"


def build_config(
    merged: Mapping[str, Any], origins: Origins, project_root: str, env: str
) -> Config:
    """The typed configuration from merged settings; errors name each key and its origin.

    Raises:
        ConfigError: the first problem (and how many more there are).
    """
    for key in _NOT_FROM_FILES:
        if key in merged:
            raise ConfigError(_describe({"loc": (key,), "type": "extra_forbidden"}, origins))
    try:
        config = Config.model_validate(dict(merged))
    except ValidationError as exc:
        problems = [_describe(e, origins) for e in exc.errors()]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more) from None
    return config.model_copy(update={"project_root": project_root, "env": env})


def _layers(conf_path: Path, env: str) -> Iterable[Path]:
    base = conf_path / "base.yaml"
    if not base.is_file():
        raise ConfigError(f"{base}: no such file (--conf must name the folder with base.yaml)")
    yield base
    if env != "base":
        overlay = conf_path / f"{env}.yaml"
        if not overlay.is_file():
            available = sorted(p.stem for p in conf_path.glob("*.yaml") if p.stem != "base")
            raise ConfigError(f"{overlay}: no such environment overlay (have: {available})")
        yield overlay


def load_config(
    conf_dir: str | Path = "conf", env: str = "local", overrides: list[str] | None = None
) -> Config:
    """Load `<conf_dir>/base.yaml`, merge `<conf_dir>/<env>.yaml` and `key=value` overrides.

    Args:
        conf_dir: the folder holding base.yaml and the overlays.
        env: the overlay to apply (`local`, `test`, ...); `base` applies none.
        overrides: `section.key=value` strings (values parsed as YAML), applied last.

    Returns:
        The typed, frozen configuration.

    Raises:
        ConfigError: a file is missing or invalid, a key is unknown, or a value is wrong.
    """
    conf_path = Path(conf_dir).resolve()
    merged: dict[str, Any] = {}
    origins: Origins = {}
    for layer in _layers(conf_path, env):
        _merge(merged, _read_yaml(layer), str(layer), origins)
    for item in overrides or []:
        _merge(merged, _parse_override(item), f"override '{item}'", origins)
    return build_config(merged, origins, str(conf_path.parent), env)


__all__ = [
    "Config",
    "ConfigError",
    "SourceConfig",
    "SyntheticConfig",
    "TableKey",
    "TrainConfig",
    "join_path",
    "load_config",
]
