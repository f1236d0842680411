"""A Spark standalone cluster on 127.0.0.1 for tests: one master and N workers started from the
scripts and classes bundled with pyspark (`bin/spark-class ...deploy.master.Master / Worker`),
the way `sbin/start-master.sh` and `start-worker.sh` start them, but in the foreground so the
test owns the processes and their logs."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyspark

from .conftest import SHORT_LIVED_JVM

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """Stop a process and everything it started (a worker's executors and their Python workers)."""
    try:
        parent = psutil.Process(proc.pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


@dataclass
class StandaloneCluster:
    """A running master with `workers` workers; `url` is the spark:// master URL."""

    root: Path
    workers: int = 2
    cores_per_worker: int = 1
    memory_per_worker: str = "2g"
    url: str = ""
    ui: str = ""
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.root / "logs"),
            # the master's and workers' JVMs (see tests/conftest.py's SHORT_LIVED_JVM)
            "SPARK_DAEMON_JAVA_OPTS": SHORT_LIVED_JVM,
        }

    def _start(self, name: str, cls: str, *args: str) -> None:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            self.procs.append(
                subprocess.Popen(
                    [str(SPARK_HOME / "bin" / "spark-class"), cls, *args],
                    env=self.env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                )
            )
        self.logs.append(log)

    def start(self, timeout_s: float = 90) -> StandaloneCluster:
        port, ui_port = free_port(), free_port()
        self.url, self.ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
        self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)),
        )
        for i in range(self.workers):
            work = self.root / f"worker-{i}"
            work.mkdir(parents=True, exist_ok=True)
            self._start(
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--webui-port", str(free_port())),
                *("--cores", str(self.cores_per_worker), "--memory", self.memory_per_worker),
                *("--work-dir", str(work), self.url),
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state()
            if state and state.get("aliveworkers") == self.workers:
                return self
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"standalone cluster did not come up:\n{self.log_tail()}")

    def state(self) -> dict[str, Any] | None:
        """The master's JSON status (workers, applications), or None while it is starting."""
        try:
            with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as reply:
                return dict(json.load(reply))
        except OSError:
            return None

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in self.logs if p.exists())

    def stop(self) -> None:
        for proc in reversed(self.procs):
            kill_tree(proc)
        self.procs.clear()
