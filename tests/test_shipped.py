"""The rank bootstrap: a function from a package that only a shipped zip holds runs in a fresh
process that starts in the task's work folder, as Horovod and TorchDistributor ranks do."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import cloudpickle

from recspark.training.shipped import run_shipped, shipped_archives, wrap

RANK = """
import sys, cloudpickle
fn, args = cloudpickle.loads(open(sys.argv[1], "rb").read())
print("RESULT", fn(*args))
"""


def test_archive_names_from_spark_submit_py_files() -> None:
    conf = "file:/opt/app/recspark-0.1.0.zip, hdfs://nn/libs/extra.egg,/opt/app/helper.py,"
    assert shipped_archives(conf) == ["recspark-0.1.0.zip", "extra.egg"]
    assert shipped_archives(None) == []


def test_rank_process_imports_the_function_from_the_shipped_zip(tmp_path: Path) -> None:
    # A package that exists only inside a zip in the task's work folder.
    work = tmp_path / "executor-work-dir"
    work.mkdir()
    with zipfile.ZipFile(work / "shippedpkg.zip", "w") as zf:
        zf.writestr("shippedpkg/__init__.py", "def train(x, y):\n    return x * y + 1\n")
    sys.path.insert(0, str(work / "shippedpkg.zip"))
    try:
        import shippedpkg  # type: ignore[import-not-found]

        fn, args = wrap(shippedpkg.train, (6, 7), ["shippedpkg.zip"])
        assert fn is run_shipped
        bootstrapped = cloudpickle.dumps((fn, args))
        plain = cloudpickle.dumps((shippedpkg.train, (6, 7)))  # by reference, as launchers do
    finally:
        sys.path.remove(str(work / "shippedpkg.zip"))
        sys.modules.pop("shippedpkg", None)
    (tmp_path / "rank.py").write_text(RANK)

    def rank(payload: bytes) -> subprocess.CompletedProcess[str]:
        (tmp_path / "call.pkl").write_bytes(payload)
        return subprocess.run(
            [sys.executable, str(tmp_path / "rank.py"), str(tmp_path / "call.pkl")],
            cwd=work,  # ranks start in the Spark task's work folder, where the zip was fetched
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = rank(bootstrapped)
    assert done.returncode == 0, done.stderr
    assert "RESULT 43" in done.stdout
    # Without the bootstrap the rank cannot even unpickle the function.
    done = rank(plain)
    assert done.returncode != 0
    assert "No module named 'shippedpkg'" in done.stderr
