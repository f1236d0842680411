"""Distributed training for real: Horovod ranks, TorchDistributor, kill-and-resume, the gate."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from recspark.config import Config, load_config
from recspark.evaluation.evaluate import gate, run_evaluate
from recspark.io.delta import read_table
from recspark.models.base import ScoringModel
from recspark.pipeline import run_stages
from recspark.ranking.factors import IdFactors
from recspark.scoring.score import run_score
from recspark.tracking import champion_version, set_champion, setup_mlflow
from recspark.training.data import make_converter, training_rows
from recspark.training.loop import train_worker
from recspark.training.settings import checkpoint_path, train_params
from recspark.training.train import run_train

from .conftest import CONF_DIR, RUN_DATE

PROJECT = CONF_DIR.parent
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config(featurized_copy: Callable[..., Config]) -> Config:
    """The shared run's featurized tables in a root of this module's own (own registry)."""
    return featurized_copy()


def _with(config: Config, *overrides: str) -> Config:
    """The module's root with `overrides`; one candidate (two-tower) unless they name others."""
    one = "train.candidates=[two_tower]"
    return load_config(CONF_DIR, "test", [f"paths.root={config.paths.root}", one, *overrides])


def test_horovod_two_ranks_reduce_loss_and_agree(spark: SparkSession, config: Config) -> None:
    import horovod.spark

    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    rows, validation = training_rows(spark, config, RUN_DATE, "pairs", n_items)
    converter = make_converter(spark, config, rows, 2)
    try:
        params = train_params(config, "two_tower", n_users, n_items, len(converter), RUN_DATE, {})
        params = dataclasses.replace(params, checkpoint_path=None, patience=0, epochs=4)
        results = horovod.spark.run(
            train_worker,
            args=("horovod", converter, validation, params, None, True),
            num_proc=2,
            nics={"lo"},
            use_gloo=True,
            verbose=0,
        )
    finally:
        converter.delete()
    assert sorted(r.rank for r in results) == [0, 1]
    first, second = results
    losses = [row.loss for row in first.history]
    assert losses[-1] < losses[0]
    # losses are averaged over the ranks; validation runs on equal parameters
    assert [(r.loss, r.val_ndcg) for r in first.history] == [
        (r.loss, r.val_ndcg) for r in second.history
    ]
    for name, tensor in first.state_dict.items():
        assert torch.equal(tensor, second.state_dict[name]), name


