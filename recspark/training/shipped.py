"""Run a training function in rank processes that cannot import recspark on their own.

On a cluster, recspark reaches the executors as a `spark-submit --py-files` zip. Spark puts that
zip on `sys.path` of its Python workers, but not in their `PYTHONPATH`, so the processes Horovod
(and TorchDistributor) start for the ranks from those workers do not see it. Unpickling
`train_worker` or its arguments would then fail with `No module named 'recspark'` before any of
our code runs.

So the launcher sends `run_shipped` instead: this module is pickled by value (it imports nothing
from recspark at module level), and the real function and its arguments travel as bytes. In the
rank, `run_shipped` first puts the shipped archives (found in the Spark task's work folder) on
`sys.path`, then unpickles and calls the function.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def shipped_archives(py_files: str | None) -> list[str]:
    """File names of the archives in `spark.submit.pyFiles` (comma separated, any scheme)."""
    names = []
    for item in (py_files or "").split(","):
        name = os.path.basename(item.strip())
        if name.lower().endswith((".zip", ".egg", ".whl")):
            names.append(name)
    return names


def add_archives_to_path(names: Sequence[str], folders: Sequence[str]) -> list[str]:
    """Put each archive found in one of `folders` at the front of `sys.path`; returns them."""
    added = []
    for name in names:
        for folder in folders:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                if path not in sys.path:
                    sys.path.insert(0, path)
                added.append(path)
                break
    return added


def run_shipped(payload: bytes, archives: Sequence[str]) -> Any:
    """Rank entry point: make the shipped archives importable, then run the pickled call.

    `payload` is `cloudpickle.dumps((fn, args))`.
    """
    folders = [
        os.environ.get("HOROVOD_SPARK_WORK_DIR", ""),  # Horovod: the Spark task's work folder
        os.getcwd(),  # TorchDistributor and Horovod: ranks start in the task's folder
    ]
    add_archives_to_path(archives, [f for f in folders if f])
    import cloudpickle

    fn, args = cloudpickle.loads(payload)
    return fn(*args)


def wrap(fn: Callable[..., Any], args: Sequence[Any], archives: Sequence[str]) -> tuple[Any, ...]:
    """(function, args) for a launcher: `run_shipped` by value with `fn(*args)` as bytes."""
    import cloudpickle
    from pyspark import cloudpickle as spark_cloudpickle

    module = sys.modules[__name__]
    # Horovod sends the function with cloudpickle, TorchDistributor with pyspark's copy of it.
    cloudpickle.register_pickle_by_value(module)
    spark_cloudpickle.register_pickle_by_value(module)
    return run_shipped, (cloudpickle.dumps((fn, tuple(args))), list(archives))
