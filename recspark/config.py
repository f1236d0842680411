"""Typed, strict configuration: `conf/base.yaml` + an environment overlay + command-line overrides.

Unknown keys and values of the wrong type are errors that name the key and the file (or the
command-line override) they came from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def join_path(base: str, *parts: str) -> str:
    """`base` / `parts` for local paths and URIs alike (`s3a://bucket/lake` keeps its `//`)."""
    if "://" in base:
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def _is_absolute(location: str) -> bool:
    """A URI or an absolute path: used as it is, not resolved against a folder."""
    return "://" in location or Path(location).is_absolute()


@dataclass(frozen=True)
class SparkConfig:
    app_name: str = "recspark"
    master: str | None = "local[2]"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PathsConfig:
    root: str = "."
    lakehouse: str = "lakehouse"
    raw: str = "data/raw"
    work: str = "work"


@dataclass(frozen=True)
class TablesConfig:
    interactions: str = "interactions"
    interactions_quarantine: str = "interactions_quarantine"
    user_ids: str = "user_ids"
    item_ids: str = "item_ids"
    train_interactions: str = "train_interactions"
    holdout: str = "holdout"
    training_set: str = "training_set"
    model_metrics: str = "model_metrics"
    recommendations: str = "recommendations"
    recommendations_staging: str = "recommendations_staging"
    recommendations_latest: str = "recommendations_latest"
    pipeline_runs: str = "pipeline_runs"
    user_features: str = "user_features"
    item_features: str = "item_features"
    user_sequences: str = "user_sequences"


@dataclass(frozen=True)
class SourceConfig:
    preset: str | None = None
    format: str = "csv"
    path: str = "events"
    header: bool = False
    delimiter: str = ","
    columns: list[str] = field(
        default_factory=lambda: ["user_id", "item_id", "event_type", "value", "event_ts"]
    )
    mapping: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    timestamp_format: str = "yyyy-MM-dd HH:mm:ss"
    item_catalog: str | None = "items"


@dataclass(frozen=True)
class IngestConfig:
    event_weights: dict[str, float] = field(
        default_factory=lambda: {
            "view": 1.0,
            "click": 2.0,
            "add_to_cart": 3.0,
            "purchase": 5.0,
            "rating": 3.0,
            "play": 1.0,
        }
    )
    rating_min: float = 0.5
    rating_max: float = 5.0
    rating_threshold: float | None = None
    count_types: list[str] = field(default_factory=lambda: ["play"])
    future_tolerance_s: int | None = 3600
    min_timestamp: str | None = "1995-01-01 00:00:00"
    near_duplicate_window_s: float = 0.0
    max_events_per_user_day: int | None = 5000


@dataclass(frozen=True)
class StreamConfig:
    landing: str = "data/landing"
    checkpoint: str = "work/checkpoints/ingest_stream"
    max_files_per_trigger: int | None = None


@dataclass(frozen=True)
class FeaturesConfig:
    min_user_interactions: int = 3
    min_item_interactions: int = 2
    split: str = "leave_last_k"
    external_test: str | None = None
    holdout_per_user: int = 1
    holdout_days: int = 7
    test_ratio: float = 0.25
    negatives: str = "uniform"
    negatives_per_positive: int = 4
    popularity_alpha: float = 0.75
    windows_days: list[int] = field(default_factory=lambda: [7, 30])
    sequence_length: int = 50
    seed: int = 42


@dataclass(frozen=True)
class SasrecConfig:
    batch_size: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2


@dataclass(frozen=True)
class EaseConfig:
    l2: float = 200.0
    max_items: int = 20000


@dataclass(frozen=True)
class TrainConfig:
    model: str = "two_tower"
    launcher: str = "horovod"
    num_proc: int = 2
    embedding_dim: int = 64
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 0.0025
    weight_decay: float = 0.0
    loss: str = "softmax"
    negatives: int = 0
    use_history: bool = True
    history_dropout: float = 0.5
    patience: int = 3
    validation_users: int = 1000
    reader_pool: str = "thread"
    checkpoint_dir: str = "work/checkpoints/train"
    warm_start: bool = False
    seed: int = 42
    nics: list[str] = field(default_factory=list)
    start_timeout_s: int = 120
    sasrec: SasrecConfig = field(default_factory=SasrecConfig)
    ease: EaseConfig = field(default_factory=EaseConfig)


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = "mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "recspark"
    registered_model: str = "recspark_two_tower"
    champion_alias: str = "champion"


@dataclass(frozen=True)
class AlsConfig:
    rank: int = 128
    reg_param: float = 0.2
    alpha: float = 1.0
    max_iter: int = 10


@dataclass(frozen=True)
class EvaluateConfig:
    k: int = 10
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    baselines: list[str] = field(default_factory=lambda: ["popularity", "als"])
    gate_tolerance: float = 0.02
    active_min_interactions: int = 5
    report: bool = True
    als: AlsConfig = field(default_factory=AlsConfig)


@dataclass(frozen=True)
class ScoreConfig:
    k: int = 10
    users_per_batch: int = 256
    precision: str = "float32"
    explain_history: int = 200
    min_coverage: float = 0.01
    exact_max_items: int = 500_000
    max_candidates: int = 500
    candidate_history: int = 50
    neighbours_per_item: int = 100
    popular_candidates: int = 100


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 2000
    n_items: int = 500
    n_interactions: int = 50000
    n_clusters: int = 8
    cluster_affinity: float = 0.8
    popularity_exponent: float = 2.5
    n_days: int = 60
    start_date: str = "2025-11-01"
    defect_rate: float = 0.02
    late_rate: float = 0.03
    format: str = "csv"
    partitions: int = 4
    seed: int = 7


@dataclass(frozen=True)
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # Where the configuration was loaded from; set by load_config, not by files.
    project_root: str = "."
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

    def table_path(self, table_key: str) -> str:
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


_ORIGIN_SEP = "."
_MAPPING_SETTINGS = ("spark.conf", "source.mapping", "source.constants", "ingest.event_weights")
SOURCE_FORMATS = ("csv", "tsv", "text", "json", "parquet", "delta")


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
    into: dict[str, Any], data: dict[str, Any], origin: str, origins: dict[str, str], prefix: str
) -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key, {}), dict):
            origins.setdefault(dotted, origin)
            _merge(into.setdefault(key, {}), value, origin, origins, dotted + _ORIGIN_SEP)
        else:
            into[key] = value
            origins[dotted] = origin


def _check_type(value: Any, hint: Any, key: str, origin: str) -> Any:
    """Return value converted to the declared type, or raise ConfigError naming key and origin."""
    where = f"{key} (from {origin})"
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _check_type(value, non_none[0], key, origin)
    origin_type = typing.get_origin(hint)
    if origin_type is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_check_type(v, item_hint, f"{key}[{i}]", origin) for i, v in enumerate(value)]
    if origin_type is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, value_hint = typing.get_args(hint)
        return {str(k): _check_type(v, value_hint, f"{key}.{k}", origin) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {hint}")  # pragma: no cover


def _build(cls: type, data: dict[str, Any], origins: dict[str, str], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name not in ("project_root", "env")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            origin = origins.get(dotted) or _first_origin(origins, dotted)
            raise ConfigError(
                f"unknown key '{dotted}' in {origin}; known keys here: {', '.join(sorted(known))}"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{dotted} (from {origins.get(dotted, '?')}): expected a mapping of settings"
                )
            kwargs[key] = _build(hint, value, origins, dotted + _ORIGIN_SEP)  # type: ignore[arg-type]
        else:
            kwargs[key] = _check_type(value, hint, dotted, origins.get(dotted, "?"))
    return cls(**kwargs)


def _first_origin(origins: dict[str, str], dotted: str) -> str:
    for key, origin in origins.items():
        if key.startswith(dotted + _ORIGIN_SEP):
            return origin
    return "?"


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}': empty key")
    value = yaml.safe_load(raw) if raw != "" else ""
    # Keys of mapping settings may contain dots themselves (spark.conf.spark.driver.memory).
    for prefix in _MAPPING_SETTINGS:
        if key.startswith(prefix + _ORIGIN_SEP):
            return [*prefix.split(_ORIGIN_SEP), key[len(prefix) + 1 :]], value
    return key.split(_ORIGIN_SEP), value


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
        ConfigError: a file is missing or invalid, a key is unknown, or a value has the wrong type.
    """
    conf_path = Path(conf_dir).resolve()
    base = conf_path / "base.yaml"
    if not base.is_file():
        raise ConfigError(f"{base}: no such file (--conf must name the folder with base.yaml)")
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    _merge(merged, _read_yaml(base), str(base), origins, "")
    if env != "base":
        overlay = conf_path / f"{env}.yaml"
        if not overlay.is_file():
            available = sorted(p.stem for p in conf_path.glob("*.yaml") if p.stem != "base")
            raise ConfigError(f"{overlay}: no such environment overlay (have: {available})")
        _merge(merged, _read_yaml(overlay), str(overlay), origins, "")
    for item in overrides or []:
        keys, value = _parse_override(item)
        nested: dict[str, Any] = value
        for key in reversed(keys):
            nested = {key: nested}
        _merge(merged, nested, f"override '{item}'", origins, "")
    config: Config = _build(Config, merged, origins, "")
    config = dataclasses.replace(config, project_root=str(conf_path.parent), env=env)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if config.source.format not in SOURCE_FORMATS:
        raise ConfigError(
            f"source.format: expected one of {SOURCE_FORMATS}, got {config.source.format!r}"
        )
    raw_columns = {"user_id", "item_id", "event_type", "value", "event_ts"}
    for key in (*config.source.mapping, *config.source.constants):
        if key not in raw_columns:
            raise ConfigError(
                f"source.mapping/constants: {key!r} is not a recspark column {sorted(raw_columns)}"
            )
    splits = ("leave_last_k", "global_time", "random_by_user", "random_by_item", "external")
    if config.features.split not in splits:
        raise ConfigError(
            f"features.split: expected one of {splits}, got {config.features.split!r}"
        )
    if (config.features.split == "external") != (config.features.external_test is not None):
        raise ConfigError(
            "features.external_test: set it (a file of held-out user_id, item_id pairs) exactly "
            "when features.split is external"
        )
    if config.features.negatives not in ("uniform", "popularity"):
        raise ConfigError(
            f"features.negatives: expected uniform or popularity, got {config.features.negatives!r}"
        )
    if not 0.0 < config.features.test_ratio < 1.0:
        raise ConfigError("features.test_ratio: must be between 0 and 1")
    if config.synthetic.format not in ("csv", "parquet"):
        raise ConfigError(
            f"synthetic.format: expected csv or parquet, got {config.synthetic.format!r}"
        )
    choices: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("train.model", config.train.model, ("two_tower", "sasrec", "ease")),
        ("train.launcher", config.train.launcher, ("horovod", "torch_distributor")),
        ("train.loss", config.train.loss, ("softmax", "sampled_softmax", "bpr")),
        ("score.precision", config.score.precision, ("float32", "int8", "bfloat16")),
        ("train.reader_pool", config.train.reader_pool, ("thread", "dummy")),
    )
    for key, choice, allowed in choices:
        if choice not in allowed:
            raise ConfigError(f"{key}: expected one of {allowed}, got {choice!r}")
    for name in config.evaluate.baselines:
        if name not in ("popularity", "als", "ease"):
            raise ConfigError(
                f"evaluate.baselines: {name!r} is not one of ('popularity', 'als', 'ease')"
            )
    if not 0.0 <= config.score.min_coverage <= 1.0:
        raise ConfigError(
            f"score.min_coverage: a fraction of the catalog in [0, 1], "
            f"got {config.score.min_coverage}"
        )
    if config.score.max_candidates < config.score.k:
        raise ConfigError("score.max_candidates: must be at least score.k")
    if config.score.explain_history < 0:
        raise ConfigError("score.explain_history: must be 0 (no explanations) or more")
    if not config.evaluate.ks or min(config.evaluate.ks) < 1:
        raise ConfigError(f"evaluate.ks: a list of cut-offs >= 1, got {config.evaluate.ks}")
    if not 0.0 <= config.evaluate.gate_tolerance < 1.0:
        raise ConfigError("evaluate.gate_tolerance: must be in [0, 1)")
    if config.train.loss == "sampled_softmax" and config.train.negatives < 1:
        raise ConfigError("train.negatives: sampled_softmax needs at least 1 sampled negative")
    if not config.ingest.event_weights:
        raise ConfigError("ingest.event_weights: at least one event type is needed")
    for key, value in (
        ("train.num_proc", config.train.num_proc),
        ("train.epochs", config.train.epochs),
        ("train.batch_size", config.train.batch_size),
        ("train.embedding_dim", config.train.embedding_dim),
        ("evaluate.k", config.evaluate.k),
        ("evaluate.active_min_interactions", config.evaluate.active_min_interactions),
        ("score.k", config.score.k),
        ("score.max_candidates", config.score.max_candidates),
        ("score.candidate_history", config.score.candidate_history),
        ("score.neighbours_per_item", config.score.neighbours_per_item),
        ("features.holdout_per_user", config.features.holdout_per_user),
        ("synthetic.n_users", config.synthetic.n_users),
        ("synthetic.n_items", config.synthetic.n_items),
        ("synthetic.n_clusters", config.synthetic.n_clusters),
    ):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if not 0.0 <= config.synthetic.defect_rate < 0.5:
        raise ConfigError("synthetic.defect_rate: must be in [0, 0.5)")
