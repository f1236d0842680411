"""A real Kafka broker for tests and benchmarks: one KRaft node (broker and controller in one
process) on 127.0.0.1, from the jars `make setup` puts in `.kafka/libs` (scripts/fetch_kafka.sh),
its log dirs under a folder the caller owns. It can be stopped and started again on the same
port and log dirs (the topic and its offsets survive), as a broker restarted by operations
would be. Messages are produced with confluent-kafka (librdkafka)."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .servers import free_port, serving

PROJECT = Path(__file__).resolve().parent.parent
KAFKA_LIBS = PROJECT / ".kafka" / "libs"
# Kafka's own class path: kafka.Kafka runs the server, kafka.tools.StorageTool formats its log
# dirs (KRaft needs a formatted cluster id before the first start).
SERVER_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""
# One node, one replica of everything; short timeouts so that stop and start are quick.
SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dirs}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=1
"""


def java_command(folder: Path, main: str, *args: str) -> list[str]:
    return [
        # C1 only (tests/conftest.py: SHORT_LIVED_JVM): a test broker's light load gains
        # nothing from C2's compiling
        "java", "-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
        "-cp", f"{KAFKA_LIBS}/*", main, *args,
    ]  # fmt: skip


@dataclass
class KafkaBroker:
    """A single-node Kafka on 127.0.0.1: `bootstrap` is its "host:port". Use `running()` for a
    block with the broker up; `stop()` and `start()` restart it on the same port and log dirs."""

    folder: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    starts: int = 0
    _stack: contextlib.ExitStack | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def format(self) -> None:
        """Write server.properties and format the log dirs with a new cluster id (once)."""
        if not KAFKA_LIBS.is_dir():
            raise FileNotFoundError(f"{KAFKA_LIBS}: no Kafka jars (run `make setup`)")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "log4j2.properties").write_text(LOG4J2)
        properties = SERVER_PROPERTIES.format(
            port=self.port, controller_port=self.controller_port, log_dirs=self.folder / "logs"
        )
        (self.folder / "server.properties").write_text(properties)
        # A cluster id is a UUID in URL-safe base64 without padding (`kafka-storage random-uuid`).
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            java_command(
                self.folder, STORAGE_TOOL_CLASS, "format",
                f"--cluster-id={cluster_id}",  # one that starts with "-" is not read as an option
                "-c", str(self.folder / "server.properties"),
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        """Start the broker (formatting its log dirs on the first start); up once it answers."""
        if self._stack is not None:
            return
        if not (self.folder / "server.properties").exists():
            self.format()
        self.starts += 1
        stack = contextlib.ExitStack()
        command = java_command(self.folder, SERVER_CLASS, str(self.folder / "server.properties"))
        stack.enter_context(
            serving(command, self.port, self.folder / f"server-{self.starts}.log", timeout_s=90)
        )
        self._stack = stack
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the broker (SIGTERM: a clean shutdown; its log dirs stay)."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @contextlib.contextmanager
    def running(self) -> Iterator[KafkaBroker]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _wait_ready(self, timeout_s: float = 60) -> None:
        """The port answers before the broker serves metadata: wait for it."""
        AdminClient(self._client_conf()).list_topics(timeout=timeout_s)

    def _client_conf(self, **extra: Any) -> dict[str, Any]:
        # log_level 3: librdkafka's errors only (not its notices on every client's close)
        return {"bootstrap.servers": self.bootstrap, "log_level": 3, **extra}

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create `name` with `partitions` partitions (one replica) and wait until it exists."""
        admin = AdminClient(self._client_conf())  # kept: its futures die with it
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            operation_timeout=30,
        )
        futures[name].result(timeout=60)

    def produce(
        self, topic: str, messages: Iterable[tuple[str | None, str | bytes | None, int | None]]
    ) -> int:
        """Send (key, value, partition) messages (a None partition: the key's), acknowledged
        by the broker before this returns; the number sent."""
        producer = Producer(self._client_conf(**{"acks": "all", "linger.ms": 5}))
        errors: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(str(error))

        sent = 0
        for key, value, partition in messages:
            extra = {} if partition is None else {"partition": partition}
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered, **extra)
                    break
                except BufferError:  # the local queue is full (a benchmark's load): drain it
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
        left = producer.flush(60)
        if errors or left:
            raise RuntimeError(f"kafka produce to {topic}: {left} unsent, errors {errors[:3]}")
        return sent
