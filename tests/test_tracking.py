"""The registry is asked where the configuration says, in any process: a stage that asks for the
champion before anything has set MLflow up (train.warm_start in a fresh `jobs/train.py`) must not
read MLflow's default store (`./mlruns` of the working directory). No Spark."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from recspark.config import load_config

from .conftest import CONF_DIR


def test_champion_is_read_from_the_configured_store_in_a_fresh_process(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    config = load_config(CONF_DIR, "test", [f"paths.root={tmp_path / 'root'}"])
    uri = config.mlflow_tracking_uri
    Path(config.path(config.mlflow.tracking_uri)).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = config.mlflow.registered_model
    client.create_registered_model(name)
    for _ in range(2):
        version = client.create_model_version(name, source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias(name, config.mlflow.champion_alias, version.version)
    elsewhere = tmp_path / "cwd"  # where a default ./mlruns store would be made
    elsewhere.mkdir()
    script = textwrap.dedent(f"""
        from recspark.config import load_config
        from recspark.tracking import champion_version
        config = load_config({str(CONF_DIR)!r}, "test", ["paths.root={tmp_path / "root"}"])
        print("champion", champion_version(config).version)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"champion {version.version}" in done.stdout
    assert not (elsewhere / "mlruns").exists()
