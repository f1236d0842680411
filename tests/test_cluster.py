"""recspark's jobs on a Spark standalone cluster (a master and two workers on 127.0.0.1), submitted
with `spark-submit --master spark://...` and the package shipped with `--py-files`, as on a
cluster.

The nodes run a Python environment that has every dependency (pyspark, torch, Horovod, MLflow)
but not recspark: it sees the project's virtualenv's site-packages through a .pth file, where
recspark is only an editable install whose hook a .pth-added folder does not run. So the driver
and the executors can import recspark only from the shipped zip, and the test checks that they do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.io.delta import read_table
from recspark.stages import NIGHTLY

from .conftest import CONF_DIR, SHORT_LIVED_JVM
from .standalone import SPARK_HOME, StandaloneCluster

ROOT = CONF_DIR.parent
RUN_DATE = "2026-01-02"
pytestmark = pytest.mark.integration

PROBE = """
import json
import recspark
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()

def where(_):
    import os, recspark
    yield recspark.__file__, os.getcwd()

rows = spark.sparkContext.parallelize(range(4), 4).mapPartitions(where).collect()
print("PROBE " + json.dumps({"driver": recspark.__file__, "executors": rows}))
"""


def _node_python(folder: Path) -> Path:
    """A virtualenv with the project's dependencies but without recspark (see module doc)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120
    )
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    tmp = tmp_path_factory.mktemp("cluster")
    packaged = subprocess.run(
        ["bash", str(ROOT / "scripts" / "package.sh"), sys.executable, str(tmp / "dist")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    package = Path(packaged.stdout.strip().splitlines()[-1])
    python = _node_python(tmp / "node-env")
    cluster = StandaloneCluster(tmp / "cluster").start()
    try:
        yield {"tmp": tmp, "package": package, "python": python, "cluster": cluster}  # type: ignore[misc]
    finally:
        cluster.stop()


def _submit(setup: dict[str, object], app: str, *args: str) -> str:
    cluster = setup["cluster"]
    assert isinstance(cluster, StandaloneCluster)
    python = str(setup["python"])
    env = {
        **cluster.env(),
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
    }
    env.pop("PYTHONPATH", None)
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        *("--master", cluster.url, "--deploy-mode", "client"),
        *("--py-files", str(setup["package"])),
        *("--total-executor-cores", "2", "--executor-cores", "1", "--executor-memory", "1g"),
        *("--conf", f"spark.executor.extraJavaOptions={SHORT_LIVED_JVM}"),
        app,
        *args,
    ]
    done = subprocess.run(
        cmd, cwd=setup["tmp"], env=env, capture_output=True, text=True, timeout=900
    )
    output = done.stderr + done.stdout
    assert done.returncode == 0, f"{app} failed:\n{output[-5000:]}\n{cluster.log_tail()}"
    return output


# The smallest data that still shows every job working on the cluster: a few thousand events,
# short training, the cheap baseline (ALS on two 1-core workers costs minutes and proves nothing
# more about the cluster), no catalog.
SMALL = [
    "synthetic.n_users=300",
    "synthetic.n_items=100",
    "synthetic.n_interactions=6000",
    "synthetic.n_days=10",
    "train.candidates=[two_tower]",
    "train.epochs=3",
    "evaluate.baselines=[popularity]",
    "catalog.enabled=false",  # the catalog's tests are elsewhere; its metastore costs each driver
]


def _job(setup: dict[str, object], job: str) -> str:
    lakehouse_root = Path(str(setup["tmp"])) / "project"
    settings = [f"paths.root={lakehouse_root}", *SMALL]
    return _submit(
        setup,
        str(ROOT / "jobs" / f"{job}.py"),
        *("--conf", str(CONF_DIR), "--env", "test", "--run-date", RUN_DATE),
        *[arg for setting in settings for arg in ("--set", setting)],
    )


def test_driver_and_executors_import_recspark_from_the_shipped_zip(
    setup: dict[str, object],
) -> None:
    probe = Path(str(setup["tmp"])) / "probe.py"
    probe.write_text(PROBE)
    out = _submit(setup, str(probe))
    found = json.loads(out.split("PROBE ", 1)[1].splitlines()[0])
    name = Path(str(setup["package"])).name
    assert f"{name}/recspark/__init__.py" in found["driver"]
    assert found["executors"]
    for module, cwd in found["executors"]:
        # each executor runs in its own work folder on a worker, with its own copy of the zip
        where = os.path.normpath(os.path.join(cwd, module))
        assert where == f"{cwd}/{name}/recspark/__init__.py"
        assert "/worker-" in cwd


def test_jobs_run_on_the_cluster(setup: dict[str, object], spark: SparkSession) -> None:
    """The generate job, then the whole nightly in one job (`jobs/run_pipeline.py`): every
    stage's executor work on the cluster, Horovod's ranks on both workers.

    The per-stage jobs (`jobs/<stage>.py`) pass only their stage name to the same CLI; each runs
    under spark-submit in the Airflow DAG test (local master) and the train job in
    tests/test_jobs.py, so here one submit for all stages proves what the cluster adds (shipped
    zip, executors, ranks in Spark tasks) without paying a driver and executor start per stage.
    """
    cluster = setup["cluster"]
    assert isinstance(cluster, StandaloneCluster)
    assert "[recspark] stage generate done" in _job(setup, "generate")
    output = _job(setup, "run_pipeline")
    for stage in NIGHTLY:
        assert f"[recspark] stage {stage} done" in output, output[-3000:]
    assert "2 ranks (horovod)" in output, output[-3000:]

    lakehouse = Path(str(setup["tmp"])) / "project" / "lakehouse"
    recs = read_table(spark, str(lakehouse / "recommendations"))
    assert recs.filter(F.col("run_date") == dt.date.fromisoformat(RUN_DATE)).count() > 0
    assert os.path.exists(lakehouse / "recommendations_latest")
    runs = read_table(spark, str(lakehouse / "pipeline_runs"))
    done = {r["stage"] for r in runs.filter(F.col("status") == "succeeded").collect()}
    assert set(NIGHTLY) <= done

    # Every app of the test ran its tasks on executors of both workers (none on the driver).
    state = cluster.state() or {}
    apps = state.get("completedapps", []) + state.get("activeapps", [])
    assert len(apps) >= 2
    for i in range(2):
        assert list((cluster.root / f"worker-{i}").glob("app-*/*/stderr")), f"worker {i} idle"

    # Horovod's two ranks ran inside Spark tasks on the executors, one on each worker: an executor
    # log holds its rank's output ("[rank]<stderr>:..."), rank 0's with the epoch lines.
    ranks_on_worker = {}
    for i in range(2):
        for log in (cluster.root / f"worker-{i}").glob("app-*/*/stderr"):
            text = log.read_text(errors="replace")
            for rank in (0, 1):
                if f"[{rank}]<stderr>:" in text:
                    ranks_on_worker[rank] = (i, log.parent.parent.name, text)
    assert set(ranks_on_worker) == {0, 1}, "no Horovod rank output in the executors' logs"
    (w0, app0, text0), (w1, app1, _) = ranks_on_worker[0], ranks_on_worker[1]
    assert app0 == app1 and w0 != w1
    assert "[0]<stderr>:[train] epoch 1/" in text0
