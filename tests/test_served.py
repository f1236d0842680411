"""The registered model answers by user id: in-process (`mlflow.pyfunc.load_model`) and over HTTP
(`mlflow models serve` on loopback), as the score stage ranked that night."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.io.delta import read_table
from recspark.models.served import OUTPUT_COLUMNS
from recspark.results import PipelineRun
from recspark.tracking import setup_mlflow

from .servers import free_port, serving

pytestmark = pytest.mark.integration
UNKNOWN = "a user id nobody has"


def _published(spark: SparkSession, config: Config) -> pd.DataFrame:
    columns = ["user_id", "rank", "item_id", "reason"]
    latest = read_table(spark, config.table_path("recommendations_latest")).select(*columns)
    return latest.toPandas().sort_values(["user_id", "rank"]).reset_index(drop=True)


def _users(published: pd.DataFrame) -> list[str]:
    """Some personalised users and some fallback users of the published run."""
    by_reason = published.drop_duplicates("user_id").groupby("reason")["user_id"]
    return [u for _, users in by_reason for u in sorted(users)[:6]]


def test_the_model_answers_by_user_id_as_the_score_stage_ranked(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config
) -> None:
    setup_mlflow(base_config)
    name = base_config.mlflow.registered_model
    uri = f"models:/{name}@{base_config.mlflow.champion_alias}"
    info = mlflow.models.get_model_info(uri)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["user_id", "k"]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == list(OUTPUT_COLUMNS)
    model = mlflow.pyfunc.load_model(uri)
    published = _published(spark, base_config)
    users = _users(published)
    assert set(published["reason"]) <= {"personalized", "popular_fallback"}
    answer = model.predict(pd.DataFrame({"user_id": [*users, UNKNOWN], "k": 3}))
    assert list(answer.columns) == list(OUTPUT_COLUMNS)
    got = answer[answer["user_id"] != UNKNOWN][["user_id", "rank", "item_id", "reason"]]
    expected = published[published["user_id"].isin(users) & (published["rank"] <= 3)]
    pd.testing.assert_frame_equal(
        got.sort_values(["user_id", "rank"]).reset_index(drop=True),
        expected.reset_index(drop=True),
        check_dtype=False,
    )
    # A user id the model never saw gets the most popular items.
    unknown = answer[answer["user_id"] == UNKNOWN]
    assert list(unknown["rank"]) == [1, 2, 3]
    assert set(unknown["reason"]) == {"popular_fallback"}
    # k defaults to score.k; the input example logged with the model answers too.
    default = model.predict(pd.DataFrame({"user_id": users[:1]}))
    assert len(default) == base_config.score.k
    with pytest.raises(ValueError, match="'k' must be at least 1"):
        model.predict(pd.DataFrame({"user_id": users[:1], "k": [0]}))
    with pytest.raises(Exception, match="user_id"):  # the signature refuses it first
        model.predict(pd.DataFrame({"user": users[:1]}))


def test_mlflow_models_serve_answers_an_http_request_by_user_id(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    published = _published(spark, base_config)
    user = _users(published)[0]
    name, alias = base_config.mlflow.registered_model, base_config.mlflow.champion_alias
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    command = [
        mlflow_bin, "models", "serve", "-m", f"models:/{name}@{alias}",
        "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1",
    ]  # fmt: skip
    # The server runs uvicorn from this environment's bin (as `make test`'s PATH has it).
    path = f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": base_config.mlflow_tracking_uri, "PATH": path}
    with serving(command, port, tmp_path / "serve.log", timeout_s=180, env=env):
        body = json.dumps({"dataframe_records": [{"user_id": user, "k": 2}]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
    rows = answer["predictions"]
    expected = published[(published["user_id"] == user) & (published["rank"] <= 2)]
    assert [(r["user_id"], r["rank"], r["item_id"]) for r in rows] == [
        (u, int(k), i) for u, k, i in expected[["user_id", "rank", "item_id"]].itertuples(False)
    ]
