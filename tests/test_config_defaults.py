"""One home for every default: the configuration models (`Config()`) against `conf/base.yaml`, key
by key, and a description for every key (the documentation's configuration reference is generated
from the models' field docstrings, docs/gen_ref_pages.py). No Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from recspark.config import Config, build_config

from .conftest import CONF_DIR

_ABSENT = "(absent)"


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value; mappings (sections and mapping settings alike) followed to their
    leaves, so `spark.conf.spark.sql.session.timeZone` is a key of its own."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def default_drift(base_yaml: Path) -> list[str]:
    """Every key whose value in `base_yaml` (typed by the models, as the loader reads it) differs
    from the models' own default, with both values."""
    raw = yaml.safe_load(base_yaml.read_text()) or {}
    from_file = _leaves(build_config(raw, {}, str(base_yaml.parent), "base").model_dump())
    defaults = _leaves(Config().model_dump())
    return [
        f"{key}: Config() {defaults.get(key, _ABSENT)!r}, {base_yaml.name} "
        f"{from_file.get(key, _ABSENT)!r}"
        for key in sorted(defaults.keys() | from_file.keys())
        if defaults.get(key, _ABSENT) != from_file.get(key, _ABSENT)
    ]


def test_base_yaml_holds_the_models_defaults() -> None:
    drift = default_drift(CONF_DIR / "base.yaml")
    assert not drift, "conf/base.yaml and recspark/config.py disagree:\n" + "\n".join(drift)


def test_drift_names_every_key_that_differs(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        "ingest:\n  near_duplicate_window_s: 0\n"
        "train:\n  epochs: 3\n  batch_size: 256\n"  # batch_size is the default: not reported
        "source:\n  mapping: {user_id: userId}\n"
    )
    assert default_drift(base) == [
        "ingest.near_duplicate_window_s: Config() 2.0, base.yaml 0.0",
        "source.mapping: Config() {}, base.yaml '(absent)'",
        "source.mapping.user_id: Config() '(absent)', base.yaml 'userId'",
        "train.epochs: Config() 8, base.yaml 3",
    ]


def _undescribed(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if not (field.description or "").strip():
            missing.append(f"{prefix}{name}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += _undescribed(annotation, f"{prefix}{name}.")
    return missing


def test_every_config_key_has_a_description() -> None:
    missing = _undescribed(Config)
    assert not missing, (
        "give each of these a docstring under its field in recspark/config.py: "
        + ", ".join(missing)
    )
