"""Real servers the tests start on 127.0.0.1 and stop afterwards: a command in its own process
group, up once its port answers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .standalone import free_port, kill_tree

__all__ = ["free_port", "kill_tree", "redis_server", "serving", "wait_for_port"]


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout_s: float, log: Path) -> None:
    """Return once 127.0.0.1:`port` accepts connections; fail with the log if `proc` ends or
    `timeout_s` passes first."""
    deadline = time.time() + timeout_s
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        if proc.poll() is not None or time.time() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            state = f"exited {proc.returncode}" if proc.poll() is not None else "not up"
            raise AssertionError(f"server on port {port} {state}:\n{tail}")
        time.sleep(0.3)


@contextlib.contextmanager
def serving(
    command: Sequence[str | Path],
    port: int,
    log: Path,
    timeout_s: float = 120,
    **popen: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """Run `command` (its output to `log`) until the block ends; up when `port` answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(c) for c in command], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **popen,
        )  # fmt: skip
        try:
            wait_for_port(port, proc, timeout_s, log)
            yield proc
        finally:
            kill_tree(proc)


@contextlib.contextmanager
def redis_server(folder: Path, password: str) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, requiring `password`, no persistence,
    until the block ends; its URL (password included)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", "127.0.0.1",
        "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder),
        "--requirepass", password,
    ]  # fmt: skip
    with serving(command, port, folder / "redis.log", timeout_s=30):
        yield f"redis://:{password}@127.0.0.1:{port}/0"
