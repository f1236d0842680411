"""The analyst notebook runs top to bottom on real pipeline output and reports what the tables say.

Two nightly runs are built in a temp lakehouse (the second on newly arrived events, so run over
run has something to compare); the notebook is then executed in its own kernel (its own Spark,
reading the same path-based Delta tables), and what it prints is checked against values computed
here from the tables.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, load_config
from recspark.io.delta import read_table
from recspark.pipeline import run_stages
from recspark.stages import DEMO, NIGHTLY

from .conftest import CONF_DIR, full_jit

pytestmark = pytest.mark.integration
NOTEBOOK = CONF_DIR.parent / "notebooks" / "analyst.ipynb"
FIRST, SECOND = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
# Small and fast: the closed-form model, the cheap baseline, a small synthetic set.
SETTINGS = [
    "train.candidates=[ease]",
    "evaluate.baselines=[popularity]",
    "synthetic.n_users=200",
    "synthetic.n_items=80",
    "synthetic.n_interactions=4000",
    "synthetic.n_days=14",
]
KERNEL = "recspark-notebook-test"
SECTIONS = range(1, 7)  # "## 1." .. "## 6." in the notebook


def _config(root: Path, *overrides: str) -> Config:
    return load_config(CONF_DIR, "test", [f"paths.root={root}", *SETTINGS, *overrides])


@pytest.fixture(scope="module")
def config(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("notebook")
    config = _config(root)
    run_stages(spark, config, FIRST, DEMO)
    # The next night brings new events (another seed of the generator): the models and the
    # recommendations change, so the run-over-run section has something to measure.
    run_stages(spark, _config(root, "synthetic.seed=8"), SECOND, DEMO)
    return config


def _parameters(root: Path | str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(
        f"ROOT = {str(root)!r}\nCONF_DIR = {str(CONF_DIR)!r}\nENV = 'test'\n",
        metadata={"tags": ["injected-parameters"]},
    )


@pytest.fixture(scope="module")
def kernel_env(
    tmp_path_factory: pytest.TempPathFactory, short_lived_jvms: str | None
) -> Iterator[None]:
    """A kernel spec of this interpreter (the venv's), found first; Spark on the loopback.

    The kernel's driver runs the notebook twice, as long as a small night: both JIT tiers (with
    C1 only, conftest's SHORT_LIVED_JVM, the module's set-up took 162 s in one CI run against
    140 s the run before)."""
    spec_dir = tmp_path_factory.mktemp("jupyter")
    kernel = spec_dir / "kernels" / KERNEL
    kernel.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "recspark test", "language": "python"}
    (kernel / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(spec_dir))
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.delenv("MPLBACKEND", raising=False)
        full_jit(mp, short_lived_jvms)
        for name in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET"):
            mp.delenv(name, raising=False)  # the kernel starts its own Spark
        yield


def _section_of(nb: nbformat.NotebookNode) -> list[int]:
    """The section number ("## N.") each cell belongs to; 0 before the first section."""
    sections, current = [], 0
    for cell in nb.cells:
        found = re.match(r"##\s+(\d+)\.", cell.source) if cell.cell_type == "markdown" else None
        if found:
            current = int(found.group(1))
        sections.append(current)
    return sections


@pytest.fixture(scope="module")
def executed(
    config: Config, kernel_env: None, tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """(the notebook run top to bottom, section 5 rerun on a lakehouse with one run only).

    Both run in one kernel (one Spark start). For the second, `recommendations` and
    `recommendations_latest` are copied elsewhere and the second run is deleted from the copy.
    """
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, _parameters(config.paths.root))

    one_run = tmp_path_factory.mktemp("one_run")
    for key in ("recommendations", "recommendations_latest"):
        target = Path(one_run) / config.paths.lakehouse / getattr(config.tables, key)
        shutil.copytree(config.table_path(key), target)
    copied = _config(one_run).table_path("recommendations")
    spark.sql(f"DELETE FROM delta.`{copied}` WHERE run_date = DATE'{SECOND}'")
    sections = _section_of(nb)
    setup = next(
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and sections[i] == 0 and "build_spark(config)" in c.source
    )
    rerun = nbformat.v4.new_notebook(
        cells=[
            _parameters(one_run),
            nbformat.v4.new_code_cell(nb.cells[setup].source),
            *[
                nbformat.v4.new_code_cell(c.source)
                for c, s in zip(nb.cells, sections, strict=True)
                if s == 5 and c.cell_type == "code"
            ],
        ]
    )

    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)  # raises CellExecutionError on a failing cell
        client.nb = rerun  # the same kernel (and its Spark) runs the second notebook
        for i, cell in enumerate(rerun.cells):
            client.execute_cell(cell, i)
    return nb, rerun


def _stdout(cells: list[nbformat.NotebookNode]) -> str:
    return "".join(
        o.get("text", "")
        for c in cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
    )


def _number(pattern: str, text: str) -> tuple[str, ...]:
    found = re.search(pattern, text)
    assert found, f"the notebook printed no line matching {pattern!r}:\n{text}"
    return found.groups()


def _latest_pandas(spark: SparkSession, config: Config):
    return read_table(spark, config.table_path("recommendations_latest")).toPandas()


def test_runs_without_errors_and_plots_every_section(executed) -> None:
    nb, rerun = executed
    cells = [*nb.cells, *rerun.cells]
    errors = [
        o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    sections = _section_of(nb)
    images = {
        s
        for c, s in zip(nb.cells, sections, strict=True)
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    }
    assert images == set(SECTIONS)
    # the stored notebook carries no outputs (cleared before saving)
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.outputs for c in stored.cells if c.cell_type == "code")


def test_reads_the_published_run_and_one_users_recommendations(
    executed, spark: SparkSession, config: Config
) -> None:
    text = _stdout(executed[0].cells)
    latest = _latest_pandas(spark, config)
    assert _number(r"published run: (\S+) ", text) == (str(SECOND),)
    # ids may hold spaces, quotes and other scripts (synthetic.hostile_ids): up to the last ": "
    user, n = _number(r"(?m)^user (.+): (\d+) recommendations \(K = ", text)
    # USER_ID=None picks the first user (by id) with personalized recommendations
    assert user == latest.loc[latest["reason"] == "personalized", "user_id"].min()
    assert int(n) == config.score.k == (latest["user_id"] == user).sum()


def test_coverage_and_gini_match_the_tables(executed, spark: SparkSession, config: Config) -> None:
    text = _stdout(executed[0].cells)
    latest = _latest_pandas(spark, config)
    known = read_table(spark, config.table_path("item_ids")).select("item_id").toPandas()
    coverage, n_recommended, n_known = _number(
        r"catalog coverage of run \S+: ([\d.]+) \((\d+) of (\d+) known items", text
    )
    assert (int(n_recommended), int(n_known)) == (latest["item_id"].nunique(), len(known))
    assert float(coverage) == pytest.approx(latest["item_id"].nunique() / len(known), abs=1e-4)

    # Gini by its definition (mean absolute difference over twice the mean), unexposed items in
    exposure = known["item_id"].map(latest["item_id"].value_counts()).fillna(0).to_numpy(float)
    expected = np.abs(exposure[:, None] - exposure[None, :]).mean() / (2 * exposure.mean())
    (gini,) = _number(r"Gini of exposure over \d+ known items: ([\d.]+)", text)
    assert float(gini) == pytest.approx(expected, abs=1e-4)
    assert 0.0 < expected < 1.0

    personalized = latest.loc[latest["reason"] == "personalized", "user_id"].nunique()
    assert _number(r"personalized: (\d+) users", text) == (str(personalized),)


def test_run_over_run_compares_the_last_two_runs(
    executed, spark: SparkSession, config: Config
) -> None:
    text = _stdout(executed[0].cells)
    assert _number(r"run-over-run: (\S+) vs (\S+)", text) == (str(SECOND), str(FIRST))
    recs = read_table(spark, config.table_path("recommendations")).toPandas()
    top = {
        day: recs[recs["run_date"] == day].groupby("user_id")["item_id"].apply(set)
        for day in (FIRST, SECOND)
    }
    users = top[FIRST].index.intersection(top[SECOND].index)
    jaccard = [
        len(top[FIRST][u] & top[SECOND][u]) / len(top[FIRST][u] | top[SECOND][u]) for u in users
    ]
    (users_both,) = _number(r"users in both runs: (\d+);", text)
    assert int(users_both) == len(users) > 0
    (mean,) = _number(r"mean Jaccard of top-K: ([\d.]+)", text)
    assert float(mean) == pytest.approx(np.mean(jaccard), abs=1e-4)
    assert np.mean(jaccard) < 1.0  # new events changed the recommendations


def test_run_over_run_with_one_run_says_so(executed) -> None:
    text = _stdout(executed[1].cells)
    assert f"only one run ({FIRST}) in recommendations" in text
    assert "run-over-run:" not in text


def test_metrics_history_matches_pipeline_runs_and_the_registry(
    executed, spark: SparkSession, config: Config
) -> None:
    text = _stdout(executed[0].cells)
    stage_runs = read_table(spark, config.table_path("pipeline_runs"))
    total, dates = _number(r"pipeline_runs: (\d+) stage runs over (\d+) run dates", text)
    assert int(total) == stage_runs.count() == 2 * (1 + len(NIGHTLY))
    assert int(dates) == stage_runs.select(F.col("run_date")).distinct().count() == 2

    uri = config.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, alias = config.mlflow.registered_model, config.mlflow.champion_alias
    (champion,) = _number(rf"champion alias '{alias}' -> version (\d+)", text)
    assert champion == str(client.get_model_version_by_alias(name, alias).version)
    (versions,) = _number(r"versions: (\d+)", text)
    assert int(versions) == len(client.search_model_versions(f"name = '{name}'")) == 2
