"""Kafka Connect (distributed mode) with Debezium's PostgreSQL connector as a plugin: the change
data capture of every engine's history into Kafka (decision 0013).

Fetched from Maven Central: `connect-runtime` and `connect-json` at the Kafka version Debezium
is built against (`KAFKA_CONNECT`) into `libs/`, with the same reload4j logging binding as the
broker; `debezium-connector-postgres` and its runtime closure into
`plugins/debezium-connector-postgres/` (Connect loads it in its own class loader). Started with
`java -cp 'libs/*' org.apache.kafka.connect.cli.ConnectDistributed worker.properties`, so the
PID we hold is the JVM. One worker serves every engine: connectors are registered over its
REST API (`phee.connect`, configurations from `phee.cdc`).

Ready means `GET /health` answers 200 (the worker has joined its group and read its config
topic) and `GET /connector-plugins` lists the Debezium PostgreSQL connector.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from harness.components import fetchers
from harness.components.base import (
    Component,
    Running,
    free_port,
    fresh_dir,
    http_json,
    http_status,
)
from harness.components.versions import (
    DEBEZIUM,
    KAFKA_CONNECT,
    RELOAD4J,
    SLF4J_RELOAD4J,
)
from phee import cdc
from phee.connect import ConnectClient, ConnectorStatus, Registered

JAVA_MAJOR = 21
HEAP = "-Xmx384m"
DEFAULT_GROUP = "phee-connect"
#: how often source offsets are committed: what a crashed worker's successor may send again
OFFSET_FLUSH_MS = 1000

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.connect.runtime.isolation=WARN
log4j.logger.org.reflections=ERROR
log4j.logger.org.eclipse.jetty=WARN
"""


class KafkaConnect(Component):
    """One Connect worker on 127.0.0.1 (REST on a free port), Debezium PostgreSQL installed."""

    name = "kafka-connect"
    version = f"{KAFKA_CONNECT}-debezium-{DEBEZIUM}"
    start_deadline_s = 120.0

    @property
    def libs(self) -> Path:
        return self.cache_dir / "libs"

    @property
    def plugin_path(self) -> Path:
        return self.cache_dir / "plugins"

    def _fetch(self) -> None:
        fetchers.maven_copy_dependencies(
            [
                f"org.apache.kafka:connect-runtime:{KAFKA_CONNECT}",
                f"org.apache.kafka:connect-json:{KAFKA_CONNECT}",
                f"ch.qos.reload4j:reload4j:{RELOAD4J}",
                f"org.slf4j:slf4j-reload4j:{SLF4J_RELOAD4J}",
            ],
            self.libs,
        )
        fetchers.maven_copy_dependencies(
            [f"io.debezium:debezium-connector-postgres:{DEBEZIUM}"],
            self.plugin_path / "debezium-connector-postgres",
        )
        fetchers.java_home(JAVA_MAJOR)

    def start(self, workdir: Path, **options: Any) -> Running:
        """Start a worker; options: `bootstrap` (Kafka, required) and `group_id` (the Connect
        cluster: its config, offset and status topics are named after it, so a worker started
        again with the same group finds its connectors and their offsets)."""
        bootstrap = str(options.pop("bootstrap"))
        group = str(options.pop("group_id", DEFAULT_GROUP))
        if options:
            raise TypeError(f"unknown Kafka Connect options: {sorted(options)}")
        self.fetch()
        home = fresh_dir(workdir / self.name)
        port = free_port()
        props = home / "worker.properties"
        props.write_text(_worker_properties(bootstrap, group, port, self.plugin_path))
        log4j = home / "log4j.properties"
        log4j.write_text(LOG4J_PROPERTIES)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if http_status(f"{url}/health") != 200:
                return False
            plugins = http_json(f"{url}/connector-plugins")
            return any(p.get("class") == cdc.POSTGRES_CONNECTOR_CLASS for p in plugins)

        return self._launch_and_wait(
            [
                fetchers.java_bin(JAVA_MAJOR),
                "-server",
                "-Xms64m",
                HEAP,
                "-XX:+UseSerialGC",
                "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{log4j}",
                "-cp",
                f"{self.libs}/*",
                "org.apache.kafka.connect.cli.ConnectDistributed",
                str(props),
            ],
            workdir=home,
            ready=ready,
            endpoints={"rest": url},
            ports={"rest": port},
            extra={"group_id": group, "bootstrap": bootstrap},
        )


def _worker_properties(bootstrap: str, group: str, port: int, plugin_path: Path) -> str:
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "config.storage.topic": f"{group}-configs",
        "offset.storage.topic": f"{group}-offsets",
        "status.storage.topic": f"{group}-status",
        # One broker here; a site's Kafka sets 3 (the operator's worker config).
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        # 25 and 5 partitions by default: seconds of topic creation on 2 cores for nothing.
        "offset.storage.partitions": "1",
        "status.storage.partitions": "1",
        "offset.flush.interval.ms": str(OFFSET_FLUSH_MS),
        # Source records are about 1 KB of JSON: bigger batches for bulk loads. No compression:
        # aiokafka reads lz4/snappy/zstd only with extra libraries the importer does not have.
        "producer.batch.size": "262144",
        "producer.linger.ms": "5",
        "key.converter": cdc.JSON_CONVERTER,
        "value.converter": cdc.JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "listeners": f"http://127.0.0.1:{port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(port),
        "plugin.path": str(plugin_path),
        # Debezium and Connect's own plugins carry ServiceLoader manifests: no class scanning.
        "plugin.discovery": "service_load",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


# Connector operations on a running worker, for the harness and the tests (the REST calls are
# phee.connect's; the configuration is phee.cdc's). Synchronous, each on its own event loop.


def register_engine(run: Running, engine: str, db: cdc.EngineDatabase) -> Registered:
    """Register (or re-register, idempotently) the CDC connector of one engine database."""

    async def put() -> Registered:
        async with ConnectClient(run.endpoint("rest")) as client:
            return await client.put(cdc.connector_name(engine), cdc.connector_config(engine, db))

    return asyncio.run(put())


def engine_status(run: Running, engine: str) -> ConnectorStatus | None:
    """The engine's connector status, None when it is not registered."""

    async def status() -> ConnectorStatus | None:
        async with ConnectClient(run.endpoint("rest")) as client:
            return await client.status(cdc.connector_name(engine))

    return asyncio.run(status())


def remove_engine(run: Running, engine: str) -> bool:
    """Remove the engine's connector (its slot stays in the database); False if there was none."""

    async def delete() -> bool:
        async with ConnectClient(run.endpoint("rest")) as client:
            return await client.delete(cdc.connector_name(engine))

    return asyncio.run(delete())