def test_torch_distributor_trains_the_same_model(spark: SparkSession, config: Config) -> None:
    cfg = _with(config, "train.launcher=torch_distributor", "train.epochs=4", "train.patience=0")
    result = run_train(spark, cfg, RUN_DATE)
    assert (result.launcher, result.ranks, result.model_name) == (
        "torch_distributor",
        2,
        "two_tower",
    )
    history = result.history
    assert len(history) == 4
    assert history[-1].loss < history[0].loss
    assert history[-1].val_ndcg > history[0].val_ndcg


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 the run and every process it started, like a lost machine.

    Horovod starts each rank under a middleman in its own session (``os.setsid``), so killing the
    process group misses the ranks: they would live on for a few seconds and could write one more
    checkpoint after the test has read the epoch it killed at.
    """
    alive = [psutil.Process(proc.pid)]
    while alive:
        tree = [*alive]
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                tree += p.children(recursive=True)
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        _, alive = psutil.wait_procs(tree, timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_training_resumes_from_its_checkpoint(spark: SparkSession, config: Config) -> None:
    overrides = ["train.candidates=[two_tower]", "train.epochs=15", "train.patience=0"]
    cfg = _with(config, *overrides)
    ckpt = checkpoint_path(cfg, RUN_DATE, "two_tower")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    command = [
        sys.executable, "-m", "recspark", "run", "--stage", "train", "--conf", str(CONF_DIR),
        "--env", "test", "--run-date", RUN_DATE.isoformat(),
        "--set", f"paths.root={config.paths.root}",
        *[arg for o in overrides for arg in ("--set", o)],
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=PROJECT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while _checkpoint_epoch(ckpt) < 3:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.5)
    finally:
        _kill_tree(proc)
    killed_at = _checkpoint_epoch(ckpt)
    assert 3 <= killed_at < 15
    result = run_train(spark, cfg, RUN_DATE)
    assert result.resumed_from_epoch == killed_at
    epochs = [row.epoch for row in result.history]
    assert epochs == list(range(1, 16))  # the killed run's epochs, then the resumed ones
    assert not ckpt.exists()  # a finished run clears its checkpoint


def _register(config: Config, factors: IdFactors, tag_date: str) -> str:
    import mlflow.pytorch

    mlflow = setup_mlflow(config)
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            ScoringModel("two_tower", None, factors),
            name="model",
            registered_model_name=config.mlflow.registered_model,
            serialization_format="pickle",
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(config.mlflow.registered_model, version, "run_date", tag_date)
    client.set_model_version_tag(config.mlflow.registered_model, version, "model_name", "two_tower")
    return version


def test_gate_refuses_worse_and_nan_models_and_scoring_reads_the_alias(
    spark: SparkSession, config: Config
) -> None:
    # The gate needs popularity only, and any model that beats it: EASE, closed form.
    config = _with(config, "train.candidates=[ease]", "evaluate.baselines=[popularity]")
    good = run_stages(spark, config, RUN_DATE, ["train", "evaluate"])
    assert good["evaluate"].gate_passed, good["evaluate"].gate_reason
    champion = str(champion_version(config).version)
    assert champion == good["train"].model_version
    n_users = read_table(spark, config.table_path("user_ids")).count()
    n_items = read_table(spark, config.table_path("item_ids")).count()
    rng = np.random.default_rng(0)
    random_model = IdFactors(
        rng.normal(size=(n_users, 8)).astype(np.float32),
        rng.normal(size=(n_items, 8)).astype(np.float32),
    )
    worse = _register(config, random_model, RUN_DATE.isoformat())
    result = run_evaluate(spark, config, RUN_DATE)
    assert result.model_version == worse
    assert not result.gate_passed
    assert str(champion_version(config).version) == champion
    nan_items = random_model.items.copy()
    nan_items[3, 2] = np.nan
    broken = _register(config, IdFactors(random_model.users, nan_items), RUN_DATE.isoformat())
    result = run_evaluate(spark, config, RUN_DATE)
    assert (result.model_version, result.gate_passed) == (broken, False)
    assert "NaN" in result.gate_reason
    assert str(champion_version(config).version) == champion
    # scoring reads whatever the alias points at
    set_champion(config, worse)
    assert run_score(spark, config, RUN_DATE).model_version == worse
    recs = read_table(spark, config.table_path("recommendations"), RUN_DATE)
    assert {r[0] for r in recs.select("model_version").distinct().collect()} == {worse}
    set_champion(config, champion)


def test_gate_rules() -> None:
    pop = {"ndcg": 0.10}
    assert gate({"ndcg": 0.2}, pop, None, True, 0.02)[0]
    assert not gate({"ndcg": 0.09}, pop, None, True, 0.02)[0]
    assert gate({"ndcg": 0.198}, pop, {"ndcg": 0.2}, True, 0.02)[0]  # within tolerance
    assert not gate({"ndcg": 0.19}, pop, {"ndcg": 0.2}, True, 0.02)[0]
    assert not gate({"ndcg": 0.5}, pop, None, False, 0.02)[0]
    assert not gate({"ndcg": float("nan")}, pop, None, True, 0.02)[0]


@pytest.mark.parametrize("model", ["sasrec", "ease"])
def test_other_models_train_register_and_beat_popularity(
    spark: SparkSession, config: Config, model: str
) -> None:
    cfg = _with(
        config,
        f"train.candidates=[{model}]",
        "train.epochs=12",
        "train.sasrec.epochs=12",
        "evaluate.baselines=[popularity]",
    )
    results = run_stages(spark, cfg, RUN_DATE, ["train", "evaluate"])
    assert results["train"].model_name == model
    metrics = results["evaluate"].metrics
    assert metrics[model]["ndcg"] > metrics["popularity"]["ndcg"]


def test_warm_start_begins_where_the_champion_left_off(
    spark: SparkSession, config: Config, capfd: pytest.CaptureFixture[str]
) -> None:
    # The champion's own first epoch is a cold start's first epoch (no learning-rate schedule
    # depends on the number of epochs): the reference the warm start must beat.
    champion = run_train(spark, _with(config, "train.epochs=4"), RUN_DATE)
    set_champion(config, champion.model_version)
    capfd.readouterr()
    warm = run_train(spark, _with(config, "train.epochs=1", "train.warm_start=true"), RUN_DATE)
    assert "warm start from champion version" in capfd.readouterr().err
    assert warm.history[0].val_ndcg > champion.history[0].val_ndcg


def test_tracking_server_uri_from_config(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    """A real `mlflow server` on loopback: train, evaluate and score through its HTTP API."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "artifacts"),
        ],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # without its job runner (two huey consumer processes, for MLflow's server-side jobs,
        # which recspark does not use)
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "mlflow server not up"
                time.sleep(0.5)
        cfg = _with(
            config,
            f"mlflow.tracking_uri=http://127.0.0.1:{port}",
            "train.candidates=[ease]",  # closed form: the test is about the server, not training
            "evaluate.baselines=[popularity]",
        )
        results = run_stages(spark, cfg, RUN_DATE, ["train", "evaluate", "score"])
        assert results["score"].model_version == results["train"].model_version
        stored = list((tmp_path / "artifacts").rglob("MLmodel"))
        assert stored, "the model's artifacts went to the server's artifact store"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_models_logged_by_release_0_1_still_score(config: Config) -> None:
    """0.1 logged a bare TwoTower (no history encoder attributes); scoring must still load it."""
    import mlflow.pytorch

    from recspark.models.two_tower import TwoTower
    from recspark.scoring.udf import MlflowModelFactors

    old = TwoTower(5, 7, 4, use_history=False)
    for attribute in ("use_history", "history_dropout"):  # what 0.1's pickles lack
        delattr(old, attribute)
    mlflow = setup_mlflow(config)
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            old, name="model", serialization_format="pickle", pip_requirements=[]
        )
    factors = MlflowModelFactors(config.mlflow_tracking_uri, info.model_uri).load()
    assert factors.items.shape == (7, 5)
    assert factors.user_vectors(np.arange(5), [None] * 5).shape == (5, 5)


