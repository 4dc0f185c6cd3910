"""Apache Kafka as one KRaft node (broker and controller in one JVM), for the exporter's records.

Fetched from Maven Central as `kafka_2.13` with its runtime dependencies plus the reload4j
logging binding the official distribution ships (without a binding Kafka logs nothing, and a
failed start could not quote its log). Started with `java -cp 'libs/*' kafka.Kafka` after
`kafka.tools.StorageTool format`, so the PID we hold is the JVM itself and `stop_pid` stops it.

Ready means the log says "Kafka Server started" and a real Metadata request (phee.kafka) lists
our broker: an open port alone is not enough, the socket server accepts before the broker has
joined its own quorum.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.components import fetchers
from harness.components.base import Component, Running, StartError, free_ports, fresh_dir, tcp_open
from harness.components.versions import KAFKA, KAFKA_SCALA, RELOAD4J, SLF4J_RELOAD4J
from phee import kafka

JAVA_MAJOR = 21
HEAP = "-Xmx512m"
DEFAULT_PARTITIONS = 3
NODE_ID = 1

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.coordinator=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


class Kafka(Component):
    """Single-node KRaft Kafka on 127.0.0.1, data and config in a fresh `workdir/kafka`."""

    name = "kafka"
    version = KAFKA
    start_deadline_s = 90.0

    @property
    def libs(self) -> Path:
        return self.cache_dir / "libs"

    def _fetch(self) -> None:
        fetchers.maven_copy_dependencies(
            [
                f"org.apache.kafka:kafka_{KAFKA_SCALA}:{KAFKA}",
                # The logging binding of Kafka's own distribution; without one it logs nothing.
                f"ch.qos.reload4j:reload4j:{RELOAD4J}",
                f"org.slf4j:slf4j-reload4j:{SLF4J_RELOAD4J}",
            ],
            self.libs,
        )
        fetchers.java_home(JAVA_MAJOR)

    def start(self, workdir: Path, **options: Any) -> Running:
        """Format fresh storage and start; options: `partitions` (topic default, 3)."""
        partitions = int(options.pop("partitions", DEFAULT_PARTITIONS))
        if options:
            raise TypeError(f"unknown Kafka options: {sorted(options)}")
        self.fetch()
        home = fresh_dir(workdir / self.name)
        port, controller_port = free_ports(2)
        props = home / "server.properties"
        props.write_text(_server_properties(home / "data", port, controller_port, partitions))
        log4j = home / "log4j.properties"
        log4j.write_text(LOG4J_PROPERTIES)
        java = fetchers.java_bin(JAVA_MAJOR)
        jvm = [
            java,
            "-server",
            "-Xms128m",
            HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={home}",
            "-cp",
            f"{self.libs}/*",
        ]
        self._format(jvm, props, home)
        log_path = home / "kafka.log"

        def ready() -> bool:
            if not tcp_open(port):
                return False
            if "Kafka Server started" not in log_path.read_text(errors="replace"):
                return False
            return ("127.0.0.1", port) in [
                (h, p) for _, h, p in metadata_brokers(f"127.0.0.1:{port}")
            ]

        bootstrap = f"127.0.0.1:{port}"
        return self._launch_and_wait(
            [*jvm, "kafka.Kafka", str(props)],
            workdir=home,
            ready=ready,
            endpoints={"bootstrap": bootstrap},
            ports={"broker": port, "controller": controller_port},
            extra={"partitions": partitions, "data_dir": str(home / "data")},
        )

    @staticmethod
    def _format(jvm: list[str], props: Path, home: Path) -> None:
        """KRaft refuses to start on unformatted storage; format with a new cluster id."""
        cmd = [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)]
        proc = subprocess.run(
            cmd, cwd=home, capture_output=True, text=True, timeout=120, check=False
        )
        (home / "format.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise StartError(
                f"kafka storage format exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )


def _cluster_id() -> str:
    """A Kafka Uuid string (URL-safe base64, no padding) that a CLI cannot mistake for a flag."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _server_properties(data: Path, port: int, controller_port: int, partitions: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": str(partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # One partition for consumer offsets: 50 (the default) costs seconds on 2 cores.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "log.retention.hours": "24",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def metadata_brokers(bootstrap: str, timeout_s: float = 3.0) -> list[kafka.Broker]:
    """Brokers the cluster's metadata lists, as (node id, host, port); [] when it cannot answer.

    Asked on a private event loop in its own thread, so the probe works whether or not the
    caller already runs an event loop.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(asyncio.run, kafka.brokers(bootstrap, timeout_s)).result(
                timeout=timeout_s * 2
            )
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return []
