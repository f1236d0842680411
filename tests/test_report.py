"""The run report: one self-contained HTML page per run, rendered by a real headless Chromium,
showing the figures the tables hold."""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.evaluation.metrics import gini
from recspark.io.delta import read_table
from recspark.report.data import churn
from recspark.report.html import lorenz_points, number
from recspark.report.stage import report_path
from recspark.results import PipelineRun
from recspark.tracking import setup_mlflow

from .conftest import RUN_DATE

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def _rendered_text(page: Path, profile: Path) -> str:
    """The page's text as headless Chromium lays it out (its DOM after rendering)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-3000:]
    text = re.sub(r"<[^>]+>", " ", done.stdout)
    return " ".join(html.unescape(text).split())


@pytest.mark.integration
def test_the_run_report_shows_the_nights_figures_in_a_browser(
    spark: SparkSession, nightly_run: PipelineRun, base_config: Config, tmp_path: Path
) -> None:
    page = report_path(base_config, RUN_DATE)
    assert page.exists()
    source = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", source)  # nothing fetched
    text = _rendered_text(page, tmp_path / "chromium")
    runs = read_table(spark, base_config.table_path("pipeline_runs"))
    ingest = runs.filter("stage = 'ingest' AND status = 'succeeded'").orderBy("started_at")
    last = ingest.collect()[-1]
    assert f"rows in {last['rows_in']:,}" in text
    assert f"quarantined {last['rows_quarantined']:,}" in text
    for reason, count in last["quarantined_by_reason"].items():
        assert f"{reason} {count:,}" in text, reason
    metrics = read_table(spark, base_config.table_path("model_metrics")).filter(
        f"run_date = DATE'{RUN_DATE}' AND segment = 'all' AND metric = 'ndcg' AND k = 10"
    )
    for row in metrics.collect():
        assert number(row["value"]) in text, row["model"]
    recs = read_table(spark, base_config.table_path("recommendations")).filter(
        f"run_date = DATE'{RUN_DATE}'"
    )
    n_items = read_table(spark, base_config.table_path("item_ids")).count()
    counts = np.zeros(n_items)
    for i, row in enumerate(recs.groupBy("item_id").count().collect()):
        counts[i] = row["count"]
    assert f"Gini of exposure {number(gini(counts))}" in text
    for stage in ("ingest", "featurize", "train", "evaluate", "score"):
        assert f"{stage} succeeded" in text
    assert "no earlier run to compare with" in text  # the shared run is the only one
    health = read_table(spark, base_config.table_path("run_health")).orderBy("checked_at")
    latest = {(r["check"], r["subject"]): r["status"] for r in health.collect()}
    assert latest
    for (check, subject), status in latest.items():
        assert f"{check} {subject} {status}" in text, check
    # and it is in the night's MLflow run
    setup_mlflow(base_config)
    run_id = nightly_run["train"].mlflow_run_id  # type: ignore[union-attr]
    paths = [a.path for a in MlflowClient().list_artifacts(run_id, "report")]
    assert paths == ["report/run_report.html"]


def test_churn_compares_each_users_items_with_the_previous_run(spark: SparkSession) -> None:
    day1, day2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    rows = [
        ("a", "x", day1), ("a", "y", day1), ("a", "x", day2), ("a", "y", day2),  # same
        ("b", "x", day1), ("b", "y", day1), ("b", "x", day2), ("b", "z", day2),  # 1 of 3
        ("c", "x", day1),  # gone
        ("d", "z", day2),  # new
        ("e", "q", dt.date(2025, 12, 1)),  # an older run, not the previous one
    ]  # fmt: skip
    recs = spark.createDataFrame(rows, "user_id string, item_id string, run_date date")
    found = churn(recs, day2)
    assert found is not None
    assert (found.previous, found.users_both, found.users_new, found.users_gone) == (
        day1, 2, 1, 1,
    )  # fmt: skip
    assert found.unchanged == pytest.approx(0.5)
    assert found.overlap == pytest.approx((1 + 1 / 3) / 2)
    assert churn(recs, dt.date(2025, 12, 1)) is None


def test_the_lorenz_curve_runs_from_nothing_to_everything() -> None:
    points = lorenz_points(np.array([0.0, 1.0, 1.0, 2.0]), n_points=5)
    assert points == [(0.0, 0.0), (0.25, 0.0), (0.5, 0.25), (0.75, 0.5), (1.0, 1.0)]
    assert lorenz_points(np.zeros(3)) == []


def test_charts_carry_round_ticks_with_their_values_on_both_axes() -> None:
    from recspark.report.html import line_chart, nice_ticks

    assert nice_ticks(0.2536, 0.3278) == [0.26, 0.28, 0.3, 0.32]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3.0, 3.0) == [3.0]
    svg = line_chart("val", {"sasrec": [(1, 0.2536), (2, 0.3278)]}, "epoch", "ndcg")
    for value in ("0.26", "0.32", "1.2", "2"):
        assert f">{value}</text>" in svg, value