def test_a_candidate_retrained_every_n_runs_is_kept_and_re_evaluated_between(
    spark: SparkSession, config: Config, capfd: pytest.CaptureFixture[str]
) -> None:
    every = ("train.retrain_every={two_tower: 3}", "train.epochs=1")

    def child(result: Any) -> Any:
        return MlflowClient().get_run(result.mlflow_run_id)

    first = run_train(spark, _with(config, *every), RUN_DATE)
    client = MlflowClient()  # on the store run_train set up
    trained = child(first)
    assert trained.data.tags["reuse.age"] == "0"
    assert trained.data.tags["reuse.trained_run"] == trained.info.run_id
    assert [a.path for a in client.list_artifacts(trained.info.run_id, "candidate")] == [
        "candidate/model.pt"
    ]
    capfd.readouterr()
    second = run_train(spark, _with(config, *every), RUN_DATE)
    assert "two_tower: kept fit of" in capfd.readouterr().err
    kept = child(second)
    assert (kept.data.tags["reuse.trained_run"], kept.data.tags["reuse.age"]) == (
        trained.info.run_id,
        "1",
    )
    assert second.launcher == "kept" and second.history == ()
    assert "two_tower" in second.kept
    # the same fit on the same validation users: the same validation NDCG, re-measured
    assert second.best_val_ndcg == pytest.approx(first.best_val_ndcg, abs=1e-9)
    assert "train_loss" not in kept.data.metrics
    # the kept fit is what the new version serves
    served = mlflow_model(config, second.model_version)
    stored = mlflow_model(config, first.model_version)
    assert np.allclose(served.item_factors.numpy(), stored.item_factors.numpy())
    # changed settings: trained again although the kept fit has runs left
    third = run_train(spark, _with(config, *every, "train.embedding_dim=16"), RUN_DATE)
    retrained = child(third)
    assert retrained.data.tags["reuse.age"] == "0"
    assert retrained.data.tags["reuse.trained_run"] == retrained.info.run_id
    assert third.launcher != "kept" and len(third.history) == 1


def mlflow_model(config: Config, version: str) -> ScoringModel:
    from recspark.models.served import load_scoring_model

    setup_mlflow(config)
    model: ScoringModel = load_scoring_model(f"models:/{config.mlflow.registered_model}/{version}")
    return model


def test_evaluate_scores_the_train_stage_fits_of_its_closed_form_baselines(
    spark: SparkSession, config: Config, capfd: pytest.CaptureFixture[str]
) -> None:
    from recspark.training import baseline_fits

    both = ("train.candidates=[ease, als]", "evaluate.baselines=[popularity, als, ease]")
    cfg = _with(config, *both)
    capfd.readouterr()
    results = run_stages(spark, cfg, RUN_DATE, ["train", "evaluate"])
    served = results["train"].model_name
    other = "als" if served == "ease" else "ease"
    handed = baseline_fits.handed_over(results["train"].mlflow_run_id, {"als", "ease"})
    # The served candidate was refit on every train pair: that fit is what was registered.
    assert {name: kind for name, (_, kind) in handed.items()} == {
        served: "refit",
        other: "validated",
    }
    registered = mlflow_model(cfg, results["train"].model_version).factor_set()
    assert np.array_equal(handed[served][0].items, registered.items)
    # The other is scored as the train stage fit it (without the validation items), not refit.
    assert f"[evaluate] baseline {other}: the train stage's validated fit" in capfd.readouterr().err
    reused = results["evaluate"].metrics[other]["ndcg"]
    fresh = run_evaluate(
        spark, _with(config, *both, "evaluate.reuse_candidate_fits=false"), RUN_DATE
    )
    assert "the train stage's" not in capfd.readouterr().err
    assert fresh.metrics[other]["ndcg"] != reused
