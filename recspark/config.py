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
    """A config section: frozen, strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SparkConfig(Section):
    app_name: Text = "recspark"
    master: Text | None = "local[2]"
    # Every port and the UI of a Spark that Python starts bind here (recspark/session.py); None:
    # the environment decides (SPARK_LOCAL_IP, else every interface), as a cluster driver needs.
    bind_address: Text | None = "127.0.0.1"
    conf: dict[Text, Text] = {}


class PathsConfig(Section):
    root: Text = "."
    lakehouse: Text = "lakehouse"
    raw: Text = "data/raw"
    work: Text = "work"
    reports: Text = "reports"


class TablesConfig(Section):
    interactions: Identifier = "interactions"
    interactions_quarantine: Identifier = "interactions_quarantine"
    user_ids: Identifier = "user_ids"
    item_ids: Identifier = "item_ids"
    train_interactions: Identifier = "train_interactions"
    holdout: Identifier = "holdout"
    training_set: Identifier = "training_set"
    model_metrics: Identifier = "model_metrics"
    recommendations: Identifier = "recommendations"
    recommendations_staging: Identifier = "recommendations_staging"
    recommendations_latest: Identifier = "recommendations_latest"
    pipeline_runs: Identifier = "pipeline_runs"
    user_features: Identifier = "user_features"
    item_features: Identifier = "item_features"
    user_sequences: Identifier = "user_sequences"
    run_health: Identifier = "run_health"
    forget_requests: Identifier = "forget_requests"
    fresh_recommendations: Identifier = "fresh_recommendations"
    refresh_batches: Identifier = "refresh_batches"


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
    format: SourceFormat = "csv"
    path: Text = "events"
    header: bool = False
    delimiter: Text = ","
    multiline: bool = False
    columns: list[Text] = ["user_id", "item_id", "event_type", "value", "event_ts"]
    mapping: dict[RawColumn, Text] = {}
    constants: dict[RawColumn, Text] = {}
    timestamp_format: Text = "yyyy-MM-dd HH:mm:ss"
    item_catalog: Text | None = "items"


class IngestConfig(Section):
    event_weights: Annotated[dict[Text, float], Field(min_length=1)] = {
        "view": 1.0,
        "click": 2.0,
        "add_to_cart": 3.0,
        "purchase": 5.0,
        "rating": 3.0,
        "play": 1.0,
    }
    rating_min: float = 0.5
    rating_max: float = 5.0
    rating_threshold: float | None = None
    count_types: list[Text] = ["play"]
    future_tolerance_s: int | None = 3600
    min_timestamp: Text | None = "1995-01-01 00:00:00"
    near_duplicate_window_s: float = 0.0
    max_events_per_user_day: int | None = 5000
    max_value: Annotated[float, Field(ge=0.0)] | None = 1_000_000.0
    max_id_length: Count | None = 256
    pseudonymise_users: bool = False
    pseudonym_key_env: Text = "RECSPARK_PSEUDONYM_KEY"
    pseudonym_key_file: Text | None = None


class KafkaConfig(Section):
    """stream.kafka: the topic the streaming ingest reads when stream.source is kafka."""

    bootstrap_servers: Text = "127.0.0.1:9092"
    topic: Text | None = None
    # earliest | latest | Spark's JSON of offsets per partition; for a query's first run only
    # (later runs go on from the checkpoint).
    starting_offsets: Text = "earliest"
    max_offsets_per_trigger: Count | None = None
    checkpoint: Text = "work/checkpoints/ingest_kafka"
    # How long the check before a run waits for the brokers to describe the topic.
    start_timeout_s: Count = 30
    # Kafka consumer settings, passed to Spark's connector as `kafka.<key>` (security.protocol,
    # sasl.jaas.config, ...): never printed (recspark/credentials.py).
    options: dict[Text, Text] = {}

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
    landing: Text = "data/landing"
    checkpoint: Text = "work/checkpoints/ingest_stream"
    max_files_per_trigger: int | None = None
    kafka: KafkaConfig = KafkaConfig()

    @model_validator(mode="after")
    def _kafka_needs_a_topic(self) -> Self:
        if self.source == "kafka" and not self.kafka.topic:
            raise RuleError("kafka.topic", "stream.source kafka needs the topic to read")
        return self


class FeaturesConfig(Section):
    min_user_interactions: int = 3
    min_item_interactions: int = 2
    split: SplitName = "leave_last_k"
    external_test: Text | None = None
    holdout_per_user: Count = 1
    holdout_days: int = 7
    test_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    negatives: NegativeSampling = "uniform"
    negatives_per_positive: int = 4
    popularity_alpha: float = 0.75
    windows_days: list[int] = [7, 30]
    sequence_length: int = 50
    seed: int = 42

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
    layers: int = 2
    heads: int = 1
    dropout: float = 0.5
    # SASRec's own schedule; None: the train.* value.
    epochs: Count | None = 100
    # Sequences one fit may see (epochs x sequences, capped; recspark/training/schedule.py).
    max_samples: Count | None = 600_000
    learning_rate: float | None = 0.001
    weight_decay: float | None = None
    patience: int | None = 5


class EaseConfig(Section):
    l2: float = 200.0
    max_items: int = 20000


class BlendConfig(Section):
    grid_steps: Count = 10
    max_grid_points: Count = 100


DEFAULT_CANDIDATES: list[CandidateName] = ["two_tower", "sasrec", "ease", "als", "blend"]


class TrainConfig(Section):
    candidates: Annotated[list[CandidateName], Field(min_length=1)] = DEFAULT_CANDIDATES
    launcher: Launcher = "horovod"
    num_proc: Count = 2
    embedding_dim: Count = 64
    epochs: Count = 8
    # Training rows one fit may see (epochs x rows, capped; recspark/training/schedule.py).
    max_samples: Count | None = 4_000_000
    batch_size: Count = 256
    learning_rate: float = 0.0025
    weight_decay: float = 0.0
    loss: LossSetting = "auto"
    sampled_softmax_above: Count = 50000
    negatives: Annotated[int, Field(ge=0)] = 1024
    in_batch_negatives: Annotated[int, Field(ge=0)] = 1024
    sparse_gradients: bool = True
    bf16: bool = False
    use_history: bool = True
    history_dropout: float = 0.5
    patience: int = 3
    validation_users: int = 10000
    validation_items_per_user: Count = 1
    reader_pool: ReaderPool = "thread"
    checkpoint_dir: Text = "work/checkpoints/train"
    warm_start: bool = False
    seed: int = 42
    nics: list[Text] = []
    start_timeout_s: int = 120
    sasrec: SasrecConfig = SasrecConfig()
    ease: EaseConfig = EaseConfig()
    blend: BlendConfig = BlendConfig()
    refit: bool = True
    # Candidates retrained only every N runs (a stored fit re-evaluated in between); others: 1.
    retrain_every: dict[CandidateName, Count] = {}

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
    artifact_root: Text = "mlruns/artifacts"
    experiment: Text = "recspark"
    registered_model: Text = "recspark"
    champion_alias: Text = "champion"


class AlsConfig(Section):
    rank: int = 128
    reg_param: float = 0.2
    alpha: float = 1.0
    max_iter: int = 10


class EvaluateConfig(Section):
    k: Count = 10
    ks: Annotated[list[Count], Field(min_length=1)] = [5, 10, 20]
    baselines: list[Baseline] = ["popularity", "als"]
    gate_tolerance: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.02
    active_min_interactions: Count = 5
    report: bool = True
    # A baseline that is also a train candidate (als, ease) is scored from the train stage's fit
    # (recspark/training/baseline_fits.py) instead of being fit again.
    reuse_candidate_fits: bool = True
    als: AlsConfig = AlsConfig()


class ScoreConfig(Section):
    k: Count = 10
    users_per_batch: int = 256
    precision: Precision = "float32"
    explain_history: Annotated[int, Field(ge=0)] = 200
    min_coverage: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    min_coverage_items: Count | None = 100
    exact_max_items: int = 500_000
    max_candidates: Count = 500
    candidate_history: Count = 50
    neighbours_per_item: Count = 100
    popular_candidates: int = 100

    @model_validator(mode="after")
    def _shortlist_holds_k(self) -> Self:
        if self.max_candidates < self.k:
            raise RuleError("max_candidates", "must be at least score.k")
        return self


class SyntheticConfig(Section):
    n_users: Count = 2000
    n_items: Count = 500
    n_interactions: int = 50000
    n_clusters: Count = 8
    cluster_affinity: float = 0.8
    popularity_exponent: float = 2.5
    n_days: int = 60
    start_date: Text = "2025-11-01"
    defect_rate: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.02
    late_rate: float = 0.03
    format: SyntheticFormat = "csv"
    partitions: int = 4
    seed: int = 7
    hostile_ids: bool = False


class CatalogConfig(Section):
    enabled: bool = True
    database: Identifier = "recspark"
    metastore: MetastoreKind = "embedded"
    metastore_uri: Text | None = None
    metastore_db: Text = "metastore_db"
    warehouse: Text = "spark-warehouse"
    sql_host: Text = "127.0.0.1"
    sql_port: Count = 10000
    sql_auth: SqlAuth = "none"
    sql_user: Text | None = None
    sql_password_env: Text = "RECSPARK_SQL_PASSWORD"
    sql_password_file: Text | None = None

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
                "machine only with catalog.sql_auth password (README: Security)",
            )
        return self


class OnlineConfig(Section):
    store: OnlineStoreName | None = None
    redis_url: Text = "redis://127.0.0.1:6379/0"
    redis_password_env: Text = "RECSPARK_REDIS_PASSWORD"
    redis_password_file: Text | None = None
    key_prefix: Text = "recspark"
    batch_size: Count = 1000
    keep_versions: Count = 2
    expire_after_s: Count = 3600


Threshold = Annotated[float, Field(ge=0.0)] | None


class CheckThresholds(Section):
    """A monitoring check's bounds on its compared figure (recspark/health.py); null: none."""

    warn_below: Threshold = None
    fail_below: Threshold = None
    warn_above: Threshold = None
    fail_above: Threshold = None


class ChecksConfig(Section):
    rows_in: CheckThresholds = CheckThresholds(
        warn_below=0.7, fail_below=0.4, warn_above=2.0, fail_above=None
    )
    quarantine_rate: CheckThresholds = CheckThresholds(warn_above=3.0, fail_above=10.0)
    new_users: CheckThresholds = CheckThresholds(warn_above=3.0, fail_above=10.0)
    new_items: CheckThresholds = CheckThresholds(warn_above=3.0, fail_above=10.0)
    model_ndcg: CheckThresholds = CheckThresholds(warn_below=0.9, fail_below=0.7)
    churn: CheckThresholds = CheckThresholds(warn_above=0.8, fail_above=0.98)
    coverage: CheckThresholds = CheckThresholds(warn_below=0.7, fail_below=0.3)


class MonitoringConfig(Section):
    enabled: bool = True
    trailing_runs: Count = 7
    min_trailing_runs: Count = 3
    rate_floor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.001
    checks: ChecksConfig = ChecksConfig()


class PrivacyConfig(Section):
    vacuum_retention_hours: Annotated[float, Field(ge=0.0)] = 0.0


class RefreshConfig(Section):
    """The refresh stream (`recspark refresh`, recspark/online/refresh.py)."""

    checkpoint: Text = "work/checkpoints/refresh"
    trigger_interval_s: Annotated[float, Field(ge=0.0)] = 1.0
    k: Count | None = None
    batch_size: Count = 256


class Config(Section):
    spark: SparkConfig = SparkConfig()
    paths: PathsConfig = PathsConfig()
    tables: TablesConfig = TablesConfig()
    source: SourceConfig = SourceConfig()
    ingest: IngestConfig = IngestConfig()
    stream: StreamConfig = StreamConfig()
    features: FeaturesConfig = FeaturesConfig()
    train: TrainConfig = TrainConfig()
    mlflow: MlflowConfig = MlflowConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    score: ScoreConfig = ScoreConfig()
    catalog: CatalogConfig = CatalogConfig()
    online: OnlineConfig = OnlineConfig()
    refresh: RefreshConfig = RefreshConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    # Where the configuration was loaded from; set by load_config, never read from files.
    project_root: str = Field(".", exclude=True)
    env: str = "base"

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
